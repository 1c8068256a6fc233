/**
 * The server commands: `kiln dev` (everything on one machine), `kiln api`, `kiln worker`,
 * `kiln migrate`. Each checks what it can before starting anything (config, API host, the storage
 * lock), stops what it had started when a later part fails to start, and stops cleanly and within
 * a bounded time on SIGINT/SIGTERM: runner first, then API, worker, and the Temporal dev server
 * last, so a build the dev runner was running is still reported. A second signal stops the dev
 * server and exits at once. A SIGKILL loses nothing either, because builds live in Temporal and
 * storage.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pino from 'pino';
import { type Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { startApi, startWorker } from '../processes/services.ts';
import { checkApiHost, load, openConfiguredStorage, StartError, temporalClient } from '../processes/runtime.ts';
import { startDevServer } from '../temporal/devServer.ts';
import { startDevRunner } from '../runner/dev.ts';
import { devRunnerSchema } from '../runner/settings.ts';

/** One started part of a Kiln process, and how long its stop may take. */
interface Part {
  name: string;
  stop(): Promise<void>;
  timeoutMs: number;
}

/** The parts a server command started, stopped in reverse order, each within its time. */
class Parts {
  private readonly parts: Part[] = [];
  private stopping: Promise<void> | undefined;
  /** Stopped even by a second signal: the part that must never be left running (the dev server). */
  private last: Part | undefined;

  constructor(private readonly logger: pino.Logger) {}

  add(name: string, stop: () => Promise<void>, timeoutMs = 10_000): void {
    this.parts.push({ name, stop, timeoutMs });
  }

  /** Like `add`; a second signal still stops this part before exiting. */
  addLast(name: string, stop: () => Promise<void>, timeoutMs = 20_000): void {
    this.add(name, stop, timeoutMs);
    this.last = this.parts[this.parts.length - 1];
  }

  stopAll(): Promise<void> {
    this.stopping ??= (async () => {
      // Calls still in flight fail as their connections close; that must not crash the shutdown.
      const ignore = (e: unknown) => this.logger.debug({ err: (e as Error).message }, 'error while shutting down');
      process.on('unhandledRejection', ignore);
      process.on('uncaughtException', ignore);
      for (const p of [...this.parts].reverse()) {
        const done = p.stop().then(
          () => true,
          (e: unknown) => {
            this.logger.warn({ err: (e as Error).message }, `${p.name} stopped with an error`);
            return true;
          },
        );
        if (!(await Promise.race([done, sleep(p.timeoutMs).then(() => false)]))) {
          this.logger.warn(`${p.name} did not stop within ${Math.round(p.timeoutMs / 1000)} s; going on`);
        }
      }
    })();
    return this.stopping;
  }

  /** SIGINT/SIGTERM: stop everything, then exit 0. A second signal: stop the dev server, exit 1. */
  stopOnSignals(): void {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals += 1;
      if (signals === 1) {
        this.logger.info({ signal: sig }, 'shutting down (a second Ctrl-C stops at once)');
        void this.stopAll().then(() => process.exit(0));
        return;
      }
      this.logger.warn({ signal: sig }, 'second signal: stopping now');
      void (this.last ? this.last.stop() : Promise.resolve()).finally(() => process.exit(1));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }

  /** Runs `start`; when it fails, stops what it had started before rethrowing. */
  async starting(start: () => Promise<void>): Promise<void> {
    try {
      await start();
    } catch (e) {
      await this.stopAll();
      throw e;
    }
  }
}

/**
 * The banner's examples. With ACLs a client command needs a token: the example sets KILN_TOKEN
 * from the variable a SCHEDULER (or WRITER) ACL reads, or says which ACL's token to use.
 */
export function tryCommands(config: KilnConfig, registry: Registry, file: string): string[] {
  const builders = config.projects.flatMap((p) =>
    p.buckets.flatMap((b) =>
      b.builders.map((bl) => ({ bucket: `${p.name}/${b.name}`, path: `${p.name}/${b.name}/${bl.name}` })),
    ),
  );
  if (registry.authDisabled) {
    return ['Try:', `  npx kiln schedule ${builders[0]?.path ?? 'project/bucket/builder'} --wait`, '  npx kiln search'];
  }
  for (const b of builders) {
    const acl = registry.bucket(b.bucket)?.acls.find((a) => a.role !== 'READER');
    if (!acl) continue;
    const token = acl.tokenEnv
      ? `export KILN_TOKEN="$${acl.tokenEnv}"`
      : `export KILN_TOKEN='<the token of the ${acl.role} acl${acl.name ? ` "${acl.name}"` : ''} of ${b.bucket} in ${file}>'`;
    return [
      'Try (this config has ACLs: client commands send the token in KILN_TOKEN, or --token):',
      `  ${token}`,
      `  npx kiln schedule ${b.path}`,
      '  npx kiln search',
    ];
  }
  return [
    'Try (this config has ACLs: client commands send the token in KILN_TOKEN, or --token):',
    '  export KILN_TOKEN=<a token with SCHEDULER on a bucket>',
    '  npx kiln search',
  ];
}

