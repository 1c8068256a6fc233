/**
 * The lease-mode build rules (`LeaseMachine`), driven directly without Temporal: each message as
 * the workflow runs it (validator, then handler), examples first, then properties over random
 * sequences of messages and clock moves (fast-check): never two live lease keys, a dead key never
 * accepted, every path ends exactly once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Build, type BuildTimeouts, isEnded } from '../../src/domain/build.ts';
import {
  type CompleteKind,
  type Refusal,
  type Step,
  COMPLETE_OUTCOMES,
  HEARTBEAT_VISIBILITY_MS,
  initialCoreState,
  LeaseMachine,
  leaseKeyGeneration,
  newLeaseKey,
} from '../../src/domain/buildMachine.ts';
import { scheduledBuild } from '../support/builds.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const TIMEOUTS: BuildTimeouts = {
  schedulingTimeoutMs: 60_000,
  executionTimeoutMs: 600_000,
  defaultLeaseMs: 10_000,
  maxLeaseMs: 30_000,
  maxLeaseResets: 2,
};

/** A machine over a fresh SCHEDULED build, and a clock the test moves. */
function machine(timeouts: BuildTimeouts = TIMEOUTS, opts = { lean: true, clockVersions: true }) {
  const build: Build = scheduledBuild(
    '8922054662172510001',
    { project: 'p', bucket: 'b', builder: 'x' },
    new Date(T0).toISOString(),
  );
  const m = new LeaseMachine(initialCoreState(build), timeouts, opts);
  let nonce = 0;
  const clock = { now: T0 };
  return { m, clock, b: build, nonce: () => `n${++nonce}` };
}

/** What a validator said: throws the refusal's code like the workflow's `refuseIf`. */
function ok(r: Refusal | undefined): void {
  if (r) throw new Error(`${r.code}: ${r.message}`);
}

