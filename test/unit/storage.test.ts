/**
 * The storage contract, run unchanged on both backends: embedded (PGlite in memory) and PostgreSQL
 * (a throwaway cluster from test/support/postgres.ts). Each area of the `Storage` interface is one
 * entry of `CONTRACT`; a new storage method gets its own entry and runs on both backends for free.
 * Tests share one database per backend and stay apart by using their own project name.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Build, type BuilderId, type BuildStatus } from '../../src/domain/build.ts';
import { newBuildId } from '../../src/domain/buildId.ts';
import { type StoredVerification } from '../../src/domain/verification.ts';
import { withBuildMetrics } from '../../src/metrics/builds.ts';
import { KilnMetrics } from '../../src/metrics/registry.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { scheduledBuild } from '../support/builds.ts';
import { type RunningPostgres, startPostgres } from '../support/postgres.ts';

/** One backend under test. */
interface Backend {
  name: 'embedded' | 'postgres';
  /** Opens a storage on the backend's one database. */
  open(): Promise<Storage>;
  /** A second, independent connection to the same database (another process, as far as storage can tell). */
  openAnother?(): Promise<Storage>;
  stop(): Promise<void>;
}

async function embeddedBackend(): Promise<Backend> {
  return { name: 'embedded', open: () => openStorage({ kind: 'embedded' }), stop: async () => {} };
}

async function postgresBackend(): Promise<Backend> {
  const pg: RunningPostgres = await startPostgres();
  const open = () => openStorage({ kind: 'postgres', url: pg.url, maxConnections: 8 });
  return { name: 'postgres', open, openAnother: open, stop: () => pg.stop() };
}

/** What each contract area gets: the storage under test and helpers that keep tests apart. */
interface Ctx {
  backend: Backend;
  storage(): Storage;
  /** A project name no other test uses. */
  project(): string;
}

let unique = 0;
/** Distinct, time-ordered build IDs: a later `at` gives a smaller (newer-first) ID. */
function buildId(atMs: number): string {
  return newBuildId(atMs, ++unique & 0xffff);
}

const T0 = Date.parse('2024-05-01T10:00:00Z');

/** A plausible stored build; `at` is its creation time in ms. */
function makeBuild(builder: BuilderId, at: number, o: Partial<Build> = {}): Build {
  return scheduledBuild(buildId(at), builder, new Date(at).toISOString(), o);
}

async function recordAll(s: Storage, builds: Build[]): Promise<void> {
  for (const b of builds) await s.recordBuild(b);
}

const ids = (bs: readonly Build[]) => bs.map((b) => b.id);

