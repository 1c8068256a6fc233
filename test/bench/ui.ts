/**
 * `npm run bench:ui`: the web UI's read endpoints with 100,000 builds in storage, and the CPU cost of
 * live updates for 50 open pages. Prints figures and writes bench-results-ui.json; asserts nothing.
 *   - server time (Fastify inject: routing, handler, storage, serialization) p50/p95 of the builds page
 *     (newest, filtered, deep paging), the builder console, the builders list, the pipeline, and one
 *     builder's statistics over 30 days;
 *   - CPU of this process (the API and the storage it polls) with a steady stream of build updates,
 *     first with no page open, then with 50 pages on GET /api/v1/live (read by a child process, so the
 *     readers' CPU is not counted), as a share of one core.
 * The API is built with a Temporal client that throws on any use: none of this touches Temporal.
 * Options (env): BENCH_STORAGE=embedded|postgres, BENCH_UI_BUILDS=100000, BENCH_UI_PAGES=50,
 * BENCH_UI_UPDATES_PER_SEC=20, BENCH_UI_CPU_SECS=20.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { type Client } from '@temporalio/client';
import { buildApi } from '../../src/api/server.ts';
import { BuildService } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { type Build, type BuildStatus } from '../../src/domain/build.ts';
import { newBuildId } from '../../src/domain/buildId.ts';
import { migrate } from '../../src/storage/migrations.ts';
import { openPglite } from '../../src/storage/pglite.ts';
import { openPostgres } from '../../src/storage/postgres.ts';
import { type SqlClient } from '../../src/storage/sqlClient.ts';
import { SqlStorage } from '../../src/storage/sqlStorage.ts';
import { startPostgres } from '../support/postgres.ts';
import { testLogger } from '../support/temporal.ts';

const STORAGE = process.env.BENCH_STORAGE === 'postgres' ? 'postgres' : 'embedded';
const BUILDS = Number(process.env.BENCH_UI_BUILDS ?? '100000');
const PAGES = Number(process.env.BENCH_UI_PAGES ?? '50');
const UPDATES_PER_SEC = Number(process.env.BENCH_UI_UPDATES_PER_SEC ?? '20');
const CPU_SECS = Number(process.env.BENCH_UI_CPU_SECS ?? '20');
const BUCKETS = ['chromium/try', 'chromium/ci'];
const BUILDERS_PER_BUCKET = 10;
const DAY = 86_400_000;

const config = parseConfig(
  `
ui: { liveIntervalMs: 1000 }
projects:
  - name: chromium
    buckets:
${BUCKETS.map(
  (b) => `      - name: ${b.split('/')[1]}
        builders: [${Array.from({ length: BUILDERS_PER_BUCKET }, (_, i) => `{ name: builder-${i} }`).join(', ')}]`,
).join('\n')}
`,
  'bench-ui.yaml',
  { LOG_LEVEL: 'silent' },
);

/** A client whose every use throws: proves the UI endpoints never call Temporal. */
const noTemporal = new Proxy({} as Client, {
  get: (_t, p) => {
    throw new Error(`the UI bench touched Temporal (client.${String(p)})`);
  },
});

function pick<T>(xs: readonly T[], r: number): T {
  return xs[Math.floor(r * xs.length) % xs.length]!;
}