describe('LeaseMachine by example', () => {
  it('runs lease → start → heartbeat → succeed, bumping the version on each change but the heartbeat', () => {
    const { m, clock, b, nonce } = machine();
    ok(m.refuseLease({ holder: 'r1' }, clock.now));
    const leased = m.lease({ holder: 'r1' }, clock.now, nonce);
    assert.equal(leased.changed, true);
    const { leaseKey } = m.grant(clock.now);
    assert.equal(leaseKeyGeneration(leaseKey), 1);
    assert.equal(b.leaseHolder, 'r1');
    assert.equal(b.leaseExpiration, new Date(T0 + 10_000).toISOString());

    clock.now += 1000;
    ok(m.refuseStart({ leaseKey }, clock.now));
    const started = m.start({ leaseKey, url: 'http://r1' }, clock.now);
    assert.ok(started.version > leased.version);
    assert.equal(b.status, 'STARTED');
    assert.equal(b.url, 'http://r1');

    clock.now += 5000;
    ok(m.refuseHeartbeat({ leaseKey, leaseDurationMs: 99_000 }, clock.now));
    const hb = m.heartbeat({ leaseKey, leaseDurationMs: 99_000 }, clock.now);
    assert.equal(hb.leaseExpiration, new Date(clock.now + 30_000).toISOString(), 'capped at maxLeaseMs');
    assert.equal(b.version, started.version, 'a heartbeat is not stored');

    ok(m.refuseComplete('succeed', { leaseKey }, clock.now));
    const done = m.complete('succeed', { leaseKey, output: { properties: { got: 1 } } }, clock.now);
    assert.deepEqual([done.ended, b.status, b.output?.properties], [true, 'SUCCESS', { got: 1 }]);
    assert.equal(b.leaseHolder, undefined);
    assert.equal(b.leaseExpiration, undefined);
    // The same report again is answered (no change); a fail with that key, or any other call, is refused.
    ok(m.refuseComplete('succeed', { leaseKey }, clock.now));
    assert.equal(m.complete('succeed', { leaseKey }, clock.now).changed, false);
    assert.equal(m.refuseComplete('fail', { leaseKey }, clock.now)?.code, 'BUILD_IS_COMPLETED');
    assert.equal(m.refuseHeartbeat({ leaseKey }, clock.now)?.code, 'BUILD_IS_COMPLETED');
    assert.deepEqual(m.leaseKeys(), { known: [leaseKey], endedBy: leaseKey });
  });

  it('answers a retried lease (same request id) with the same grant and refuses anyone else', () => {
    const { m, clock, nonce } = machine();
    m.lease({ holder: 'r1', requestId: 'q1' }, clock.now, nonce);
    const g = m.grant(clock.now);
    ok(m.refuseLease({ holder: 'r1', requestId: 'q1' }, clock.now));
    assert.equal(m.lease({ holder: 'r1', requestId: 'q1' }, clock.now, nonce).changed, false);
    assert.deepEqual(m.grant(clock.now), g);
    assert.equal(m.refuseLease({ holder: 'r2' }, clock.now)?.code, 'BUILD_IS_LEASED');
    assert.equal(m.refuseLease({ holder: 'r2', requestId: 'q2' }, clock.now)?.code, 'BUILD_IS_LEASED');
    assert.equal(m.refuseLease({ leaseDurationMs: -1 }, clock.now)?.code, 'BUILD_IS_LEASED');
  });

  it('refuses a non-positive lease duration', () => {
    const { m, clock } = machine();
    assert.equal(m.refuseLease({ leaseDurationMs: 0 }, clock.now)?.code, 'INVALID_ARGUMENT');
    assert.equal(m.refuseLease({ leaseDurationMs: Number.NaN }, clock.now)?.code, 'INVALID_ARGUMENT');
  });

  it('resets an expired lease to SCHEDULED until no resets are left, then ends INFRA_FAILURE {leaseExpired}', () => {
    const { m, clock, b, nonce } = machine();
    const keys: string[] = [];
    for (let reset = 1; reset <= TIMEOUTS.maxLeaseResets; reset++) {
      m.lease({ holder: `r${reset}` }, clock.now, nonce);
      keys.push(m.grant(clock.now).leaseKey);
      m.start({ leaseKey: keys.at(-1)! }, clock.now);
      assert.equal(m.nextDeadlineMs(clock.now), clock.now + 10_000);
      clock.now += 9_999;
      assert.equal(m.fireDeadlines(clock.now).changed, false, 'not yet due');
      clock.now += 1;
      assert.equal(
        m.refuseHeartbeat({ leaseKey: keys.at(-1)! }, clock.now)?.code,
        'LEASE_EXPIRED',
        'expired before the reset',
      );
      const step = m.fireDeadlines(clock.now);
      assert.deepEqual(
        [step.expired, step.holder, b.status, b.leaseResets],
        ['reset', `r${reset}`, 'SCHEDULED', reset],
      );
      assert.equal(b.startTime, undefined);
      assert.equal(b.leaseGeneration, reset * 2, 'bumped by the lease and by the reset');
    }
    m.lease({ holder: 'last' }, clock.now, nonce);
    keys.push(m.grant(clock.now).leaseKey);
    clock.now += 10_000;
    const last = m.fireDeadlines(clock.now);
    assert.deepEqual(
      [last.expired, last.ended, b.status, b.statusDetails],
      ['ended', true, 'INFRA_FAILURE', { leaseExpired: true }],
    );
    assert.match(b.summaryMarkdown ?? '', /lease of last expired 3 time/);
    // Every retired key may note a late report; a stranger's key may not.
    for (const k of keys) ok(m.refuseStaleReport(k));
    assert.equal(m.refuseStaleReport(newLeaseKey(1, 'stranger'))?.code, 'LEASE_EXPIRED');
    // The holder of the key current at the end may still write the log; earlier holders may not.
    assert.deepEqual(m.logWriter(keys.at(-1)!, clock.now), { ok: true });
    assert.equal(m.logWriter(keys[0]!, clock.now).ok, false);
  });

  it('ends INFRA_FAILURE on the scheduling timeout, counted from the last reset', () => {
    const { m, clock, b, nonce } = machine();
    assert.equal(m.nextDeadlineMs(clock.now), T0 + 60_000);
    clock.now += 55_000;
    m.lease({}, clock.now, nonce);
    clock.now += 10_000;
    m.fireDeadlines(clock.now); // reset: SCHEDULED again from now
    assert.equal(b.status, 'SCHEDULED');
    assert.equal(m.nextDeadlineMs(clock.now), clock.now + 60_000);
    clock.now += 60_000;
    const step = m.fireDeadlines(clock.now);
    assert.equal(step.ended, true);
    assert.deepEqual([b.status, b.statusDetails], ['INFRA_FAILURE', { timeout: true, resourceExhaustion: true }]);
  });

  it('ends INFRA_FAILURE {timeout} on the execution timeout even while heartbeats keep the lease', () => {
    const { m, clock, b, nonce } = machine();
    m.lease({}, clock.now, nonce);
    const { leaseKey } = m.grant(clock.now);
    m.start({ leaseKey }, clock.now);
    const startedAt = clock.now;
    while (clock.now < startedAt + TIMEOUTS.executionTimeoutMs) {
      clock.now = Math.min(clock.now + 9_000, startedAt + TIMEOUTS.executionTimeoutMs);
      if (m.refuseHeartbeat({ leaseKey, leaseDurationMs: 30_000 }, clock.now) === undefined) {
        m.heartbeat({ leaseKey, leaseDurationMs: 30_000 }, clock.now);
      }
      m.fireDeadlines(clock.now);
    }
    assert.deepEqual(
      [b.status, b.statusDetails, b.summaryMarkdown],
      ['INFRA_FAILURE', { timeout: true }, 'execution timeout'],
    );
  });

  it('cancel ends the build once and keeps the key current at the end as a log writer', () => {
    const { m, clock, b, nonce } = machine();
    m.lease({ holder: 'r1' }, clock.now, nonce);
    const { leaseKey } = m.grant(clock.now);
    const step = m.cancel({ reason: 'not needed', canceledBy: 'user:x' }, clock.now);
    assert.deepEqual(
      [step.ended, b.status, b.canceledBy, b.summaryMarkdown],
      [true, 'CANCELED', 'user:x', 'not needed'],
    );
    assert.equal(m.cancel({}, clock.now).changed, false);
    assert.deepEqual(m.logWriter(leaseKey, clock.now), { ok: true });
    assert.equal(m.refuseComplete('succeed', { leaseKey }, clock.now)?.code, 'BUILD_IS_COMPLETED');
  });

  it('fail maps failureReason; priority changes only while SCHEDULED and within [0, 255]', () => {
    const { m, clock, b, nonce } = machine();
    assert.equal(m.refuseSetPriority(256)?.code, 'INVALID_ARGUMENT');
    assert.equal(m.refuseSetPriority(1.5)?.code, 'INVALID_ARGUMENT');
    ok(m.refuseSetPriority(20));
    assert.equal(m.setPriority(20, clock.now).changed, true);
    assert.equal(m.setPriority(20, clock.now).changed, false);
    m.lease({}, clock.now, nonce);
    const { leaseKey } = m.grant(clock.now);
    m.start({ leaseKey }, clock.now);
    assert.equal(m.refuseSetPriority(30)?.code, 'INVALID_BUILD_STATE');
    m.complete('fail', { leaseKey, failureReason: 'INFRA_FAILURE' }, clock.now);
    assert.equal(b.status, 'INFRA_FAILURE');
    ok(m.refuseComplete('fail', { leaseKey }, clock.now));
  });

  it('throttles the lease search attributes on heartbeats only in lean runs', () => {
    for (const lean of [true, false]) {
      const { m, clock, nonce } = machine(TIMEOUTS, { lean, clockVersions: true });
      m.lease({}, clock.now, nonce);
      const { leaseKey } = m.grant(clock.now);
      clock.now += 1000;
      assert.equal(m.heartbeat({ leaseKey }, clock.now).refreshVisibility, !lean);
      clock.now += HEARTBEAT_VISIBILITY_MS;
      assert.equal(m.heartbeat({ leaseKey }, clock.now).refreshVisibility, true);
      clock.now += 1000;
      assert.equal(m.heartbeat({ leaseKey }, clock.now).refreshVisibility, !lean);
    }
  });

  it('counts versions by one before the clock-versions patch and by the clock after it', () => {
    const old = machine(TIMEOUTS, { lean: true, clockVersions: false });
    assert.equal(old.m.note({ kind: 'STALE_REPORT_REFUSED', message: 'x' }, old.clock.now).version, 2);
    assert.equal(old.m.leaseKeys(), undefined);
    const now = machine();
    assert.equal(now.m.note({ kind: 'STALE_REPORT_REFUSED', message: 'x' }, now.clock.now).version, T0 * 1000);
  });

  it('reads the generation back from a lease key, and 0 from anything else', () => {
    assert.equal(leaseKeyGeneration(newLeaseKey(7, 'abc')), 7);
    assert.equal(leaseKeyGeneration('junk'), 0);
    assert.equal(leaseKeyGeneration('-3.x'), 0);
  });
});

