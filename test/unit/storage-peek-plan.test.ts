/**
 * A runner's peek reads only the head of its buckets' queues: with thousands of pending builds its
 * plan walks the partial index of SCHEDULED builds in priority order and stops after the page, before
 * and after ANALYZE (whose statistics once turned the plan into a full scan and a sort of every
 * pending row). Plans, not timings: figures belong in `npm run bench`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openStorage } from '../../src/storage/open.ts';
import { peekStatement, type SqlStorage } from '../../src/storage/sqlStorage.ts';
import { type PeekQuery } from '../../src/storage/storage.ts';

const PENDING = 5000;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

function nodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(nodes)];
}

describe('peek plan with many pending builds', () => {
  let s: SqlStorage;
  before(async () => {
    s = (await openStorage({ kind: 'embedded' })) as SqlStorage;
    // Most pending builds in one bucket (the worst case for a join), some in another; two priorities.
    await s.sql.query(
      `INSERT INTO builds (id, project, bucket, builder, number, status, priority, leased, tags, dimensions,
                           create_time, update_time, version, data)
       SELECT 1000000 + i, 'p', CASE WHEN i % 10 = 0 THEN 'other' ELSE 'ci' END, 'b' || (i % 5), i, 'SCHEDULED',
              CASE WHEN i % 3 = 0 THEN 20 ELSE 30 END, false, '{}', ARRAY['os:linux', 'pool:' || (i % 2)],
              now(), now(), 1, jsonb_build_object('id', (1000000 + i)::text)
       FROM generate_series(1, $1::int) AS i`,
      [PENDING],
    );
  });
  after(() => s.close());

  const explain = async (q: PeekQuery): Promise<PlanNode[]> => {
    const { text, params } = peekStatement(q);
    const r = await s.sql.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
      params,
    );
    const plan = r.rows[0]?.['QUERY PLAN'][0].Plan;
    assert.ok(plan, 'EXPLAIN returned no plan');
    return nodes(plan);
  };

  const assertHeadOnly = (plan: PlanNode[], limit: number, what: string): void => {
    const onBuilds = plan.filter((n) => n['Relation Name'] === 'builds');
    assert.ok(onBuilds.length > 0, `${what}: the plan does not read builds`);
    for (const n of onBuilds) {
      assert.notEqual(n['Node Type'], 'Seq Scan', `${what}: a full scan of builds`);
      assert.equal(n['Index Name'], 'builds_scheduled', `${what}: ${n['Node Type']} on ${n['Index Name']}`);
    }
    // Every node returns at most a page per bucket, not every pending row.
    for (const n of plan) {
      assert.ok(
        (n['Actual Rows'] ?? 0) <= limit,
        `${what}: ${n['Node Type']} returned ${n['Actual Rows']} rows for a page of ${limit}`,
      );
    }
  };

  const queries: [string, PeekQuery][] = [
    ['one bucket', { buckets: ['p/ci'], limit: 10 }],
    ['one bucket, dimensions', { buckets: ['p/ci'], dimensions: ['os:linux', 'pool:1'], limit: 10 }],
    ['two buckets, builders', { buckets: ['p/ci', 'p/other'], builders: ['b1', 'b2'], limit: 100 }],
  ];

  it('reads the head of the index before ANALYZE', async () => {
    for (const [what, q] of queries) assertHeadOnly(await explain(q), q.limit ?? 10, what);
  });

  it('and after ANALYZE', async () => {
    await s.sql.exec('ANALYZE builds');
    for (const [what, q] of queries) assertHeadOnly(await explain(q), q.limit ?? 10, what);
  });
});
