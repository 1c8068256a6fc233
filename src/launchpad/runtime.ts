/**
 * How `kiln worker` and `kiln api` start the Launchpad features: the worker checks the configured
 * branches exist, builds the activities' context, and reconciles schedules and pollers with the
 * config once it runs; the API gets the schedules/promotions service and the Gerrit `ref-updated`
 * hook.
 */
import { Client, type ConnectionLike, WorkflowNotFoundError } from '@temporalio/client';
import type pino from 'pino';
import { z } from 'zod';
import { BuildService } from '../builds/service.ts';
import { Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { branchRef } from '../domain/launchpad/commit.ts';
import { type Storage } from '../storage/storage.ts';
import { pollNowSignal } from '../../workflows/gitPoller.ts';
import { LaunchpadApi } from './api.ts';
import { LaunchpadContext, launchpadIds } from './context.ts';
import { checkLaunchpadBranches, reconcileLaunchpad } from './reconcile.ts';
import { LaunchpadStore } from './store.ts';

/** True when the config has anything for the Launchpad features to do. */
export function hasLaunchpadConfig(config: KilnConfig): boolean {
  return (
    config.schedulers.length > 0 ||
    config.promotions.length > 0 ||
    config.merges.length > 0 ||
    (config.notifications?.rules.length ?? 0) > 0
  );
}

/** The worker side: context for the activities (undefined when nothing is configured) and the reconciler. */
export async function launchpadForWorker(o: {
  config: KilnConfig;
  connection: ConnectionLike;
  storage: Storage;
  logger: pino.Logger;
}): Promise<{ context?: LaunchpadContext; reconcile(): Promise<void> }> {
  const { config } = o;
  const client = new Client({ connection: o.connection, namespace: config.temporal.namespace });
  const taskQueue = config.temporal.taskQueue;
  const logger = o.logger.child({ component: 'launchpad' });
  // Never fatal: a Temporal that is still starting gets a few more tries; the next start tries again.
  const reconcile = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        await reconcileLaunchpad({ client, config, taskQueue, logger });
        return;
      } catch (e) {
        if (attempt >= 5) {
          logger.error({ err: e }, 'could not reconcile schedules and pollers with the config; will try at next start');
          return;
        }
        await new Promise((r) => setTimeout(r, 2000 * attempt));
      }
    }
  };
  if (!hasLaunchpadConfig(config)) return { reconcile };
  await checkLaunchpadBranches(config, logger);
  const registry = new Registry(config);
  const store = await LaunchpadStore.open(o.storage);
  const builds = new BuildService({ client, storage: o.storage, registry, taskQueue, logger });
  const context = new LaunchpadContext({
    config,
    registry,
    storage: o.storage,
    store,
    client,
    taskQueue,
    builds,
    logger,
  });
  return { context, reconcile };
}

/** The API side: the schedules/promotions service. */
export async function launchpadForApi(o: {
  config: KilnConfig;
  client: Client;
  storage: Storage;
}): Promise<LaunchpadApi> {
  return new LaunchpadApi({
    client: o.client,
    config: o.config,
    store: await LaunchpadStore.open(o.storage),
    taskQueue: o.config.temporal.taskQueue,
  });
}

/** Gerrit's `ref-updated` stream event (only what Kiln reads). */
const refUpdatedSchema = z.looseObject({
  type: z.literal('ref-updated'),
  refUpdate: z.looseObject({ project: z.string().min(1), refName: z.string().min(1), newRev: z.string().optional() }),
});

/** What the hook did, in the Gerrit intake's shape. */
export interface RefUpdatedAction {
  action: 'poll';
  reason: string;
  workflowId: string;
}

/**
 * Makes the git pollers of a Gerrit project's branch poll now, for a `ref-updated` event from
 * `host`. A branch (`refs/heads/…` or a bare name, as old Gerrit sends) no poller watches gives no
 * action. Throws on a malformed event.
 */
export function refUpdatedHook(config: KilnConfig, client: Client, logger: pino.Logger) {
  return async (host: string, body: unknown): Promise<RefUpdatedAction[]> => {
    const e = refUpdatedSchema.parse(body);
    const ref = e.refUpdate.refName.startsWith('refs/') ? e.refUpdate.refName : branchRef(e.refUpdate.refName);
    const out: RefUpdatedAction[] = [];
    for (const s of config.schedulers) {
      if (s.kind !== 'on-commit' || branchRef(s.branch) !== ref) continue;
      const repo = config.repositories.find((r) => r.name === s.repo);
      if (repo?.gerrit?.host !== host || repo.gerrit.project !== e.refUpdate.project) continue;
      const workflowId = launchpadIds.poller(config.temporal.taskQueue, s.name);
      try {
        await client.workflow
          .getHandle(workflowId)
          .signal(pollNowSignal, { reason: `ref-updated ${ref} → ${e.refUpdate.newRev ?? '?'}` });
        out.push({ action: 'poll', reason: `${s.repo} ${s.branch} moved: polling now`, workflowId });
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        logger.warn({ workflowId }, 'ref-updated for a poller that is not running');
      }
    }
    return out;
  };
}
