/**
 * A real Temporal cluster for tests and benchmarks: Temporal server 1.29.1 (built from the Go module proxy by
 * `bash scripts/setup-temporal-server.sh`, which `npm test` runs through KILN_SETUP_EXTRAS) on a PostgreSQL server
 * (test/support/postgres.ts), with each service in its own process, as in a production deployment:
 *   frontend  the gRPC API clients and workers talk to;
 *   history   workflow state, split into `historyShards` shards (4 by default);
 *   matching  task queues;
 *   worker    Temporal's internal workers (schedules, batch operations, namespace deletion, the scanners).
 * Persistence and visibility are SQL (PostgreSQL 12+ schemas, set up with temporal-sql-tool from the module's
 * schema/postgresql/v12/), the namespace is registered and Kiln's search attributes are added through the
 * operator API, exactly what an operator does on a new cluster. Everything binds 127.0.0.1 on free ports.
 *
 * Each process can be SIGKILLed and started again (`kill`, `start`) to test what Kiln does when a Temporal
 * service dies. The processes stop with `stop()`, when this Node process exits, and, where util-linux `setpriv`
 * exists, when it dies from a signal (the parent-death signal).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { NativeConnection } from '@temporalio/worker';
import proto from '@temporalio/proto';
import YAML from 'yaml';
import { KILN_SEARCH_ATTRIBUTES } from '../../src/domain/searchAttributes.ts';

const ROOT = resolve(import.meta.dirname, '../..');
/** Where scripts/setup-temporal-server.sh puts the server, its SQL tool and the PostgreSQL schemas. */
export const TEMPORAL_SERVER = join(ROOT, '.tools/bin/temporal-server');
export const TEMPORAL_SQL_TOOL = join(ROOT, '.tools/bin/temporal-sql-tool');
export const TEMPORAL_SCHEMA_DIR = join(ROOT, '.tools/temporal-server/schema/postgresql/v12');

/** The services of a cluster, each run as its own process. */
export const CLUSTER_SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;
export type ClusterService = (typeof CLUSTER_SERVICES)[number];

/** gRPC health service names: the frontend, history and matching report SERVING once they can serve. */
const HEALTH_NAMES: Partial<Record<ClusterService, string>> = {
  frontend: 'temporal.api.workflowservice.v1.WorkflowService',
  // History turns SERVING after it acquired its shards (and a few seconds to settle).
  history: 'temporal.api.workflowservice.v1.HistoryService',
  matching: 'temporal.api.workflowservice.v1.MatchingService',
};

/**
 * Connections each process may open to PostgreSQL (persistence, visibility). Kept small so a cluster and several
 * Kiln processes fit in the server's default `max_connections` (100).
 */
const POOLS: Record<ClusterService, { persistence: number; visibility: number }> = {
  frontend: { persistence: 5, visibility: 3 },
  history: { persistence: 12, visibility: 3 },
  matching: { persistence: 6, visibility: 1 },
  worker: { persistence: 3, visibility: 1 },
};

const READY_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 10_000;

