/**
 * The server commands: `kiln dev` (everything on one machine), `kiln api`, `kiln worker`,
 * `kiln migrate`. Each stops cleanly on SIGINT/SIGTERM; a SIGKILL loses nothing either, because
 * builds live in Temporal and storage.
 */
import { join } from 'node:path';
import { type Running, startApi, startWorker } from '../processes/services.ts';
import { load, openConfiguredStorage, temporalClient } from '../processes/runtime.ts';
import { startDevServer } from '../temporal/devServer.ts';
import { startDevRunner } from '../runner/dev.ts';

/** Stops `parts` in reverse order on SIGINT/SIGTERM, then exits. */
function stopOnSignal(parts: Running[], logger: { info(msg: string): void }): void {
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down');
    for (const p of [...parts].reverse()) await p.stop().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

/** `kiln dev`. */
export async function runDev(configFlag: string | undefined): Promise<void> {
  const { config, registry, logger, file } = load(configFlag, 'kiln-dev');
  const parts: Running[] = [];
  stopOnSignal(parts, logger);
  let address = config.temporal.address;
  let uiUrl: string | undefined;
  if (!address) {
    const dev = await startDevServer({
      dataDir: join(config.dataDir, 'temporal'),
      port: config.temporal.devServer.port,
      uiPort: config.temporal.devServer.uiPort,
      namespace: config.temporal.namespace,
      logger,
    });
    parts.push(dev);
    address = dev.address;
    uiUrl = dev.uiUrl;
  }
  const storage = await openConfiguredStorage(config);
  parts.push({ stop: () => storage.close() });
  const client = await temporalClient(config, address);
  parts.push({ stop: () => client.connection.close() });
  parts.push(await startWorker({ config, address, storage, logger }));
  const api = await startApi({ config, registry, client, storage, logger });
  parts.push(api);
  const runner = startDevRunner(config, api.url, logger);
  if (runner) parts.push(runner);
  const builders = config.projects.flatMap((p) =>
    p.buckets.flatMap((b) => b.builders.map((bl) => `${p.name}/${b.name}/${bl.name}`)),
  );
  console.log(
    [
      '',
      `Kiln is running (config ${file}, data in ${config.dataDir}/)`,
      `  API:         ${api.url}`,
      ...(uiUrl ? [`  Temporal UI: ${uiUrl}`] : [`  Temporal:    ${address}`]),
      `  Builders:    ${builders.join(', ') || '(none configured)'}`,
      '',
      'Try:',
      `  npm run kiln -- schedule ${builders[0] ?? 'project/bucket/builder'}`,
      '  npm run kiln -- search',
      '',
      'Ctrl-C stops everything; builds survive a restart.',
      '',
    ].join('\n'),
  );
}

/** `kiln api`. */
export async function runApi(configFlag: string | undefined): Promise<void> {
  const { config, registry, logger } = load(configFlag, 'kiln-api');
  const parts: Running[] = [];
  stopOnSignal(parts, logger);
  const storage = await openConfiguredStorage(config);
  parts.push({ stop: () => storage.close() });
  const client = await temporalClient(config);
  parts.push({ stop: () => client.connection.close() });
  parts.push(await startApi({ config, registry, client, storage, logger }));
}

/** `kiln worker`. */
export async function runWorker(configFlag: string | undefined): Promise<void> {
  const { config, logger } = load(configFlag, 'kiln-worker');
  const parts: Running[] = [];
  stopOnSignal(parts, logger);
  if (!config.temporal.address) throw new Error('kiln worker needs temporal.address or TEMPORAL_ADDRESS');
  const storage = await openConfiguredStorage(config);
  parts.push({ stop: () => storage.close() });
  parts.push(await startWorker({ config, address: config.temporal.address, storage, logger, serveMetrics: true }));
}

/** `kiln migrate`: opening storage applies migrations. */
export async function runMigrate(configFlag: string | undefined): Promise<void> {
  const { config, logger } = load(configFlag, 'kiln-migrate');
  const storage = await openConfiguredStorage(config);
  await storage.close();
  logger.info({ kind: config.storage.kind }, 'storage migrated');
}
