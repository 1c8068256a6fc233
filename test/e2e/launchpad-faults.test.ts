/**
 * Crashes in the middle of a promotion and of a notification: the worker (with every process it
 * started: git, its hooks) is SIGKILLed while its push waits in the target's pre-receive hook, and
 * while the chat endpoint holds the answer to its message. A new worker finishes the job: exactly
 * one push lands, exactly one message is posted. Real processes: Temporal dev server, `kiln
 * worker`, PostgreSQL storage shared with the test, real git.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { BuildService } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { commitTags, remoteIdentity } from '../../src/domain/launchpad/commit.ts';
import { LaunchpadStore } from '../../src/launchpad/store.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { startWebhookServer, type WebhookServer } from '../fakes/webhookServer.ts';
import { GitFixture } from '../support/git.ts';
import { startPostgres } from '../support/postgres.ts';
import { type Child, spawnDevServerOnFreePort, spawnKiln } from '../support/processes.ts';

const T = 120_000;

async function until<V>(fn: () => Promise<V | undefined | false> | V | undefined | false, what: string): Promise<V> {
  const deadline = Date.now() + T;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Every descendant of `pid` (from /proc), deepest last. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** SIGKILLs a worker and everything it started, as a host crash would. */
async function crash(w: Child): Promise<void> {
  const tree = descendants(w.proc.pid ?? 0);
  await w.kill('SIGKILL');
  for (const p of tree) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

describe('Launchpad under crashes: the worker dies mid-promotion and mid-notification', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-lp-faults-'));
  let db: Awaited<ReturnType<typeof startPostgres>>;
  let temporal: Child;
  let worker: Child;
  let env: Record<string, string>;
  let client: Client;
  let storage: Storage;
  let store: LaunchpadStore;
  let service: BuildService;
  let fx: GitFixture;
  let chat: WebhookServer;
  let yaml: string;

  before(async () => {
    db = await startPostgres();
    fx = new GitFixture('lp');
    fx.commit('master', 'init');
    fx.branch('stable', 'master');
    chat = await startWebhookServer();
    let port;
    ({ port, temporal } = await spawnDevServerOnFreePort(join(dir, 'temporal.db')));
    yaml = `
dataDir: ${dir}/data
api: { publicUrl: "https://kiln.example.org" }
projects:
  - name: launchpad
    buckets: [{ name: ci, builders: [{ name: lp-devel }] }]
repositories: [{ name: launchpad, url: "${fx.url}" }]
promotions:
  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel] }
notifications:
  targets: [{ name: chat, kind: mattermost, url: "${chat.url}/hooks/lp" }]
  rules: [{ project: launchpad, on: [end], targets: [chat] }]
`;
    writeFileSync(join(dir, 'kiln.yaml'), yaml);
    env = { KILN_CONFIG: join(dir, 'kiln.yaml'), TEMPORAL_ADDRESS: `127.0.0.1:${port}`, DATABASE_URL: db.url };
    worker = spawnKiln(['worker'], env);
    client = new Client({ connection: await Connection.connect({ address: env.TEMPORAL_ADDRESS }) });
    storage = await openStorage({ kind: 'postgres', url: db.url });
    store = await LaunchpadStore.open(storage);
    const config = parseConfig(yaml, 'kiln.yaml', { LOG_LEVEL: 'silent' });
    service = new BuildService({
      client,
      storage,
      registry: new Registry(config),
      taskQueue: 'kiln',
      logger: pino({ level: 'silent' }),
    });
  });

  after(async () => {
    await worker?.kill('SIGKILL');
    await temporal?.kill('SIGKILL');
    await storage?.close();
    await client?.connection.close();
    await chat?.close();
    await db?.stop();
    fx?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Schedules and ends green a build of `sha` on master, as a poller and a runner would. */
  async function greenBuild(sha: string): Promise<string> {
    const commit = { ...remoteIdentity(fx.url), ref: 'refs/heads/master', id: sha };
    const b = await service.schedule({
      builder: { project: 'launchpad', bucket: 'ci', builder: 'lp-devel' },
      gitilesCommit: commit,
      tags: commitTags(commit),
    });
    await until(async () => (await storage.getBuild(b.id))?.status === 'SCHEDULED', 'stored');
    const { leaseKey } = await service.lease(b.id, { holder: 'runner' });
    await service.start(b.id, { leaseKey });
    await service.succeed(b.id, { leaseKey });
    return b.id;
  }

  it('exactly one push when the worker dies while its push is in the remote hook', async () => {
    const c = fx.commit('master', 'to promote');
    const pushes = fx.recordPushes();
    const hold = fx.holdPushes();
    await greenBuild(c);
    await until(() => existsSync(hold.entered), 'the push reached the pre-receive hook');
    await crash(worker);
    writeFileSync(hold.release, '');
    assert.notEqual(fx.tip('stable'), c, 'the killed push did not land');
    worker = spawnKiln(['worker'], env);
    await until(() => fx.tip('stable') === c, 'a new worker finishes the promotion');
    const a = await until(async () => {
      const x = (await store.listAttempts({ repo: 'launchpad' }))[0];
      return x?.state === 'PROMOTED' ? x : undefined;
    }, 'attempt recorded');
    assert.equal(a.commit, c);
    await sleep(2000);
    rmSync(join(fx.bare, 'hooks', 'pre-receive'));
    assert.deepEqual(
      pushes().map((l) => l.split(' ').slice(1)),
      [[c, 'refs/heads/stable']],
      'exactly one push landed',
    );
  });

  it('exactly one message when the worker dies while the chat endpoint holds its answer', async () => {
    const c = fx.commit('master', 'second');
    chat.hold();
    const id = await greenBuild(c);
    const key = `build/${id}/chat`;
    await until(async () => (await store.getDelivery(key))?.state === 'UNCONFIRMED', 'the message is on the wire');
    assert.equal(chat.received.filter((r) => String(r.json.text).includes(id)).length, 1);
    await crash(worker);
    chat.release();
    worker = spawnKiln(['worker'], env);
    const result = await client.workflow.getHandle(`notify/build/${id}`).result();
    assert.deepEqual(
      result.map((r: { state: string }) => r.state),
      ['ALREADY_SENT'],
    );
    assert.equal((await store.getDelivery(key))?.attempts, 1);
    await sleep(2000);
    assert.equal(
      chat.received.filter((r) => String(r.json.text).includes(id)).length,
      1,
      'exactly one message for the build',
    );
    await until(() => fx.tip('stable') === c, 'and the promotion went on');
  });
});