/** Options of `startTemporalCluster`. */
export interface TemporalClusterOptions {
  /** The PostgreSQL server, as `postgres://user[:password]@host:port/anydb` (e.g. `RunningPostgres.url`). */
  postgresUrl: string;
  /** @default 4 */
  historyShards?: number;
  /** The namespace to register (with Kiln's search attributes). @default 'default' */
  namespace?: string;
  /** Names of the two databases are `<prefix>` and `<prefix>_visibility`. @default 'temporal' */
  databasePrefix?: string;
  /** The servers' log level (their logs go to files in the cluster's folder). @default 'warn' */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Dynamic config overrides, key → value (Temporal's `common/dynamicconfig` keys). */
  dynamicConfig?: Record<string, unknown>;
}

/** A running cluster. */
export interface TemporalCluster {
  /** The frontend, `127.0.0.1:<port>`: what TEMPORAL_ADDRESS names. */
  address: string;
  namespace: string;
  historyShards: number;
  /** Time from the call to a cluster that serves: schema setup, then the services up and the namespace ready. */
  startupMs: { schema: number; services: number };
  /** The process id of a service, while it runs. */
  pid(service: ClusterService): number | undefined;
  /** Sends `signal` (default SIGKILL) to a service and waits until its process is gone. */
  kill(service: ClusterService, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed service again on its ports; resolves once it serves (history: once it holds its shards). */
  start(service: ClusterService): Promise<void>;
  /** The last part of a service's log. */
  log(service: ClusterService, chars?: number): string;
  /** Stops every service and removes the cluster's folder. The databases stay on the PostgreSQL server. */
  stop(): Promise<void>;
}

/** True when the server, the SQL tool and the schemas are installed (scripts/setup-temporal-server.sh). */
export function temporalServerInstalled(): boolean {
  try {
    for (const f of [TEMPORAL_SERVER, TEMPORAL_SQL_TOOL]) accessSync(f, constants.X_OK);
    accessSync(join(TEMPORAL_SCHEMA_DIR, 'temporal/versioned'));
    accessSync(join(TEMPORAL_SCHEMA_DIR, 'visibility/versioned'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates the cluster's databases on the PostgreSQL server, starts frontend, history, matching and worker as
 * separate processes, registers the namespace and Kiln's search attributes, and resolves once a workflow
 * carrying every Kiln search attribute can be started through the frontend.
 */
export async function startTemporalCluster(opts: TemporalClusterOptions): Promise<TemporalCluster> {
  if (!temporalServerInstalled()) {
    throw new Error(
      `the Temporal server is not installed in ${join(ROOT, '.tools')}: run \`KILN_SETUP_EXTRAS=temporal-server bash scripts/setup.sh\``,
    );
  }
  const t0 = performance.now();
  const pgUrl = new URL(opts.postgresUrl);
  const prefix = opts.databasePrefix ?? 'temporal';
  // A port taken by someone else between our probe and the server's bind: start again on new ports and databases.
  for (let attempt = 1; ; attempt++) {
    const databases = {
      persistence: attempt === 1 ? prefix : `${prefix}_${attempt}`,
      visibility: attempt === 1 ? `${prefix}_visibility` : `${prefix}_${attempt}_visibility`,
    };
    try {
      await setupSchemas(pgUrl, databases);
      const schemaMs = performance.now() - t0;
      return await startServices(opts, pgUrl, databases, schemaMs, t0);
    } catch (e) {
      if (attempt < 3 && e instanceof PortTakenError) continue;
      throw e;
    }
  }
}

class PortTakenError extends Error {}

/** Creates and migrates both databases with temporal-sql-tool, as the server's release instructions do. */
async function setupSchemas(pg: URL, databases: { persistence: string; visibility: string }): Promise<void> {
  const base = [
    '--plugin',
    'postgres12',
    '--endpoint',
    pg.hostname,
    '--port',
    pg.port || '5432',
    '--user',
    decodeURIComponent(pg.username),
    ...(pg.password ? ['--password', decodeURIComponent(pg.password)] : []),
  ];
  const setup = async (db: string, schema: 'temporal' | 'visibility') => {
    await run(TEMPORAL_SQL_TOOL, [...base, '--database', db, 'create-database']);
    await run(TEMPORAL_SQL_TOOL, [...base, '--database', db, 'setup-schema', '-v', '0.0']);
    await run(TEMPORAL_SQL_TOOL, [
      ...base,
      '--database',
      db,
      'update-schema',
      '-d',
      join(TEMPORAL_SCHEMA_DIR, schema, 'versioned'),
    ]);
  };
  await Promise.all([setup(databases.persistence, 'temporal'), setup(databases.visibility, 'visibility')]);
}

async function startServices(
  opts: TemporalClusterOptions,
  pg: URL,
  databases: { persistence: string; visibility: string },
  schemaMs: number,
  t0: number,
): Promise<TemporalCluster> {
  const namespace = opts.namespace ?? 'default';
  const historyShards = opts.historyShards ?? 4;
  const dir = mkdtempSync(join(tmpdir(), 'kiln-temporal-cluster-'));
  const [frontendGrpc, frontendHttp, frontendMembership, ...rest] = await freePorts(9);
  const ports: Record<ClusterService, { grpcPort: number; membershipPort: number; httpPort?: number }> = {
    frontend: { grpcPort: frontendGrpc!, membershipPort: frontendMembership!, httpPort: frontendHttp! },
    history: { grpcPort: rest[0]!, membershipPort: rest[1]! },
    matching: { grpcPort: rest[2]!, membershipPort: rest[3]! },
    worker: { grpcPort: rest[4]!, membershipPort: rest[5]! },
  };
  const address = `127.0.0.1:${ports.frontend.grpcPort}`;

  const dynamicConfigFile = join(dir, 'dynamicconfig.yaml');
  writeFileSync(
    dynamicConfigFile,
    YAML.stringify(
      Object.fromEntries(
        Object.entries(opts.dynamicConfig ?? {}).map(([k, v]) => [k, [{ value: v, constraints: {} }]]),
      ),
    ) || '{}\n',
  );
  const sql = (database: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName: database,
      connectAddr: `${pg.hostname}:${pg.port || '5432'}`,
      connectProtocol: 'tcp',
      user: decodeURIComponent(pg.username),
      password: decodeURIComponent(pg.password),
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  // One config per process (the same cluster, its own connection pool sizes); `--env development` reads it.
  for (const service of CLUSTER_SERVICES) {
    mkdirSync(join(dir, service, 'config'), { recursive: true });
    const config = {
      log: { stdout: true, level: opts.logLevel ?? 'warn', format: 'json' },
      persistence: {
        defaultStore: 'default',
        visibilityStore: 'visibility',
        numHistoryShards: historyShards,
        datastores: {
          default: sql(databases.persistence, POOLS[service].persistence),
          visibility: sql(databases.visibility, POOLS[service].visibility),
        },
      },
      global: { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' } },
      services: Object.fromEntries(CLUSTER_SERVICES.map((s) => [s, { rpc: { ...ports[s], bindOnLocalHost: true } }])),
      clusterMetadata: {
        enableGlobalNamespace: false,
        failoverVersionIncrement: 10,
        masterClusterName: 'active',
        currentClusterName: 'active',
        clusterInformation: {
          active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: address },
        },
      },
      dcRedirectionPolicy: { policy: 'noop' },
      dynamicConfigClient: { filepath: dynamicConfigFile, pollInterval: '10s' },
    };
    writeFileSync(join(dir, service, 'config', 'development.yaml'), YAML.stringify(config));
  }

  const children = new Map<ClusterService, ChildProcess>();
  const logFile = (service: ClusterService) => join(dir, `${service}.log`);
  const readLog = (service: ClusterService, chars = 4000) => {
    try {
      return readFileSync(logFile(service), 'utf8').slice(-chars);
    } catch {
      return '(no log)';
    }
  };
  const killAllNow = () => {
    for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.on('exit', killAllNow);

  const spawnService = (service: ClusterService): ChildProcess => {
    const args = ['--root', join(dir, service), '--config', 'config', '--env', 'development', '--allow-no-auth'];
    const serverArgs = [...args, 'start', '--service', service];
    // setpriv makes the kernel SIGKILL the server when this process dies, even by a signal that skips `exit`.
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find(isExecutable);
    const [command, argv] =
      setpriv === undefined
        ? [TEMPORAL_SERVER, serverArgs]
        : [setpriv, ['--pdeathsig', 'SIGKILL', '--', TEMPORAL_SERVER, ...serverArgs]];
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
    const out = openSync(logFile(service), 'a');
    try {
      const child = spawn(command, argv, { cwd: dir, env, stdio: ['ignore', out, out] });
      child.unref(); // a forgotten stop() must not keep the test process alive; the exit handler still kills it
      child.on('error', () => {});
      children.set(service, child);
      return child;
    } finally {
      closeSync(out);
    }
  };

  const running = (service: ClusterService) => {
    const c = children.get(service);
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  };
  const failIfExited = (service: ClusterService) => {
    if (running(service)) return;
    const log = readLog(service);
    if (/address already in use/i.test(log)) throw new PortTakenError(`${service}: a port was taken:\n${log}`);
    throw new Error(
      `Temporal ${service} exited (${children.get(service)?.exitCode ?? children.get(service)?.signalCode}):\n${log}`,
    );
  };

  /** Resolves once `service` reports SERVING on its own gRPC port. */
  const serving = async (service: ClusterService, deadline: number) => {
    const name = HEALTH_NAMES[service];
    if (name === undefined) return;
    const connection = Connection.lazy({ address: `127.0.0.1:${ports[service].grpcPort}`, connectTimeout: 2000 });
    try {
      for (;;) {
        failIfExited(service);
        try {
          const r = await connection.withDeadline(Date.now() + 2000, () =>
            connection.healthService.check({ service: name }),
          );
          if (r.status === proto.grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING) return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) throw new Error(`Temporal ${service} did not serve in time:\n${readLog(service)}`);
        await sleep(250);
      }
    } finally {
      await connection.close();
    }
  };

  let stopped = false;
  const stopAll = async () => {
    for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all(
      [...children.values()].map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        c.ref();
        await Promise.race([new Promise((r) => c.once('exit', r)), sleep(STOP_TIMEOUT_MS)]);
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }),
    );
  };

  try {
    // The frontend first: the first process to start writes the cluster's metadata, and processes that start
    // at the same moment race for that write and exit.
    const deadline = Date.now() + READY_TIMEOUT_MS;
    spawnService('frontend');
    await serving('frontend', deadline);
    for (const service of CLUSTER_SERVICES.filter((s) => s !== 'frontend')) spawnService(service);
    const connection = await Connection.connect({ address });
    try {
      await prepareNamespace(connection, namespace, deadline, () => CLUSTER_SERVICES.forEach(failIfExited));
      await Promise.all([serving('history', deadline), serving('matching', deadline)]);
      await probe(connection, namespace, deadline, () => CLUSTER_SERVICES.forEach(failIfExited));
    } finally {
      await connection.close();
    }
    CLUSTER_SERVICES.forEach(failIfExited);
  } catch (e) {
    await stopAll();
    process.off('exit', killAllNow);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    address,
    namespace,
    historyShards,
    startupMs: { schema: schemaMs, services: performance.now() - t0 - schemaMs },
    pid: (service) => (running(service) ? children.get(service)?.pid : undefined),
    kill: async (service, signal = 'SIGKILL') => {
      const c = children.get(service);
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
      c.ref();
      const exited = new Promise((r) => c.once('exit', r));
      c.kill(signal);
      await exited;
    },
    start: async (service) => {
      if (running(service)) throw new Error(`Temporal ${service} is already running`);
      spawnService(service);
      await serving(service, Date.now() + READY_TIMEOUT_MS);
    },
    log: readLog,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await stopAll();
      process.off('exit', killAllNow);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const { IndexedValueType } = proto.temporal.api.enums.v1;
const SA_TYPES = {
  Keyword: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  KeywordList: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
  Datetime: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
} as const;

/** Registers the namespace and adds Kiln's search attributes to it (SQL visibility: per-namespace aliases). */
async function prepareNamespace(
  connection: Connection,
  namespace: string,
  deadline: number,
  check: () => void,
): Promise<void> {
  await retry(deadline, check, 'register the namespace', async () => {
    try {
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      });
    } catch (e) {
      if (!/already exists/i.test((e as Error).message)) throw e;
    }
  });
  await retry(deadline, check, "add Kiln's search attributes", async () => {
    await connection.workflowService.describeNamespace({ namespace });
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(Object.entries(KILN_SEARCH_ATTRIBUTES).map(([k, t]) => [k, SA_TYPES[t]])),
    });
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = Object.keys(KILN_SEARCH_ATTRIBUTES).filter((k) => !(k in (customAttributes ?? {})));
    if (missing.length) throw new Error(`not listed yet: ${missing.join(', ')}`);
  });
}

/**
 * Starts (and terminates) a workflow carrying every Kiln search attribute: succeeds once the frontend knows the
 * namespace and its attributes and a history shard takes the workflow.
 */
async function probe(connection: Connection, namespace: string, deadline: number, check: () => void): Promise<void> {
  const client = new Client({ connection, namespace });
  const searchAttributes = Object.fromEntries(
    Object.entries(KILN_SEARCH_ATTRIBUTES).map(([k, t]) => [
      k,
      t === 'Datetime' ? [new Date()] : t === 'KeywordList' ? ['probe:1'] : ['probe'],
    ]),
  );
  await retry(deadline, check, 'start a workflow with Kiln search attributes', async () => {
    const handle = await client.workflow.start('kilnClusterProbe', {
      taskQueue: 'kiln-cluster-probe',
      workflowId: `kiln-cluster-probe-${process.pid}-${Date.now()}`,
      searchAttributes,
    });
    await handle.terminate('cluster probe');
  });
}

async function retry(deadline: number, check: () => void, what: string, fn: () => Promise<void>): Promise<void> {
  for (;;) {
    check();
    try {
      await fn();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`could not ${what} on the Temporal cluster: ${(e as Error).message}`);
      await sleep(250);
    }
  }
}

/**
 * `n` distinct free ports on 127.0.0.1, all held at once while probing so none repeats. They are taken below
 * Linux's ephemeral range (32768+): Temporal keeps membership ports in a SMALLINT column, and ports there are
 * not handed out to outgoing connections, so they stay free until the servers bind them.
 */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  const listen = (port: number) =>
    new Promise<Server | undefined>((done) => {
      const s = createServer();
      s.once('error', () => done(undefined));
      s.listen(port, '127.0.0.1', () => done(s));
    });
  try {
    for (let tries = 0; servers.length < n; tries++) {
      if (tries > 1000) throw new Error('no free ports between 20000 and 32767 on 127.0.0.1');
      const s = await listen(20_000 + Math.floor(Math.random() * 12_768));
      if (s) servers.push(s);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** Runs a short-lived command to completion; rejects with its output when it fails. */
function run(command: string, args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', fail);
    child.on('close', (code, signal) =>
      code === 0 ? done() : fail(new Error(`${command} ${args.join(' ')} failed (${code ?? signal}):\n${output}`)),
    );
  });
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A client and a worker connection to a running cluster (what tests and the bench use of a test environment). */
export interface ClusterConnections {
  address: string;
  namespace: string;
  client: Client;
  nativeConnection: NativeConnection;
  /** Closes both connections (the cluster keeps running). */
  close(): Promise<void>;
}

/** Connects a client and a worker connection to `cluster`'s frontend. */
export async function connectToCluster(cluster: TemporalCluster): Promise<ClusterConnections> {
  const connection = await Connection.connect({ address: cluster.address });
  const nativeConnection = await NativeConnection.connect({ address: cluster.address });
  return {
    address: cluster.address,
    namespace: cluster.namespace,
    client: new Client({ connection, namespace: cluster.namespace }),
    nativeConnection,
    close: async () => {
      await nativeConnection.close();
      await connection.close();
    },
  };
}