// ---- properties ----

/** Which key a message carries: the newest granted, an older one, or one never handed out. */
const keyChoice = fc.oneof(
  fc.constant({ pick: 'newest' as const }),
  fc.nat({ max: 20 }).map((i) => ({ pick: 'older' as const, i })),
  fc.constant({ pick: 'stranger' as const }),
);

const op = fc.oneof(
  fc.record({
    op: fc.constant('lease' as const),
    holder: fc.constantFrom('r1', 'r2', 'r3'),
    requestId: fc.option(fc.constantFrom('q1', 'q2'), { nil: undefined }),
    leaseDurationMs: fc.option(fc.integer({ min: -5, max: 40_000 }), { nil: undefined }),
  }),
  fc.record({ op: fc.constant('start' as const), key: keyChoice }),
  fc.record({
    op: fc.constant('heartbeat' as const),
    key: keyChoice,
    leaseDurationMs: fc.option(fc.integer({ min: 1, max: 40_000 }), { nil: undefined }),
  }),
  fc.record({
    op: fc.constant('complete' as const),
    kind: fc.constantFrom<CompleteKind>('succeed', 'fail'),
    key: keyChoice,
    infra: fc.boolean(),
  }),
  fc.record({ op: fc.constant('cancel' as const) }),
  fc.record({ op: fc.constant('priority' as const), priority: fc.integer({ min: -1, max: 256 }) }),
  fc.record({ op: fc.constant('stale' as const), key: keyChoice }),
  fc.record({ op: fc.constant('note' as const) }),
  fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 40_000 }) }),
);