/** 100,000 builds over 60 days: mostly ended, some pending and running, tags and buildsets. */
function makeBuild(i: number, now: number): Build {
  const created = now - Math.floor((i / BUILDS) * 60 * DAY) - (i % 997);
  const r = (i * 2654435761) % 1000;
  const status: BuildStatus =
    i < 300
      ? i % 3 === 0
        ? 'STARTED'
        : 'SCHEDULED'
      : r < 800
        ? 'SUCCESS'
        : r < 900
          ? 'FAILURE'
          : r < 960
            ? 'INFRA_FAILURE'
            : 'CANCELED';
  const bucket = pick(BUCKETS, (i % 7) / 7);
  const [project, b] = bucket.split('/') as [string, string];
  const builder = `builder-${i % BUILDERS_PER_BUCKET}`;
  const start =
    status === 'SCHEDULED' || (status === 'CANCELED' && r % 2 === 0) ? undefined : created + 1000 + (r % 120) * 1000;
  const end = start !== undefined && status !== 'STARTED' ? start + 60_000 + (r % 600) * 1000 : undefined;
  const iso = (t: number) => new Date(t).toISOString();
  return {
    id: newBuildId(created, i & 0xffff),
    builder: { project, bucket: b, builder },
    number: i + 1,
    status,
    statusDetails: status === 'INFRA_FAILURE' && r % 2 ? { timeout: true } : {},
    tags: [`builder:${builder}`, `buildset:commit/${(i >> 2).toString(16)}`, ...(r % 10 === 0 ? ['user:alice'] : [])],
    input: { properties: { revision: (i * 7919).toString(16), reason: 'bench' } },
    priority: 30 - (r % 3) * 10,
    dimensions: ['os:Linux'],
    createTime: iso(created),
    ...(start !== undefined ? { startTime: iso(start) } : {}),
    ...(end !== undefined ? { endTime: iso(end) } : {}),
    updateTime: iso(end ?? start ?? created),
    ...(status === 'STARTED' ? { leaseHolder: `bot-${i % 50}`, leaseExpiration: iso(now + 60_000) } : {}),
    leaseGeneration: start !== undefined ? 1 : 0,
    leaseResets: 0,
    events: [{ time: iso(created + 500), kind: 'LEASED', message: `leased by bot-${i % 50}` }],
    version: 3,
  };
}

