/**
 * A real Gerrit 3.10 for tests (installed by scripts/setup-gerrit-test-server.sh, which `npm test` runs through
 * KILN_SETUP_EXTRAS): `startGerrit()` copies the initialized site, gives it free loopback ports and a path prefix
 * (`/r/`, so URLs Kiln builds from `baseUrl` are tested for real), starts Gerrit's daemon and waits until its REST
 * API answers. Start one per test file: it takes 10–25 s and about 500 MB.
 *
 * The server stops by itself when this process ends however it ends: the daemon exits when its stdin pipe closes
 * (the launcher watches it), and where util-linux `setpriv` exists the kernel also kills it when this process dies.
 *
 * `setUpGerrit()` then makes, through Gerrit's REST API as the site's admin, everything Kiln's verification
 * needs: accounts with HTTP passwords (and an SSH key for Kiln), a reviewer group, `Verified` and `Commit-Queue`
 * labels and their permissions, the Stream Events capability for Kiln, and projects.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, cpSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './processes.ts';

const TOOLS = resolve(import.meta.dirname, '../../.tools');
export const GERRIT_TEST_SERVER = join(TOOLS, 'bin/gerrit-test-server');
const TEMPLATE_SITE = join(TOOLS, 'gerrit-test-server/site');
const READY_TIMEOUT_MS = 180_000;

/** The site's administrator, made by `init --batch --dev`. */
const ADMIN = { username: 'admin', password: 'secret' };