/** `kiln dev`. */
export async function runDev(configFlag: string | undefined): Promise<void> {
  const { config, registry, logger, file } = load(configFlag, 'kiln-dev');
  await checkApiHost(config, registry, file);
  const parts = new Parts(logger);
  parts.stopOnSignals();
  let address = config.temporal.address;
  let uiUrl: string | undefined;
  let apiUrl = '';
  await parts.starting(async () => {
    // Storage first: its lock says whether another Kiln runs on this data dir, before any server is touched.
    const storage = await openConfiguredStorage(config);
    parts.add('storage', () => storage.close());
    if (!address) {
      const dev = await startDevServer({
        dataDir: join(config.dataDir, 'temporal'),
        port: config.temporal.devServer.port,
        uiPort: config.temporal.devServer.uiPort,
        namespace: config.temporal.namespace,
        logger,
      });
      parts.addLast('Temporal dev server', () => dev.stop());
      address = dev.address;
      uiUrl = dev.uiUrl;
    }
    const client = await temporalClient(config, address);
    parts.add('Temporal client', () => client.connection.close(), 5_000);
    const worker = await startWorker({ config, address, storage, logger });
    parts.add('worker', () => worker.stop(), 8_000);
    const api = await startApi({ config, registry, client, storage, logger });
    parts.add('API', () => api.stop(), 10_000);
    apiUrl = api.url;
    const runner = startDevRunner(config, api.url, logger);
    if (runner) {
      const d = devRunnerSchema.parse(config.devRunner ?? {});
      parts.add('dev runner', () => runner.stop(), (d.gracePeriodSecs + d.killTimeoutSecs + 30) * 1000);
    }
  });
  const builders = config.projects.flatMap((p) =>
    p.buckets.flatMap((b) => b.builders.map((bl) => `${p.name}/${b.name}/${bl.name}`)),
  );
  console.log(
    [
      '',
      `Kiln is running (config ${file}, data in ${config.dataDir}/)`,
      `  API:         ${apiUrl}`,
      ...(uiUrl ? [`  Temporal UI: ${uiUrl}`] : [`  Temporal:    ${address}`]),
      `  Builders:    ${builders.join(', ') || '(none configured)'}`,
      '',
      ...tryCommands(config, registry, file),
      '',
      'Ctrl-C stops everything; builds survive a restart.',
      '',
    ].join('\n'),
  );
}

/** `kiln api`. */
export async function runApi(configFlag: string | undefined): Promise<void> {
  const { config, registry, logger, file } = load(configFlag, 'kiln-api');
  await checkApiHost(config, registry, file);
  const parts = new Parts(logger);
  parts.stopOnSignals();
  await parts.starting(async () => {
    const storage = await openConfiguredStorage(config);
    parts.add('storage', () => storage.close());
    const client = await temporalClient(config);
    parts.add('Temporal client', () => client.connection.close(), 5_000);
    const api = await startApi({ config, registry, client, storage, logger });
    parts.add('API', () => api.stop(), 10_000);
  });
}

/** `kiln worker`. */
export async function runWorker(configFlag: string | undefined): Promise<void> {
  const { config, logger } = load(configFlag, 'kiln-worker');
  const address = config.temporal.address;
  if (!address) throw new StartError('kiln worker needs temporal.address or TEMPORAL_ADDRESS');
  const parts = new Parts(logger);
  parts.stopOnSignals();
  await parts.starting(async () => {
    const storage = await openConfiguredStorage(config);
    parts.add('storage', () => storage.close());
    const worker = await startWorker({ config, address, storage, logger, serveMetrics: true });
    parts.add('worker', () => worker.stop(), 8_000);
  });
}

/** `kiln migrate`: opening storage applies migrations. */
export async function runMigrate(configFlag: string | undefined): Promise<void> {
  const { config, logger } = load(configFlag, 'kiln-migrate');
  const storage = await openConfiguredStorage(config);
  await storage.close();
  logger.info({ kind: config.storage.kind }, 'storage migrated');
}
