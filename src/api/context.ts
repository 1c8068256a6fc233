/** What every route handler gets. */
import { type FastifyInstance } from 'fastify';
import type pino from 'pino';
import { type BuildService } from '../builds/service.ts';
import { type Registry } from '../config/load.ts';
import { type LogStore } from '../logs/logStore.ts';
import { type GerritIntake } from '../gerrit/intake.ts';
import { type Client } from '@temporalio/client';
import { type Storage } from '../storage/storage.ts';
import { type BuildWatcher } from '../builds/watch.ts';
import { type LaunchpadApi } from '../launchpad/api.ts';

export interface ApiContext {
  service: BuildService;
  registry: Registry;
  logger: pino.Logger;
  /** Build logs; the log routes answer UNAVAILABLE without one. */
  logs?: LogStore;
  /** Gerrit event intake; the Gerrit events route answers NOT_FOUND without one. */
  gerrit?: GerritIntake;
  // --- web UI (issue 14) ---
  /** Storage, for the web UI's read endpoints and live updates; they answer UNAVAILABLE without it. */
  storage?: Storage;
  /** Temporal client, for the stuck-build report (visibility queries); UNAVAILABLE without it. */
  client?: Client;
  /** Lease watch for runners (`POST /api/v1/watch`); the route answers NOT_FOUND without one. */
  watcher?: BuildWatcher;
  /** ---- launchpad ----: schedulers and promotions; their routes answer NOT_FOUND without it. */
  launchpad?: LaunchpadApi;
}

/** A route module: registers one route on the app. */
export type Route = (app: FastifyInstance, ctx: ApiContext) => void;
