/**
 * Throwaway PostgreSQL servers for tests that need a real Postgres (the Postgres storage suite, end-to-end
 * runs with `storage: postgres`). Each call makes a fresh cluster in a temp dir, so test files can run in
 * parallel without sharing state. Needs the server binaries: `bash scripts/setup-postgres.sh` (run by
 * `npm test` through KILN_SETUP_EXTRAS) makes sure they exist.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  chownSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** A running throwaway server; `stop()` shuts it down and deletes its data. */
export interface RunningPostgres {
  /** Connection URL of the empty `kiln` database, e.g. `postgres://kiln@127.0.0.1:54321/kiln` (no password). */
  url: string;
  /** Fast shutdown (open client connections are cut), then removes the cluster directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Unix account that owns and runs the cluster when we are root (initdb and postgres refuse to run as root). */
interface RunAs {
  uid: number;
  gid: number;
}

const SUPERUSER = 'kiln';
const DATABASE = 'kiln';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const DIR_PREFIX = 'kiln-pg-';
/** `<hostname> <pid>` of the Node process that made a cluster dir; lets later runs sweep abandoned ones. */
const OWNER_FILE = 'owner';

/**
 * Starts a fresh PostgreSQL server on 127.0.0.1 (free port, fsync off, unix socket inside its temp dir) with a
 * trusted superuser `kiln` and an empty database `kiln`, and resolves once it accepts connections.
 *
 * The server is also stopped when this Node process exits without calling `stop()` (an `exit` handler), and,
 * where util-linux `setpriv` exists, when the process dies from a signal (the parent-death signal).
 */
export async function startPostgres(): Promise<RunningPostgres> {
  const binDir = findPostgresBinDir();
  const runAs = process.getuid?.() === 0 ? unprivilegedAccount() : undefined;
  removeAbandonedClusters();
  const dir = mkdtempSync(path.join(tmpdir(), DIR_PREFIX));
  writeFileSync(path.join(dir, OWNER_FILE), `${hostname()} ${process.pid}\n`);
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');

  try {
    await run(
      path.join(binDir, 'initdb'),
      ['-D', dataDir, '-U', SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      dir,
      runAs,
    );

    // The free port can be taken by someone else before postgres binds it; then try another one.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const child = spawnPostgres(binDir, dataDir, dir, port, logFile, runAs);
      const onExit = (): void => stopOnProcessExit(binDir, dataDir, dir, child, runAs);
      process.on('exit', onExit);
      try {
        await waitUntilReady(child, port, logFile);
        await query(port, 'postgres', `CREATE DATABASE ${DATABASE}`);
      } catch (error) {
        process.off('exit', onExit);
        await stopChild(child);
        if (attempt < 3 && /could not bind|address already in use/i.test(readLog(logFile))) continue;
        throw error;
      }

      let stopped = false;
      return {
        url: `postgres://${SUPERUSER}@127.0.0.1:${port}/${DATABASE}`,
        async stop() {
          if (stopped) return;
          stopped = true;
          process.off('exit', onExit);
          await stopChild(child);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Directory holding initdb, pg_ctl and postgres, searched like scripts/setup-postgres.sh: the directory of
 * `initdb` on PATH, then the newest /usr/lib/postgresql/<major>/bin (Debian and Ubuntu).
 */
function findPostgresBinDir(): string {
  const pathDirs = (process.env['PATH'] ?? '').split(path.delimiter).filter((dir) => dir !== '');
  const onPath = pathDirs.find((dir) => isExecutable(path.join(dir, 'initdb')));
  const debianDirs = listDir('/usr/lib/postgresql')
    .filter((major) => /^\d+$/.test(major))
    .sort((a, b) => Number(b) - Number(a))
    .map((major) => `/usr/lib/postgresql/${major}/bin`);
  const candidates = onPath === undefined ? debianDirs : [onPath, ...debianDirs];
  const found = candidates.find((dir) =>
    ['initdb', 'pg_ctl', 'postgres'].every((name) => isExecutable(path.join(dir, name))),
  );
  if (found === undefined) {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; ' +
        'run `bash scripts/setup-postgres.sh` (as root it installs them with apt-get).',
    );
  }
  return found;
}

/** The `postgres` account if the system has one (Debian's package creates it), else `nobody`. */
function unprivilegedAccount(): RunAs {
  const accounts = new Map<string, RunAs>();
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name && uid && gid) accounts.set(name, { uid: Number(uid), gid: Number(gid) });
  }
  const account = accounts.get('postgres') ?? accounts.get('nobody');
  if (account === undefined) {
    throw new Error('running as root, but there is no `postgres` or `nobody` account to run PostgreSQL as');
  }
  return account;
}

function spawnPostgres(
  binDir: string,
  dataDir: string,
  socketDir: string,
  port: number,
  logFile: string,
  runAs: RunAs | undefined,
): ChildProcess {
  const postgresArgs = [
    '-D',
    dataDir,
    '-p',
    String(port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    `unix_socket_directories=${socketDir}`,
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
  ];
  const postgres = path.join(binDir, 'postgres');
  // setpriv makes the kernel send SIGQUIT (immediate shutdown) to postgres when this process dies, even by a
  // signal that skips the `exit` handler. It execs postgres, so the child's pid is the postmaster's.
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find(isExecutable);
  const [command, args] =
    setpriv === undefined
      ? [postgres, postgresArgs]
      : [setpriv, ['--pdeathsig', 'SIGQUIT', '--', postgres, ...postgresArgs]];
  const log = openSync(logFile, 'a');
  try {
    const child = spawn(command, args, { cwd: socketDir, stdio: ['ignore', log, log], ...runAs });
    // A forgotten stop() must not keep the test process alive; the exit handler still stops the server.
    child.unref();
    child.on('error', () => {}); // a failed spawn leaves child.pid undefined, which waitUntilReady reports
    return child;
  } finally {
    closeSync(log);
  }
}

async function waitUntilReady(child: ChildProcess, port: number, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.pid === undefined) throw new Error(`could not start postgres (${child.spawnfile})`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`postgres exited during startup (${child.exitCode ?? child.signalCode}):\n${readLog(logFile)}`);
    }
    try {
      await query(port, 'postgres', 'SELECT 1');
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(
          `postgres did not accept connections on 127.0.0.1:${port} within ${READY_TIMEOUT_MS} ms (${String(error)}):\n${readLog(logFile)}`,
        );
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function query(port: number, database: string, sql: string): Promise<void> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, database });
  client.on('error', () => {}); // connection refused while starting is expected; connect() reports it
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Fast shutdown (SIGINT), escalating to immediate (SIGQUIT) and SIGKILL if the server does not go away. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.ref(); // keep the process alive while we wait for the server to exit
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitFor = async (ms: number): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const result = await Promise.race([exited.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return result;
  };
  for (const signal of ['SIGINT', 'SIGQUIT', 'SIGKILL'] as const) {
    child.kill(signal);
    if (await waitFor(STOP_TIMEOUT_MS)) return;
  }
}

/** `exit` handlers must be synchronous: pg_ctl waits for the immediate shutdown, then the data is removed. */
function stopOnProcessExit(
  binDir: string,
  dataDir: string,
  dir: string,
  child: ChildProcess,
  runAs: RunAs | undefined,
): void {
  if (child.exitCode === null && child.signalCode === null) {
    spawnSync(path.join(binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10'], {
      cwd: dir,
      stdio: 'ignore',
      ...runAs,
    });
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Deletes cluster dirs whose test process was killed before it could clean up (its server got the parent-death
 * signal, or was stopped by hand). Only dirs made on this host by a process that is gone and holding no running
 * postmaster are touched.
 */
function removeAbandonedClusters(): void {
  for (const name of listDir(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = path.join(tmpdir(), name);
    const [host, owner] = readFirstLine(path.join(dir, OWNER_FILE)).split(' ');
    if (host !== hostname() || owner === undefined || isAlive(Number(owner))) continue;
    const postmaster = readFirstLine(path.join(dir, 'data', 'postmaster.pid'));
    if (postmaster !== '' && isAlive(Number(postmaster))) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // another user's leftovers; not ours to remove
    }
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readFirstLine(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n')[0]?.trim() ?? '';
  } catch {
    return '';
  }
}

/** Runs a short-lived command to completion; rejects with its output when it fails. */
function run(command: string, args: string[], cwd: string, runAs: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], ...runAs });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(command)} failed (${code ?? signal}):\n${output}`));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not find a free TCP port'));
      });
    });
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

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readLog(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').trim();
  } catch {
    return '(no postgres log)';
  }
}
