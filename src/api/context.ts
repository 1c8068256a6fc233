/** What every route handler gets. */
import { type FastifyInstance } from 'fastify';
import type pino from 'pino';
import { type BuildService } from '../builds/service.ts';
import { type Registry } from '../config/load.ts';

export interface ApiContext {
  service: BuildService;
  registry: Registry;
  logger: pino.Logger;
}

/** A route module: registers one route on the app. */
export type Route = (app: FastifyInstance, ctx: ApiContext) => void;
