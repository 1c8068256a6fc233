/**
 * LibreOffice's verification flow against a real Gerrit 3.10 (one server for this whole file): Gerrit's events
 * reach Kiln through `kiln gerrit listen` running `ssh … gerrit stream-events`, Kiln reads changes and posts
 * reviews through Gerrit's REST API, tinderboxes take and report tasks. Every message and vote is read back
 * from Gerrit itself.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { setUpGerrit, startGerrit, type GerritServer, type GerritWorld } from '../support/gerrit.ts';
import { eventually, startDevEnv } from '../support/temporal.ts';
import { PUBLIC_URL, realGerritHarness, type RealGerritHarness } from '../support/verification.ts';

const CR = 'Code-Review';

describe('verification against a real Gerrit', () => {
  let env: TestWorkflowEnvironment;
  let server: GerritServer;
  let world: GerritWorld;
  let h: RealGerritHarness;
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    const started = Date.now();
    [env, server] = await Promise.all([startDevEnv(), startGerrit()]);
    closers.push(
      () => env.teardown(),
      () => server.stop(),
    );
    world = await setUpGerrit(server);
    for (const p of ['core', 'online']) await world.createProject(p);
    h = await realGerritHarness(env, world, [
      {
        project: 'core',
        trigger: 'approval',
        reviewerGroup: 'Reviewers',
        builders: ['lo/gerrit/LINUX', 'lo/gerrit/WINDOWS'],
      },
      { project: 'online', trigger: 'patchset-created', builders: ['lo/gerrit/LINUX'] },
    ]);
    closers.unshift(() => h.close());
    console.log(
      `real Gerrit: daemon up in ${server.startupMs} ms, ${Math.round(server.rssBytes() / 2 ** 20)} MB RSS; ` +
        `suite ready in ${Date.now() - started} ms`,
    );
  });
  after(async () => {
    for (const c of closers) await c().catch((e: unknown) => console.error(e));
  });

  const take = (platform: string, id: string, caps: string[] = []) =>
    eventually(async () => (await h.getTask(platform, id, caps)) ?? false, 60_000, `a ${platform} task for ${id}`);
  const messages = (change: number, n: number) =>
    eventually(
      async () => {
        const m = await world.kilnMessages(change);
        return m.length >= n && m;
      },
      60_000,
      `${n} Kiln message(s) on change ${change}`,
    );

  it("Norbert's CR+2 → both platforms pass → Verified +1 on Gerrit", async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const c = await world.createChange(world.alice, 'core', 'Fix the frobnicator');
      await world.review(world.norbert, c.number, { labels: { [CR]: 2 } });
      const linux = await take('LINUX', 'tb-linux');
      assert.equal(linux.gerrit?.ref, c.patchset.ref);
      const win = await take('WINDOWS', 'tb-win', ['with-java']);
      await messages(c.number, 2);
      assert.equal((await h.report(linux, 'SUCCESS', 'all good\n')).status, 200);
      assert.equal((await h.report(win, 'SUCCESS')).status, 200);
      const r = await h.result(c.number, 1);
      assert.equal(r.vote, 1);
      const posted = await messages(c.number, 5);
      assert.deepEqual(posted.slice(2), [
        {
          message: `LINUX: SUCCESS on tb-linux. Log: ${PUBLIC_URL}/api/v1/builds/${linux.buildId}/log`,
          votes: '',
          patchset: 1,
        },
        {
          message: `WINDOWS: SUCCESS on tb-win. Log: ${PUBLIC_URL}/api/v1/builds/${win.buildId}/log`,
          votes: '',
          patchset: 1,
        },
        { message: 'Verified +1: all platforms passed (LINUX, WINDOWS).', votes: 'Verified+1', patchset: 1 },
      ]);
      const d = await world.detail(c.number);
      assert.deepEqual(
        d.labels?.Verified?.all?.filter((a) => a.value).map((a) => [a._account_id, a.value]),
        [[world.kiln.id, 1]],
      );
    });
  });
});