type Op = typeof op extends fc.Arbitrary<infer O> ? O : never;

const timeouts = fc.record({
  schedulingTimeoutMs: fc.integer({ min: 1, max: 120_000 }),
  executionTimeoutMs: fc.integer({ min: 1, max: 300_000 }),
  defaultLeaseMs: fc.integer({ min: 1, max: 30_000 }),
  maxLeaseMs: fc.integer({ min: 1, max: 30_000 }),
  maxLeaseResets: fc.integer({ min: 0, max: 3 }),
});

/**
 * Runs `ops` on a fresh machine the way the workflow does (validator, handler; deadlines fired at
 * every turn of the loop), calling `check` after each, then lets time run out.
 */
function run(t: BuildTimeouts, opts: { lean: boolean; clockVersions: boolean }, ops: readonly Op[]): void {
  const { m, clock, b, nonce } = machine(t, opts);
  const granted: string[] = [];
  const dead = new Set<string>();
  let ends = 0;
  let lastVersion = b.version;
  const stepped = (s: Step): void => {
    assert.equal(s.changed, s.version > lastVersion, 'changed exactly when the version went up');
    assert.ok(s.version >= lastVersion, 'versions never go down');
    lastVersion = s.version;
    if (s.ended) ends += 1;
  };
  const keyOf = (c: { pick: 'newest' | 'older' | 'stranger'; i?: number }): string => {
    if (c.pick === 'stranger' || granted.length === 0) return newLeaseKey(granted.length + 1, 'stranger');
    if (c.pick === 'newest') return granted.at(-1)!;
    return granted[(c.i ?? 0) % granted.length]!;
  };
  const check = (): void => {
    // Live: a key a heartbeat would be accepted with (the validators, not the machine's own helper).
    const live = granted.filter((k) => m.refuseHeartbeat({ leaseKey: k }, clock.now) === undefined);
    assert.ok(live.length <= 1, `two live lease keys: ${live.join(', ')}`);
    for (const k of granted) if (!m.isLive(k, clock.now)) dead.add(k);
    for (const k of dead) {
      assert.ok(!m.isLive(k, clock.now), `dead key ${k} live again`);
      assert.ok(m.refuseStart({ leaseKey: k }, clock.now), `dead key ${k} may start`);
      assert.ok(m.refuseHeartbeat({ leaseKey: k }, clock.now), `dead key ${k} may heartbeat`);
      for (const kind of ['succeed', 'fail'] as const) {
        if (m.refuseComplete(kind, { leaseKey: k }, clock.now) === undefined) {
          assert.ok(m.isCompleteRetry(kind, { leaseKey: k }), `dead key ${k} may ${kind}`);
        }
      }
      if (!isEnded(b.status)) assert.equal(m.logWriter(k, clock.now).ok, false, `dead key ${k} may write the log`);
    }
    assert.ok(ends <= 1, 'ended twice');
    assert.equal(isEnded(b.status), ends === 1, 'ended exactly when a step said so');
    if (isEnded(b.status)) assert.equal(b.leaseExpiration, undefined);
  };
  const endedAs = (): string | undefined => (isEnded(b.status) ? `${b.status}@${b.endTime}` : undefined);

  for (const o of ops) {
    const before = endedAs();
    switch (o.op) {
      case 'lease':
        if (!m.refuseLease(o, clock.now)) {
          if (!m.isLeaseRetry(o, clock.now)) {
            const live = granted.filter((k) => m.refuseHeartbeat({ leaseKey: k }, clock.now) === undefined);
            assert.deepEqual(live, [], 'a new lease only when no key is live');
          }
          stepped(m.lease(o, clock.now, nonce));
          if (!granted.includes(m.grant(clock.now).leaseKey)) granted.push(m.grant(clock.now).leaseKey);
        }
        break;
      case 'start': {
        const req = { leaseKey: keyOf(o.key) };
        if (!m.refuseStart(req, clock.now)) stepped(m.start(req, clock.now));
        break;
      }
      case 'heartbeat': {
        const req = { leaseKey: keyOf(o.key), leaseDurationMs: o.leaseDurationMs };
        if (!m.refuseHeartbeat(req, clock.now)) m.heartbeat(req, clock.now);
        break;
      }
      case 'complete': {
        const req = { leaseKey: keyOf(o.key), failureReason: o.infra ? ('INFRA_FAILURE' as const) : undefined };
        if (!m.refuseComplete(o.kind, req, clock.now)) {
          stepped(m.complete(o.kind, req, clock.now));
          assert.ok(COMPLETE_OUTCOMES[o.kind].includes(b.status), `${o.kind} ended ${b.status}`);
        }
        break;
      }
      case 'cancel':
        stepped(m.cancel({ canceledBy: 'user:x' }, clock.now));
        break;
      case 'priority':
        if (!m.refuseSetPriority(o.priority)) stepped(m.setPriority(o.priority, clock.now));
        break;
      case 'stale': {
        const k = keyOf(o.key);
        if (!m.refuseStaleReport(k)) {
          assert.ok(dead.has(k), 'only retired keys note late reports');
          stepped(m.noteStaleReport('succeed', clock.now));
        }
        break;
      }
      case 'note':
        stepped(m.note({ kind: 'STALE_REPORT_REFUSED', message: 'n' }, clock.now));
        break;
      case 'tick':
        clock.now += o.ms;
        break;
    }
    stepped(m.fireDeadlines(clock.now));
    if (before !== undefined) assert.equal(endedAs(), before, 'an ended build never changes how it ended');
    check();
  }
  // Nobody calls any more: the deadlines alone end the build, each turn getting closer to the end.
  for (let turn = 0; !isEnded(b.status); turn++) {
    assert.ok(turn < 20, 'the deadlines never ended the build');
    clock.now = Math.max(clock.now, m.nextDeadlineMs(clock.now));
    stepped(m.fireDeadlines(clock.now));
    check();
  }
  assert.equal(ends, 1, 'ended exactly once');
}

describe('LeaseMachine properties', () => {
  const opts = fc.record({ lean: fc.boolean(), clockVersions: fc.boolean() });
  it('never two live lease keys; a dead key never accepted; every path ends exactly once', () => {
    fc.assert(
      fc.property(timeouts, opts, fc.array(op, { maxLength: 60 }), (t, o, ops) => run(t, o, ops)),
      { numRuns: 500 },
    );
  });

  it('with leases that never expire on their own, the same holds while reports race each other', () => {
    const long = { ...TIMEOUTS, defaultLeaseMs: 3_600_000, maxLeaseMs: 3_600_000, executionTimeoutMs: 7_200_000 };
    const racing = fc.array(
      op.filter((x) => x.op !== 'tick'),
      { maxLength: 40 },
    );
    fc.assert(
      fc.property(racing, (ops) => run(long, { lean: true, clockVersions: true }, ops)),
      { numRuns: 300 },
    );
  });
});