async function seed(db: SqlClient): Promise<void> {
  const now = Date.now();
  const batch = 1000;
  for (let i = 0; i < BUILDS; i += batch) {
    const rows = Array.from({ length: Math.min(batch, BUILDS - i) }, (_, j) => JSON.stringify(makeBuild(i + j, now)));
    await db.query(
      `INSERT INTO builds (id, project, bucket, builder, number, status, priority, leased, tags, dimensions,
                           create_time, update_time, version, data)
       SELECT (d->>'id')::bigint, d->'builder'->>'project', d->'builder'->>'bucket', d->'builder'->>'builder',
              (d->>'number')::int, d->>'status', (d->>'priority')::int, d ? 'leaseExpiration',
              ARRAY(SELECT jsonb_array_elements_text(d->'tags')), ARRAY(SELECT jsonb_array_elements_text(d->'dimensions')),
              (d->>'createTime')::timestamptz, (d->>'updateTime')::timestamptz, (d->>'version')::bigint, d
       FROM unnest($1::jsonb[]) AS t(d)`,
      [rows],
    );
  }
  await db.query('ANALYZE builds');
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

async function main(): Promise<void> {
  const pg = STORAGE === 'postgres' ? await startPostgres() : undefined;
  const db = pg ? await openPostgres(pg.url) : await openPglite(undefined);
  await migrate(db);
  const storage = new SqlStorage(db, STORAGE);
  const registry = new Registry(config);
  const t0 = performance.now();
  await seed(db);
  console.log(`seeded ${BUILDS} builds (${STORAGE}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const service = new BuildService({ client: noTemporal, storage, registry, taskQueue: 'bench', logger: testLogger });
  const app = buildApi({ service, registry, logger: testLogger, storage }, { ui: false });
  await app.ready();

  // A cursor deep in the list, for the paging figure.
  const deep = (await storage.searchBuilds({ limit: 1000, cursor: undefined })).builds;
  let cursor = deep[deep.length - 1]!.id;
  for (let i = 0; i < 40; i++) cursor = (await storage.searchBuilds({ limit: 1000, cursor })).nextCursor ?? cursor;
  const since = new Date(Date.now() - 7 * DAY).toISOString();
  const cases: [string, string][] = [
    ['builds page (newest 50)', '/api/v1/builds?limit=50'],
    ['builds page, status=FAILURE', '/api/v1/builds?limit=50&status=FAILURE'],
    ['builds page, one builder', '/api/v1/builds?limit=50&project=chromium&bucket=try&builder=builder-3'],
    ['builds page, tag + created range', `/api/v1/builds?limit=50&tag=user:alice&createdAfter=${since}`],
    ['builds page, 41,000 builds deep', `/api/v1/builds?limit=50&cursor=${cursor}`],
    ['builder console (10 builders × 25)', '/api/v1/console?bucket=chromium/try&builds=25'],
    ['builders with queues', '/api/v1/builders?queue=10'],
    ['pipeline', '/api/v1/pipeline?limit=200'],
    ['statistics, one builder, 30 days', '/api/v1/builders/chromium/try/builder-3/stats?days=30'],
  ];
  const results: Record<string, { p50: number; p95: number; bytes: number }> = {};
  console.log('\nserver time, ms (50 requests each, after 5 warm-ups)');
  console.log('| request | p50 | p95 | answer KB |\n| --- | --- | --- | --- |');
  for (const [name, url] of cases) {
    let bytes = 0;
    for (let i = 0; i < 5; i++) await app.inject({ method: 'GET', url });
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      const r = await app.inject({ method: 'GET', url });
      times.push(performance.now() - t);
      if (r.statusCode !== 200) throw new Error(`${url}: ${r.statusCode} ${r.body.slice(0, 300)}`);
      bytes = r.rawPayload.length;
    }
    results[name] = { p50: pct(times, 50), p95: pct(times, 95), bytes };
    console.log(
      `| ${name} | ${pct(times, 50).toFixed(1)} | ${pct(times, 95).toFixed(1)} | ${(bytes / 1024).toFixed(1)} |`,
    );
  }

  // Live updates: the same write load with no page, then with PAGES pages listening.
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const open = (await storage.openBuilds(BUCKETS, 1000)).map((b) => b.id);
  const full = await storage.getBuilds(open);
  let n = 0;
  const writer = setInterval(() => {
    const b = full[n++ % full.length]!;
    b.version += 1;
    b.priority = (b.priority + 1) % 50;
    b.updateTime = new Date().toISOString();
    void storage.recordBuild({ ...b });
  }, 1000 / UPDATES_PER_SEC);
  const measure = async () => {
    await new Promise((r) => setTimeout(r, 2000));
    const c = process.cpuUsage();
    const t = performance.now();
    await new Promise((r) => setTimeout(r, CPU_SECS * 1000));
    const used = process.cpuUsage(c);
    return (used.user + used.system) / 1000 / (performance.now() - t);
  };
  const idle = await measure();
  const readers = spawn(
    process.execPath,
    [
      '-e',
      `let frames = 0, bytes = 0;
       for (let i = 0; i < ${PAGES}; i++) {
         fetch(${JSON.stringify(`${url}/api/v1/live`)}).then(async (res) => {
           for await (const chunk of res.body) { bytes += chunk.length; frames++; }
         });
       }
       process.on('SIGTERM', () => { console.log(JSON.stringify({ frames, bytes })); process.exit(0); });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  readers.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const withPages = await measure();
  readers.kill('SIGTERM');
  await new Promise((r) => readers.once('exit', r));
  clearInterval(writer);
  const got = JSON.parse(out || '{"frames":0,"bytes":0}') as { frames: number; bytes: number };
  console.log(
    `\nlive updates: ${UPDATES_PER_SEC} build updates/s; API process CPU ${(idle * 100).toFixed(1)} % of a core with no page open, ` +
      `${(withPages * 100).toFixed(1)} % with ${PAGES} pages (+${((withPages - idle) * 100).toFixed(1)} points); ` +
      `the pages received ${got.frames} chunks, ${(got.bytes / 1024).toFixed(0)} KB; Temporal calls: 0`,
  );
  writeFileSync(
    'bench-results-ui.json',
    JSON.stringify(
      {
        storage: STORAGE,
        builds: BUILDS,
        server: results,
        live: { pages: PAGES, updatesPerSec: UPDATES_PER_SEC, idleCpu: idle, pagesCpu: withPages, received: got },
      },
      null,
      2,
    ),
  );
  await app.close();
  await storage.close();
  await pg?.stop();
}

await main();