/** A running test Gerrit. */
export interface GerritServer {
  /** Web and REST base URL with the path prefix and no trailing slash, e.g. `http://127.0.0.1:41234/r`. */
  baseUrl: string;
  /** `127.0.0.1:<http port>`: what Kiln's config names the host (as in buildsets). */
  host: string;
  sshPort: number;
  /** The REST API as the site's administrator. */
  admin: GerritRest;
  /** How long the daemon took from spawn to answering REST. */
  startupMs: number;
  /** The daemon's resident memory now, in bytes (from /proc). */
  rssBytes(): number;
  /** The daemon's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/** Starts a Gerrit daemon on a copy of the initialized site. */
export async function startGerrit(): Promise<GerritServer> {
  try {
    accessSync(GERRIT_TEST_SERVER, constants.X_OK);
    accessSync(join(TEMPLATE_SITE, 'etc/gerrit.config'));
  } catch {
    throw new Error(`no test Gerrit at ${GERRIT_TEST_SERVER}: run \`bash scripts/setup-gerrit-test-server.sh\``);
  }
  const dir = mkdtempSync(join(tmpdir(), 'kiln-gerrit-'));
  const site = join(dir, 'site');
  cpSync(TEMPLATE_SITE, site, { recursive: true });
  const [httpPort, sshPort] = [await freePort(), await freePort()];
  const baseUrl = `http://127.0.0.1:${httpPort}/r`;
  const cfg = (key: string, value: string) =>
    execFileSync('git', ['config', '-f', join(site, 'etc/gerrit.config'), key, value]);
  cfg('httpd.listenUrl', `${baseUrl}/`);
  cfg('gerrit.canonicalWebUrl', `${baseUrl}/`);
  cfg('sshd.listenAddress', `127.0.0.1:${sshPort}`);
  const logFile = join(dir, 'daemon.log');
  const logFd = openSync(logFile, 'a');
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  const args = ['daemon', site];
  const started = Date.now();
  let child: ChildProcess;
  try {
    child = setpriv
      ? spawn(setpriv, ['--pdeathsig', 'SIGKILL', '--', GERRIT_TEST_SERVER, ...args], {
          stdio: ['pipe', logFd, logFd],
        })
      : spawn(GERRIT_TEST_SERVER, args, { stdio: ['pipe', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  child.on('error', () => {});
  // Never write to the pipe: closing it (or dying) is what stops the server.
  child.stdin?.on('error', () => {});
  const killNow = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killNow);
  const log = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  let stopped = false;
  const server: GerritServer = {
    baseUrl,
    host: `127.0.0.1:${httpPort}`,
    sshPort,
    admin: new GerritRest(baseUrl, ADMIN.username, ADMIN.password),
    startupMs: 0,
    rssBytes() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    },
    log,
    async stop() {
      if (stopped) return;
      stopped = true;
      process.off('exit', killNow);
      const exited = new Promise<void>((r) =>
        child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()),
      );
      child.stdin?.end();
      const timer = setTimeout(killNow, 15_000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`Gerrit exited during startup (${child.exitCode ?? child.signalCode}):\n${log().slice(-4000)}`);
      }
      try {
        const res = await fetch(`${baseUrl}/config/server/version`, { signal: AbortSignal.timeout(5000) });
        if (res.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() - started > READY_TIMEOUT_MS) {
        throw new Error(`Gerrit did not answer within ${READY_TIMEOUT_MS} ms:\n${log().slice(-4000)}`);
      }
      await sleep(200);
    }
    server.startupMs = Date.now() - started;
    return server;
  } catch (e) {
    await server.stop();
    throw e;
  }
}

/** Thrown by `GerritRest` for a non-2xx answer. */
export class GerritRestError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status}: ${body.slice(0, 500)}`);
  }
}

/** Gerrit's REST API as one account (HTTP basic with its HTTP password, `/a/` endpoints). */
export class GerritRest {
  constructor(
    readonly baseUrl: string,
    readonly username: string,
    readonly password: string,
  ) {}

  /** A JSON call; answers the parsed body (`)]}'` stripped), or undefined for an empty one. */
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.baseUrl}/a${path}`, {
      method,
      headers: {
        Authorization: `Basic ${Buffer.from(`${this.username}:${this.password}`).toString('base64')}`,
        ...(body !== undefined ? { 'Content-Type': 'application/json; charset=UTF-8' } : {}),
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (!res.ok) throw new GerritRestError(res.status, text, `${this.username}: ${method} ${path}`);
    const json = text.startsWith(")]}'") ? text.slice(4) : text;
    return (json.trim() === '' ? undefined : JSON.parse(json)) as T;
  }
}

/** A test account on the real Gerrit. */
export interface GerritUser {
  id: number;
  username: string;
  name: string;
  email: string;
  password: string;
  rest: GerritRest;
}

/** A patchset as events and builds name it. */
export interface RealPatchset {
  number: number;
  revision: string;
  ref: string;
}

/** What `setUpGerrit` made, and operations on it as its users would do them. */
export interface GerritWorld {
  server: GerritServer;
  kiln: GerritUser;
  norbert: GerritUser;
  alice: GerritUser;
  bob: GerritUser;
  /** Kiln's SSH private key (for `gerrit stream-events`), and the command that streams events with it. */
  kilnKeyFile: string;
  streamEventsCommand: string;
  /**
   * Makes a project (with an initial empty commit on master) and its `Verified` label (−1..+1, blocking submit
   * without +1), unless `verifiedLabel` is false: Gerrit has no Verified label by default.
   */
  createProject(name: string, o?: { verifiedLabel?: boolean }): Promise<void>;
  /** A reviewer group, visible to all accounts unless `visibleToAll` is false (Gerrit's default). */
  createGroup(name: string, members: GerritUser[], o?: { visibleToAll?: boolean }): Promise<void>;
  /** Grants a group votes on a label on every branch of `project`. */
  grantLabel(project: string, group: string, label: string, min: number, max: number): Promise<void>;
  /** Creates a change as `owner` (an empty commit whose message is `message`). */
  createChange(
    owner: GerritUser,
    project: string,
    message: string,
  ): Promise<{ number: number; patchset: RealPatchset }>;
  /** Uploads a new patchset (a change edit, published) as `who`. */
  newPatchset(who: GerritUser, change: number): Promise<RealPatchset>;
  /** Replies on the current patchset as `who`. */
  review(who: GerritUser, change: number, o: { labels?: Record<string, number>; message?: string }): Promise<void>;
  abandon(who: GerritUser, change: number): Promise<void>;
  submit(who: GerritUser, change: number): Promise<void>;
  /** The change as Gerrit shows it (status, labels, messages). */
  detail(change: number): Promise<RealChangeDetail>;
  /** Kiln's messages on a change (Gerrit's `Patch Set N: …` header and Kiln's key line stripped), in order. */
  kilnMessages(change: number): Promise<{ message: string; votes: string; patchset: number }[]>;
}

/** The parts of `ChangeInfo` the tests read. */
export interface RealChangeDetail {
  status: 'NEW' | 'MERGED' | 'ABANDONED';
  current_revision?: string;
  labels?: Record<string, { all?: { _account_id: number; value?: number }[] }>;
  messages?: { author?: { _account_id: number }; message: string; _revision_number?: number; tag?: string }[];
}

const SSH_OPTIONS = [
  '-o',
  'BatchMode=yes',
  '-o',
  'StrictHostKeyChecking=no',
  '-o',
  'UserKnownHostsFile=/dev/null',
  '-o',
  'LogLevel=ERROR',
];

/** `ssh <options> -i <key> -p <port> <user>@127.0.0.1` as a shell word list, for commands tests run. */
export function sshCommandLine(keyFile: string, port: number, user: string): string[] {
  return ['ssh', ...SSH_OPTIONS, '-i', keyFile, '-p', String(port), `${user}@127.0.0.1`];
}

/**
 * Sets up a fresh test Gerrit for Kiln, through its REST API: accounts `kiln` (SSH key, in group `Kiln Bots`,
 * which may vote Verified −1..+1, submit, and stream events), `norbert` (in the visible group `Reviewers`, which
 * may vote Code-Review −2..+2 and Commit-Queue 0..+2), `alice` and `bob` (plain users; Gerrit lets registered
 * users vote Code-Review −1..+1); the label `Commit-Queue` (0..+2, not blocking submit) on All-Projects. The
 * site's `admin` may vote Verified too (to merge a change by hand). Projects get their `Verified` label from
 * `createProject`.
 */
export async function setUpGerrit(server: GerritServer): Promise<GerritWorld> {
  const admin = server.admin;
  const keyDir = mkdtempSync(join(tmpdir(), 'kiln-gerrit-key-'));
  process.on('exit', () => rmSync(keyDir, { recursive: true, force: true }));
  const kilnKeyFile = join(keyDir, 'kiln_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kiln', '-f', kilnKeyFile]);
  const user = async (username: string, name: string, extra: Record<string, unknown> = {}): Promise<GerritUser> => {
    const password = `${username}-http-password`;
    const email = `${username}@example.org`;
    const a = await admin.call<{ _account_id: number }>('PUT', `/accounts/${username}`, {
      name,
      email,
      http_password: password,
      ...extra,
    });
    return {
      id: a._account_id,
      username,
      name,
      email,
      password,
      rest: new GerritRest(server.baseUrl, username, password),
    };
  };
  const [kiln, norbert, alice, bob] = await Promise.all([
    user('kiln', 'Kiln', { ssh_key: readFileSync(`${kilnKeyFile}.pub`, 'utf8').trim() }),
    user('norbert', 'Norbert'),
    user('alice', 'Alice'),
    user('bob', 'Bob'),
  ]);
  const groupIds = new Map<string, string>();
  const groupId = async (name: string): Promise<string> => {
    let id = groupIds.get(name);
    if (!id) {
      id = (await admin.call<{ id: string }>('GET', `/groups/${encodeURIComponent(name)}`)).id;
      groupIds.set(name, id);
    }
    return id;
  };
  const createGroup: GerritWorld['createGroup'] = async (name, members, o = {}) => {
    const g = await admin.call<{ id: string }>('PUT', `/groups/${encodeURIComponent(name)}`, {
      members: members.map((m) => m.username),
      ...(o.visibleToAll === false ? {} : { visible_to_all: true }),
    });
    groupIds.set(name, g.id);
  };
  const access = async (project: string, add: Record<string, unknown>) =>
    admin.call('POST', `/projects/${encodeURIComponent(project)}/access`, { add });
  const grantLabel: GerritWorld['grantLabel'] = async (project, group, label, min, max) => {
    await access(project, {
      'refs/heads/*': {
        permissions: { [`label-${label}`]: { rules: { [await groupId(group)]: { action: 'ALLOW', min, max } } } },
      },
    });
  };
  await createGroup('Kiln Bots', [kiln]);
  await createGroup('Reviewers', [norbert]);
  await admin.call('PUT', '/projects/All-Projects/labels/Commit-Queue', {
    commit_message: 'Commit-Queue label',
    values: { ' 0': 'No run', '+1': 'Dry run', '+2': 'Full run' },
    function: 'NoBlock',
  });
  await grantLabel('All-Projects', 'Kiln Bots', 'Verified', -1, 1);
  await grantLabel('All-Projects', 'Administrators', 'Verified', -1, 1);
  await grantLabel('All-Projects', 'Reviewers', 'Code-Review', -2, 2);
  await grantLabel('All-Projects', 'Reviewers', 'Commit-Queue', 0, 2);
  await access('All-Projects', {
    'refs/heads/*': { permissions: { submit: { rules: { [await groupId('Kiln Bots')]: { action: 'ALLOW' } } } } },
    GLOBAL_CAPABILITIES: {
      permissions: { streamEvents: { rules: { [await groupId('Kiln Bots')]: { action: 'ALLOW' } } } },
    },
  });

  const currentPatchset = async (change: number): Promise<RealPatchset> => {
    const d = await admin.call<{
      current_revision: string;
      revisions: Record<string, { _number: number; ref: string }>;
    }>('GET', `/changes/${change}?o=CURRENT_REVISION`);
    const r = d.revisions[d.current_revision]!;
    return { number: r._number, revision: d.current_revision, ref: r.ref };
  };
  let edits = 0;
  return {
    server,
    kiln,
    norbert,
    alice,
    bob,
    kilnKeyFile,
    streamEventsCommand: [...sshCommandLine(kilnKeyFile, server.sshPort, 'kiln'), 'gerrit', 'stream-events'].join(' '),
    async createProject(name, o = {}) {
      await admin.call('PUT', `/projects/${encodeURIComponent(name)}`, { create_empty_commit: true });
      if (o.verifiedLabel === false) return;
      await admin.call('PUT', `/projects/${encodeURIComponent(name)}/labels/Verified`, {
        commit_message: 'Verified label for Kiln',
        values: { '-1': 'Fails', ' 0': 'No score', '+1': 'Verified' },
      });
    },
    createGroup,
    grantLabel,
    async createChange(owner, project, message) {
      const c = await owner.rest.call<{ _number: number }>('POST', '/changes/', {
        project,
        branch: 'master',
        subject: message,
      });
      return { number: c._number, patchset: await currentPatchset(c._number) };
    },
    async newPatchset(who, change) {
      await who.rest.call('PUT', `/changes/${change}/edit/kiln-test-${++edits}.txt`, {
        binary_content: `data:text/plain;base64,${Buffer.from(`edit ${edits}\n`).toString('base64')}`,
      });
      await who.rest.call('POST', `/changes/${change}/edit:publish`, { notify: 'NONE' });
      return currentPatchset(change);
    },
    async review(who, change, o) {
      await who.rest.call('POST', `/changes/${change}/revisions/current/review`, o);
    },
    async abandon(who, change) {
      await who.rest.call('POST', `/changes/${change}/abandon`, {});
    },
    async submit(who, change) {
      await who.rest.call('POST', `/changes/${change}/submit`, {});
    },
    async detail(change) {
      return admin.call<RealChangeDetail>('GET', `/changes/${change}/detail?o=CURRENT_REVISION`);
    },
    async kilnMessages(change) {
      const d = await admin.call<RealChangeDetail>('GET', `/changes/${change}/detail`);
      return (d.messages ?? [])
        .filter((m) => m.author?._account_id === kiln.id)
        .map((m) => {
          const [header = '', ...rest] = m.message.split('\n\n');
          const body = rest
            .join('\n\n')
            .split('\n\nKiln-Review-Key: ')[0]!
            .replace(/^Kiln-Review-Key: .*$/, '');
          return {
            message: body,
            votes: header.replace(/^Patch Set \d+:\s*/, ''),
            patchset: m._revision_number ?? 0,
          };
        });
    },
  };
}