/** Every area of the Storage interface; add an entry when the interface grows. */
const CONTRACT: Record<string, (ctx: Ctx) => void> = {
  'build numbers': (ctx) => {
    void it('numbers each builder from 1, independently of other builders', async () => {
      const s = ctx.storage();
      const project = ctx.project();
      const a = { project, bucket: 'ci', builder: 'a' };
      const b = { project, bucket: 'ci', builder: 'b' };
      assert.equal((await s.reserveBuild({ buildId: buildId(T0), builder: a })).number, 1);
      assert.equal((await s.reserveBuild({ buildId: buildId(T0), builder: a })).number, 2);
      assert.equal((await s.reserveBuild({ buildId: buildId(T0), builder: b })).number, 1);
      // Same builder name in another bucket is another builder.
      assert.equal((await s.reserveBuild({ buildId: buildId(T0), builder: { ...a, bucket: 'try' } })).number, 1);
    });

    void it('gives concurrent reservations unique, gap-free numbers', async () => {
      const s = ctx.storage();
      const builder = { project: ctx.project(), bucket: 'ci', builder: 'busy' };
      const n = 60;
      const results = await Promise.all(
        Array.from({ length: n }, () => s.reserveBuild({ buildId: buildId(T0), builder })),
      );
      assert.ok(results.every((r) => r.created));
      assert.deepEqual(
        results.map((r) => r.number).sort((x, y) => x - y),
        Array.from({ length: n }, (_, i) => i + 1),
      );
    });

    void it('returns the first build for a repeated request key, and a concurrent repeat makes one build', async () => {
      const s = ctx.storage();
      const builder = { project: ctx.project(), bucket: 'ci', builder: 'idem' };
      const first = await s.reserveBuild({ buildId: buildId(T0), builder, requestKey: `${builder.project}/k1` });
      assert.deepEqual(first.created, true);
      const again = await s.reserveBuild({ buildId: buildId(T0), builder, requestKey: `${builder.project}/k1` });
      assert.deepEqual(again, { buildId: first.buildId, number: first.number, created: false });

      const racers = await Promise.all(
        Array.from({ length: 20 }, () =>
          s.reserveBuild({ buildId: buildId(T0), builder, requestKey: `${builder.project}/k2` }),
        ),
      );
      assert.equal(racers.filter((r) => r.created).length, 1, 'exactly one racer creates the build');
      assert.equal(new Set(racers.map((r) => r.buildId)).size, 1, 'every racer gets the same build');
      assert.equal(new Set(racers.map((r) => r.number)).size, 1);
      assert.equal(racers[0]?.number, 2);
      // The losers gave their numbers back: no gap before the next build.
      assert.equal((await s.reserveBuild({ buildId: buildId(T0), builder })).number, 3);
    });

    void it('keeps numbers unique and gap-free across two connections (two processes)', async (t) => {
      if (!ctx.backend.openAnother) return t.skip('one process per embedded database');
      const other = await ctx.backend.openAnother();
      try {
        const builder = { project: ctx.project(), bucket: 'ci', builder: 'shared' };
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 ? other : ctx.storage()).reserveBuild({
              buildId: buildId(T0),
              builder,
              requestKey: `${builder.project}/${i % 20}`,
            }),
          ),
        );
        const created = results.filter((r) => r.created);
        assert.equal(created.length, 20);
        assert.deepEqual(
          created.map((r) => r.number).sort((x, y) => x - y),
          Array.from({ length: 20 }, (_, i) => i + 1),
        );
      } finally {
        await other.close();
      }
    });
  },

  'recording and getting builds': (ctx) => {
    void it('gets what was recorded, and nothing for an unknown id', async () => {
      const s = ctx.storage();
      const b = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0, {
        tags: ['buildset:commit/abc', 'k:v', 'k:w'],
        input: { properties: { nested: { a: [1, 2] } } },
        dimensions: ['os:Linux'],
      });
      await s.recordBuild(b);
      assert.deepEqual(await s.getBuild(b.id), b);
      assert.equal(await s.getBuild(buildId(T0 - 1000)), undefined);
    });

    void it('applies newer versions and ignores older ones', async () => {
      const s = ctx.storage();
      const v1 = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0);
      const v2: Build = { ...v1, status: 'STARTED', version: 2, leaseExpiration: '2024-05-01T10:05:00.000Z' };
      const { leaseExpiration: _, ...unleased } = v2;
      const v3: Build = { ...unleased, status: 'SUCCESS', version: 3 };
      await s.recordBuild(v1);
      await s.recordBuild(v3);
      await s.recordBuild(v2); // a late, older write
      await s.recordBuild({ ...v3 }); // a retried write
      assert.deepEqual(await s.getBuild(v1.id), v3);
      assert.equal((await s.searchBuilds({ builder: v1.builder, status: 'STARTED' })).builds.length, 0);
    });

    void it('inserts a build it has not seen, and never replaces one it has (the write of schedule)', async () => {
      const s = ctx.storage();
      const v1 = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0);
      assert.equal(await s.insertBuild(v1), true);
      assert.deepEqual(await s.getBuild(v1.id), v1);
      assert.equal(await s.insertBuild(v1), false, 'a retried insert writes nothing');
      // The workflow wrote first, even the same version with other content: the insert leaves it.
      const other = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0 + 1000);
      const fromWorkflow: Build = { ...other, summaryMarkdown: 'from the workflow' };
      await s.recordBuild(fromWorkflow);
      assert.equal(await s.insertBuild(other), false);
      assert.deepEqual(await s.getBuild(other.id), fromWorkflow);
      // The insert went first: the workflow's write of the same version and content changes nothing, a later one applies.
      assert.equal((await s.recordBuildReplacing(v1)).written, false);
      const v2: Build = { ...v1, status: 'STARTED', version: 2 };
      await s.recordBuild(v2);
      assert.deepEqual(await s.getBuild(v1.id), v2);
      assert.equal(await s.insertBuild(v1), false);
      assert.deepEqual(await s.getBuild(v1.id), v2);
    });

    void it("lets a write of the same version with other content replace a lost workflow task's write", async () => {
      const s = ctx.storage();
      const v1 = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0);
      // The lost task leased the build; the workflow never did, and its next real write reuses version 2.
      const lost: Build = { ...v1, version: 2, leaseHolder: 'lost', leaseExpiration: '2024-05-01T11:00:00.000Z' };
      const real: Build = { ...v1, version: 2, status: 'CANCELED', summaryMarkdown: 'canceled' };
      await s.recordBuild(v1);
      await s.recordBuild(lost, { known: ['1.lost'] });
      await s.recordBuild(real, { known: [] });
      assert.deepEqual(await s.getBuild(v1.id), real);
      const [check] = await s.checkLeaseKeys([{ buildId: v1.id, leaseKey: '1.lost' }]);
      assert.equal(check?.known, false, 'the lost lease key went with its write');
    });

    void it('keeps the newest of concurrent writes', async () => {
      const s = ctx.storage();
      const base = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0);
      const versions = Array.from({ length: 30 }, (_, i) => ({
        ...base,
        version: i + 1,
        summaryMarkdown: `v${i + 1}`,
      }));
      await Promise.all([...versions].reverse().map((v) => s.recordBuild(v)));
      assert.equal((await s.getBuild(base.id))?.summaryMarkdown, 'v30');
    });
  },

  'lease keys': (ctx) => {
    void it('knows the keys a build answers to and the one that ended it, by hash only', async () => {
      const s = ctx.storage();
      const bl = { project: ctx.project(), bucket: 'ci', builder: 'x' };
      const b = makeBuild(bl, T0, { status: 'SUCCESS', version: 5 });
      const old = makeBuild(bl, T0 + 1);
      await s.recordBuild(b, { known: ['1.a', '2.b'], endedBy: '2.b' });
      await s.recordBuild(old); // written without keys (by an older Kiln)
      const checks = await s.checkLeaseKeys([
        { buildId: b.id, leaseKey: '2.b' },
        { buildId: b.id, leaseKey: '1.a' },
        { buildId: b.id, leaseKey: '2.forged' },
        { buildId: old.id, leaseKey: '1.x' },
        { buildId: buildId(T0 - 5000), leaseKey: '1.x' },
      ]);
      assert.deepEqual(
        checks.map((c) => [c.build?.id, c.known, c.endedBy]),
        [
          [b.id, true, true],
          [b.id, true, false],
          [b.id, false, false],
          [old.id, undefined, false],
          [undefined, undefined, false],
        ],
      );
      assert.deepEqual(await s.checkLeaseKeys([]), []);
      assert.ok(!JSON.stringify(await s.getBuild(b.id)).includes('2.b'), 'keys are not in the stored build');
    });

    void it('keeps the keys through the build-metrics wrapper a metered worker stores through', async () => {
      // The wrapper once passed only the build on, so with metrics on (the default) no key was stored.
      const s = withBuildMetrics(ctx.storage(), new KilnMetrics());
      const b = makeBuild({ project: ctx.project(), bucket: 'ci', builder: 'x' }, T0, {
        status: 'SUCCESS',
        version: 3,
      });
      await s.recordBuild(b, { known: ['1.a'], endedBy: '1.a' });
      const [check] = await s.checkLeaseKeys([{ buildId: b.id, leaseKey: '1.a' }]);
      assert.deepEqual([check?.known, check?.endedBy], [true, true]);
    });

    void it('answers what a write replaced, in the write itself', async () => {
      const s = ctx.storage();
      const bl = { project: ctx.project(), bucket: 'ci', builder: 'x' };
      const v1 = makeBuild(bl, T0, { version: 1 });
      assert.deepEqual(await s.recordBuildReplacing(v1), { written: true });
      const stale = { time: new Date(T0).toISOString(), kind: 'STALE_REPORT_REFUSED' as const, message: 'late' };
      const note = { time: new Date(T0).toISOString(), kind: 'LEASED' as const, message: 'leased by r' };
      const v2 = { ...v1, version: 2, status: 'STARTED' as const, leaseResets: 1, events: [note, stale] };
      assert.deepEqual(await s.recordBuildReplacing(v2), {
        written: true,
        previous: { version: 1, status: 'SCHEDULED', leaseResets: 0, events: [] },
      });
      const v3 = { ...v2, version: 3, status: 'SUCCESS' as const };
      assert.deepEqual(await s.recordBuildReplacing(v3, { known: ['1.a'], endedBy: '1.a' }), {
        written: true,
        previous: { version: 2, status: 'STARTED', leaseResets: 1, events: [stale] },
      });
      // Ignored writes (older, or the same again) say so; the keys of the write still count.
      assert.deepEqual(await s.recordBuildReplacing(v2), { written: false });
      assert.deepEqual(await s.recordBuildReplacing(v3), { written: false });
      assert.equal((await s.getBuild(v1.id))?.status, 'SUCCESS');
      assert.equal((await s.checkLeaseKeys([{ buildId: v1.id, leaseKey: '1.a' }]))[0]?.endedBy, true);
      // Same version, other content (a lost workflow task's write): written, replacing that version.
      const redone = { ...v3, status: 'FAILURE' as const };
      assert.deepEqual((await s.recordBuildReplacing(redone)).written, true);
    });

    void it('counts each stored transition once through the build-metrics wrapper', async () => {
      const m = new KilnMetrics();
      const s = withBuildMetrics(ctx.storage(), m);
      const bl = { project: ctx.project(), bucket: 'ci', builder: 'x' };
      const v1 = makeBuild(bl, T0, { version: 1 });
      const stale = { time: new Date(T0).toISOString(), kind: 'STALE_REPORT_REFUSED' as const, message: 'late' };
      const v2 = { ...v1, version: 2, status: 'STARTED' as const };
      const v3 = { ...v2, version: 3, status: 'SCHEDULED' as const, leaseResets: 1, events: [stale] };
      const v4 = { ...v3, version: 4, events: [stale, { ...stale, message: 'later' }] };
      for (const b of [v1, v1, v2, v3, v2, v3, v4, v4]) await s.recordBuild(b);
      const count = async (name: string, labels: Record<string, string> = {}) =>
        (await m.registry.getSingleMetric(name)!.get()).values
          .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x) && v.labels.project === bl.project)
          .reduce((a, v) => a + v.value, 0);
      assert.equal(await count('kiln_build_status_changes_total', { status: 'SCHEDULED' }), 2);
      assert.equal(await count('kiln_build_status_changes_total', { status: 'STARTED' }), 1);
      assert.equal(await count('kiln_lease_expiries_total', { outcome: 'reset' }), 1);
      assert.equal(await count('kiln_stale_reports_refused_total'), 2);
    });
  },

  verifications: (ctx) => {
    const verification = (
      host: string,
      change: number,
      patchset: number,
      run: string,
      o: Partial<StoredVerification> = {},
    ) => {
      const workflowId = `verify/${host}/${change}/${patchset}`;
      const v: StoredVerification = {
        id: `${workflowId}/${run}`,
        workflowId,
        runId: run,
        host,
        project: 'core',
        branch: 'master',
        change,
        patchset,
        phase: 'BUILDING',
        reason: 'Norbert approved',
        platforms: [
          {
            name: 'LINUX',
            builder: { project: 'p', bucket: 'b', builder: 'LINUX' },
            buildId: buildId(T0),
            number: 1,
            status: 'SCHEDULED',
          },
        ],
        merged: false,
        messages: [],
        createTime: new Date(T0 + patchset * 1000).toISOString(),
        updateTime: new Date(T0 + patchset * 1000).toISOString(),
        version: 1,
      };
      return { ...v, ...o };
    };

    void it('keeps the newest version of each attempt and lists a change newest patch set first', async () => {
      const s = ctx.storage();
      const host = `${ctx.project()}.example.org`;
      const a = verification(host, 7, 1, 'run-a');
      await s.recordVerification(a);
      const ended = { ...a, phase: 'ENDED' as const, vote: 1, messages: ['Verified +1'], version: 5 };
      await s.recordVerification(ended);
      await s.recordVerification({ ...a, version: 3 }); // late, older
      assert.deepEqual(await s.getVerification(a.id), ended);
      // The same version with other content: the stored one was a lost workflow task's write.
      const redone = { ...ended, messages: ['Verified +1 (redone)'] };
      await s.recordVerification(redone);
      assert.deepEqual(await s.getVerification(a.id), redone);
      const b = verification(host, 7, 2, 'run-b');
      const other = verification(host, 8, 1, 'run-c');
      await s.recordVerification(b);
      await s.recordVerification(other);
      assert.deepEqual(
        (await s.findVerifications({ host, change: 7 })).map((v) => v.id),
        [b.id, a.id],
      );
      assert.deepEqual(
        (await s.findVerifications({ host, change: 7, patchset: 1 })).map((v) => v.id),
        [a.id],
      );
      assert.deepEqual(await s.findVerifications({ host: 'elsewhere', change: 7 }), []);
      assert.equal(await s.getVerification('verify/none/1/1/x'), undefined);
    });
  },

  search: (ctx) => {
    /** Six builds over two buckets, one per minute; index 5 is the newest. */
    async function fixture() {
      const project = ctx.project();
      const ci = { project, bucket: 'ci', builder: 'linux' };
      const ciMac = { project, bucket: 'ci', builder: 'mac' };
      const tr = { project, bucket: 'try', builder: 'linux' };
      const minute = (i: number) => T0 + i * 60_000;
      const statuses: BuildStatus[] = ['SUCCESS', 'FAILURE', 'STARTED', 'SCHEDULED', 'SUCCESS', 'CANCELED'];
      const builders = [ci, ciMac, tr, ci, ciMac, tr];
      const builds = statuses.map((status, i) =>
        makeBuild(builders[i]!, minute(i), {
          number: i + 1,
          status,
          createdBy: i % 3 === 0 ? 'cq' : 'alice',
          tags: [
            `i:${i}`,
            i % 2 === 0 ? 'parity:even' : 'parity:odd',
            ...(i < 3 ? ['buildset:patch/gerrit/review/1/1'] : ['buildset:patch/gerrit/review/1/2']),
            ...(i === 4 ? ['extra:yes'] : []),
          ],
        }),
      );
      await recordAll(ctx.storage(), builds);
      return { project, ci, ciMac, tr, builds, minute };
    }

    void it('returns builds newest first, restricted to the given buckets', async () => {
      const f = await fixture();
      const s = ctx.storage();
      const all = await s.searchBuilds({ builder: { project: f.project } });
      assert.deepEqual(ids(all.builds), ids([...f.builds].reverse()));
      assert.equal(all.nextCursor, undefined);
      const ciOnly = await s.searchBuilds({ buckets: [`${f.project}/ci`] });
      assert.deepEqual(ids(ciOnly.builds), ids([f.builds[4]!, f.builds[3]!, f.builds[1]!, f.builds[0]!]));
      assert.deepEqual((await s.searchBuilds({ buckets: [] })).builds, []);
    });

    void it('filters by builder, bucket, status, every tag, buildset and created range', async () => {
      const f = await fixture();
      const s = ctx.storage();
      const search = async (q: Parameters<Storage['searchBuilds']>[0]) => ids((await s.searchBuilds(q)).builds);
      const b = f.builds;
      assert.deepEqual(await search({ builder: f.ci }), ids([b[3]!, b[0]!]));
      assert.deepEqual(
        await search({ builder: { project: f.project, builder: 'linux' } }),
        ids([b[5]!, b[3]!, b[2]!, b[0]!]),
      );
      assert.deepEqual(await search({ builder: { project: f.project, bucket: 'try' } }), ids([b[5]!, b[2]!]));
      assert.deepEqual(await search({ builder: { project: f.project }, status: 'SUCCESS' }), ids([b[4]!, b[0]!]));
      // Tags must all match.
      assert.deepEqual(
        await search({ builder: { project: f.project }, tags: ['parity:even'] }),
        ids([b[4]!, b[2]!, b[0]!]),
      );
      assert.deepEqual(
        await search({ builder: { project: f.project }, tags: ['parity:even', 'extra:yes'] }),
        ids([b[4]!]),
      );
      assert.deepEqual(await search({ builder: { project: f.project }, tags: ['parity:odd', 'extra:yes'] }), []);
      assert.deepEqual(
        await search({ builder: { project: f.project }, buildset: 'patch/gerrit/review/1/1' }),
        ids([b[2]!, b[1]!, b[0]!]),
      );
      assert.deepEqual(
        await search({ builder: { project: f.project }, buildset: 'patch/gerrit/review/1/2', tags: ['parity:odd'] }),
        ids([b[5]!, b[3]!]),
      );
      // createdAfter is inclusive, createdBefore exclusive.
      const iso = (ms: number) => new Date(ms).toISOString();
      assert.deepEqual(
        await search({
          builder: { project: f.project },
          createdAfter: iso(f.minute(2)),
          createdBefore: iso(f.minute(4)),
        }),
        ids([b[3]!, b[2]!]),
      );
      assert.deepEqual(await search({ builder: { project: f.project }, createdAfter: iso(f.minute(5) + 1) }), []);
      // Filters combine.
      assert.deepEqual(
        await search({ buckets: [`${f.project}/ci`], status: 'SUCCESS', tags: ['extra:yes'] }),
        ids([b[4]!]),
      );
      assert.deepEqual(await search({ builder: { project: f.project }, createdBy: 'cq' }), ids([b[3]!, b[0]!]));
    });

    void it('gets a build by builder and number', async () => {
      const f = await fixture();
      const s = ctx.storage();
      assert.equal((await s.getBuildByNumber(f.ci, 4))?.id, f.builds[3]!.id);
      assert.equal(await s.getBuildByNumber(f.ci, 2), undefined, 'number 2 is a build of another builder');
      assert.equal(await s.getBuildByNumber({ ...f.ci, builder: 'nope' }, 1), undefined);
    });

    void it('pages with a cursor, newest first, without repeating or skipping builds', async () => {
      const f = await fixture();
      const s = ctx.storage();
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await s.searchBuilds({ builder: { project: f.project }, limit: 4, cursor });
        assert.ok(page.builds.length <= 4);
        seen.push(...ids(page.builds));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== undefined);
      assert.equal(pages, 2);
      assert.deepEqual(seen, ids([...f.builds].reverse()));
      // An exact fit has no next page.
      const exact = await s.searchBuilds({ builder: { project: f.project }, limit: 6 });
      assert.equal(exact.builds.length, 6);
      assert.equal(exact.nextCursor, undefined);
    });
  },

  peek: (ctx) => {
    void it('lists SCHEDULED unleased builds, best priority first, then oldest', async () => {
      const s = ctx.storage();
      const project = ctx.project();
      const bl = { project, bucket: 'ci', builder: 'linux' };
      const m = (i: number) => T0 + i * 1000;
      const old30 = makeBuild(bl, m(0), { priority: 30 });
      const new30 = makeBuild(bl, m(2), { priority: 30 });
      const urgent = makeBuild(bl, m(3), { priority: 10 });
      const leased = makeBuild(bl, m(1), {
        priority: 1,
        leaseExpiration: new Date(Date.now() + 3600_000).toISOString(),
      });
      const started = makeBuild(bl, m(1), { priority: 1, status: 'STARTED' });
      const ended = makeBuild(bl, m(1), { priority: 1, status: 'SUCCESS' });
      await recordAll(s, [old30, new30, urgent, leased, started, ended]);
      const peeked = await s.peekBuilds({ buckets: [`${project}/ci`] });
      assert.deepEqual(ids(peeked), ids([urgent, old30, new30]));
      assert.deepEqual(ids(await s.peekBuilds({ buckets: [`${project}/ci`], limit: 2 })), ids([urgent, old30]));
      // A lease that ends (recorded as a newer version without a lease) makes it peekable again.
      const { leaseExpiration: _, ...unleased } = leased;
      await s.recordBuild({ ...unleased, version: 2 });
      assert.equal((await s.peekBuilds({ buckets: [`${project}/ci`], limit: 1 }))[0]?.id, leased.id);
    });

    void it('offers a SCHEDULED build whose stored lease has expired (the workflow decides at lease time)', async () => {
      const s = ctx.storage();
      const project = ctx.project();
      const bl = { project, bucket: 'ci', builder: 'linux' };
      const expired = makeBuild(bl, T0, {
        leaseHolder: 'gone',
        leaseExpiration: new Date(Date.now() - 1000).toISOString(),
      });
      const live = makeBuild(bl, T0 + 1, {
        leaseHolder: 'r',
        leaseExpiration: new Date(Date.now() + 60_000).toISOString(),
      });
      const startedExpired = makeBuild(bl, T0 + 2, {
        status: 'STARTED',
        leaseExpiration: new Date(Date.now() - 1000).toISOString(),
      });
      await recordAll(s, [expired, live, startedExpired]);
      assert.deepEqual(ids(await s.peekBuilds({ buckets: [`${project}/ci`] })), ids([expired]));
    });

    void it('lists open builds whose lease expired before a time, the latest expiry first', async () => {
      const s = ctx.storage();
      const bl = { project: ctx.project(), bucket: 'ci', builder: 'linux' };
      // Leases of the year 2000, so no other test's builds fall before the cut-off.
      const at = (iso: string) => ({ leaseHolder: 'r', leaseExpiration: iso });
      const older = makeBuild(bl, T0, at('2000-01-01T00:00:00Z'));
      const newer = makeBuild(bl, T0 + 1, { status: 'STARTED', ...at('2000-01-02T00:00:00Z') });
      const notYet = makeBuild(bl, T0 + 2, at('2000-03-01T00:00:00Z'));
      const ended = makeBuild(bl, T0 + 3, { status: 'SUCCESS', ...at('2000-01-01T00:00:00Z') });
      const unleased = makeBuild(bl, T0 + 4);
      await recordAll(s, [older, newer, notYet, ended, unleased]);
      assert.deepEqual(await s.overdueLeases('2000-02-01T00:00:00Z', 10), [newer.id, older.id]);
      assert.deepEqual(await s.overdueLeases('2000-02-01T00:00:00Z', 1), [newer.id]);
      assert.deepEqual(await s.overdueLeases('1999-01-01T00:00:00Z', 10), []);
    });

    void it('returns a build only to runners whose dimensions cover all of its own', async () => {
      const s = ctx.storage();
      const project = ctx.project();
      const bl = { project, bucket: 'ci', builder: 'any' };
      const none = makeBuild(bl, T0, { dimensions: [] });
      const linux = makeBuild(bl, T0 + 1, { dimensions: ['os:Linux'] });
      const linuxGpu = makeBuild(bl, T0 + 2, { dimensions: ['os:Linux', 'gpu:nvidia'] });
      await recordAll(s, [none, linux, linuxGpu]);
      const peek = async (dimensions?: string[]) => ids(await s.peekBuilds({ buckets: [`${project}/ci`], dimensions }));
      assert.deepEqual(await peek(undefined), ids([none, linux, linuxGpu]));
      assert.deepEqual(await peek([]), ids([none]));
      assert.deepEqual(await peek(['os:Linux']), ids([none, linux]));
      assert.deepEqual(await peek(['gpu:nvidia', 'os:Linux', 'cores:8']), ids([none, linux, linuxGpu]));
      assert.deepEqual(await peek(['os:Mac', 'gpu:nvidia']), ids([none]));
    });

    void it('restricts to the given buckets and builders', async () => {
      const s = ctx.storage();
      const project = ctx.project();
      const a = makeBuild({ project, bucket: 'ci', builder: 'a' }, T0);
      const b = makeBuild({ project, bucket: 'ci', builder: 'b' }, T0 + 1);
      const c = makeBuild({ project, bucket: 'try', builder: 'a' }, T0 + 2);
      await recordAll(s, [a, b, c]);
      assert.deepEqual(ids(await s.peekBuilds({ buckets: [`${project}/ci`] })), ids([a, b]));
      assert.deepEqual(
        ids(await s.peekBuilds({ buckets: [`${project}/ci`, `${project}/try`], builders: ['a'] })),
        ids([a, c]),
      );
      assert.deepEqual(ids(await s.peekBuilds({ buckets: [`${project}/try`], builders: ['b'] })), []);
      assert.deepEqual(await s.peekBuilds({ buckets: [] }), []);
    });

    void it('peeks IDs with their buckets in the order it peeks builds', async () => {
      const s = ctx.storage();
      const project = ctx.project();
      const old = makeBuild({ project, bucket: 'ci', builder: 'a' }, T0, { priority: 30 });
      const urgent = makeBuild({ project, bucket: 'try', builder: 'a' }, T0 + 1, { priority: 10 });
      const gpu = makeBuild({ project, bucket: 'ci', builder: 'b' }, T0 + 2, { priority: 30, dimensions: ['gpu:1'] });
      const newer = makeBuild({ project, bucket: 'ci', builder: 'b' }, T0 + 3, { priority: 30 });
      await recordAll(s, [old, urgent, gpu, newer]);
      for (const q of [
        { buckets: [`${project}/ci`, `${project}/try`] },
        { buckets: [`${project}/ci`, `${project}/try`], limit: 2 },
        { buckets: [`${project}/ci`], dimensions: [] },
        { buckets: [`${project}/ci`, `${project}/try`], builders: ['b'] },
      ]) {
        const builds = await s.peekBuilds(q);
        assert.ok(builds.length > 0);
        assert.deepEqual(
          await s.peekBuildIds(q),
          builds.map((b) => ({ id: b.id, bucket: `${b.builder.project}/${b.builder.bucket}` })),
        );
      }
      // Best priority first, whichever bucket it is in.
      assert.deepEqual((await s.peekBuildIds({ buckets: [`${project}/ci`, `${project}/try`], limit: 1 }))[0], {
        id: urgent.id,
        bucket: `${project}/try`,
      });
      assert.deepEqual(await s.peekBuildIds({ buckets: [] }), []);
    });
  },
};

for (const makeBackend of [embeddedBackend, postgresBackend]) {
  void describe(`storage (${makeBackend === embeddedBackend ? 'embedded' : 'postgres'})`, () => {
    let backend: Backend;
    let storage: Storage;
    let projects = 0;
    before(async () => {
      backend = await makeBackend();
      storage = await backend.open();
    });
    after(async () => {
      await storage?.close();
      await backend?.stop();
    });
    const ctx: Ctx = {
      get backend() {
        return backend;
      },
      storage: () => storage,
      project: () => `p${++projects}`,
    };
    void it('reports which backend it is', () => {
      assert.equal(storage.kind, backend.name);
    });
    for (const [area, register] of Object.entries(CONTRACT)) void describe(area, () => register(ctx));
  });
}
