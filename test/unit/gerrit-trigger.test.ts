import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KilnError } from '../../src/domain/errors.ts';
import {
  changeRequirements,
  type ChangeStatus,
  droppedVotes,
  type GerritChange,
  type GerritEventAccount,
  type GerritStreamEvent,
  isRecheckComment,
} from '../../src/domain/gerrit/change.ts';
import {
  type GerritProjectConfig,
  parseBuilderPath,
  parseGerritProjectConfigs,
} from '../../src/domain/gerrit/projectConfig.ts';
import {
  commitQueueMode,
  commitQueueVote,
  cqBuildProperties,
  evaluateTrigger,
  norbertsRule,
  routeGerritEvent,
} from '../../src/domain/gerrit/trigger.ts';

const MEMBER = 1000001;
const MEMBER2 = 1000002;
const OUTSIDER = 1000003;
const OWNER = 1000004;
const members = new Set([MEMBER, MEMBER2]);
const REV = 'b'.repeat(40);

type Votes = Partial<Record<'Code-Review' | 'Verified' | 'Commit-Queue', [account: number, value: number][]>>;

function change(status: ChangeStatus, votes: Votes = {}, patchset = 2): GerritChange {
  const labels: GerritChange['labels'] = {};
  for (const [label, vs] of Object.entries(votes)) {
    labels[label] = { all: vs.map(([id, value]) => ({ _account_id: id, username: `user${id}`, value })) };
  }
  return {
    id: 'core~4321',
    project: 'core',
    branch: 'master',
    change_id: 'I' + 'a'.repeat(40),
    status,
    _number: 4321,
    owner: { _account_id: OWNER, email: 'owner@example.org', username: 'owner' },
    current_revision: REV,
    revisions: { [REV]: { _number: patchset, ref: `refs/changes/21/4321/${patchset}` } },
    labels,
  };
}

const approvalConfig: GerritProjectConfig = {
  host: 'gerrit.example.org',
  project: 'core',
  trigger: 'approval',
  reviewerGroup: 'reviewers',
  builders: ['libreoffice/gerrit/linux', 'libreoffice/gerrit/windows', 'libreoffice/gerrit/mac'],
};
const patchsetConfig: GerritProjectConfig = {
  ...approvalConfig,
  trigger: 'patchset-created',
  reviewerGroup: undefined,
};
const cqConfig: GerritProjectConfig = { ...approvalConfig, trigger: 'commit-queue', reviewerGroup: undefined };

void describe("Norbert's rule", () => {
  const table: { name: string; change: GerritChange; build: boolean; reason: RegExp }[] = [
    { name: 'open, no votes', change: change('NEW'), build: false, reason: /no Code-Review > 0 by a member/ },
    {
      name: 'CR+1 by a member',
      change: change('NEW', { 'Code-Review': [[MEMBER, 1]] }),
      build: true,
      reason: /Code-Review \+1 by user1000001/,
    },
    {
      name: 'CR+2 by a member',
      change: change('NEW', { 'Code-Review': [[MEMBER2, 2]] }),
      build: true,
      reason: /Code-Review \+2 by user1000002/,
    },
    {
      name: 'CR+2 by a non-member',
      change: change('NEW', { 'Code-Review': [[OUTSIDER, 2]] }),
      build: false,
      reason: /no Code-Review > 0 by a member/,
    },
    {
      name: 'CR+1 by the owner who is not a member',
      change: change('NEW', { 'Code-Review': [[OWNER, 1]] }),
      build: false,
      reason: /no Code-Review > 0 by a member/,
    },
    {
      name: 'member CR+2 but someone else CR-1',
      change: change('NEW', {
        'Code-Review': [
          [MEMBER, 2],
          [OUTSIDER, -1],
        ],
      }),
      build: false,
      reason: /Code-Review -1 by user1000003/,
    },
    {
      name: 'member CR+2 but another member CR-2',
      change: change('NEW', {
        'Code-Review': [
          [MEMBER, 2],
          [MEMBER2, -2],
        ],
      }),
      build: false,
      reason: /Code-Review -2 by user1000002/,
    },
    {
      name: 'member CR+2 but Verified -1',
      change: change('NEW', { 'Code-Review': [[MEMBER, 2]], Verified: [[OUTSIDER, -1]] }),
      build: false,
      reason: /Verified -1 by user1000003/,
    },
    {
      name: 'member CR+2 and Verified +1',
      change: change('NEW', { 'Code-Review': [[MEMBER, 2]], Verified: [[OUTSIDER, 1]] }),
      build: true,
      reason: /Code-Review \+2/,
    },
    {
      name: 'member CR+2 and a reset CR 0 by someone else',
      change: change('NEW', {
        'Code-Review': [
          [OUTSIDER, 0],
          [MEMBER, 2],
        ],
      }),
      build: true,
      reason: /Code-Review \+2 by user1000001/,
    },
    {
      name: 'merged with member CR+2',
      change: change('MERGED', { 'Code-Review': [[MEMBER, 2]] }),
      build: false,
      reason: /merged/,
    },
    {
      name: 'abandoned with member CR+2',
      change: change('ABANDONED', { 'Code-Review': [[MEMBER, 2]] }),
      build: false,
      reason: /abandoned/,
    },
  ];
  for (const row of table) {
    void it(`${row.name} → ${row.build ? 'build' : 'no build'}`, () => {
      const d = norbertsRule(row.change, members);
      assert.equal(d.build, row.build, d.reason);
      assert.match(d.reason, row.reason);
    });
  }

  void it('an empty reviewer group never approves', () => {
    assert.equal(norbertsRule(change('NEW', { 'Code-Review': [[MEMBER, 2]] }), new Set()).build, false);
  });

  void it("Kiln's own Verified -1 (an earlier run's verdict) does not veto a new run; anyone else's does", () => {
    const c = change('NEW', { 'Code-Review': [[MEMBER, 2]], Verified: [[OUTSIDER, -1]] });
    assert.equal(norbertsRule(c, members, { selfUsername: 'user1000003' }).build, true);
    assert.equal(norbertsRule(c, members, { selfUsername: 'kiln' }).build, false);
  });
});

void describe('Commit-Queue votes', () => {
  void it('maps values to runs: +1 dry run, +2 full run, 0/absent/negative none', () => {
    assert.equal(commitQueueMode(1), 'dry-run');
    assert.equal(commitQueueMode(2), 'full-run');
    assert.equal(commitQueueMode(0), undefined);
    assert.equal(commitQueueMode(undefined), undefined);
    assert.equal(commitQueueMode(-1), undefined);
  });

  void it('reads the highest Commit-Queue vote on the change', () => {
    assert.equal(commitQueueVote(change('NEW')), 0);
    assert.equal(commitQueueVote(change('NEW', { 'Commit-Queue': [[MEMBER, 1]] })), 1);
    assert.equal(
      commitQueueVote(
        change('NEW', {
          'Commit-Queue': [
            [MEMBER, 1],
            [MEMBER2, 2],
          ],
        }),
      ),
      2,
    );
  });
});

void describe('evaluateTrigger', () => {
  void it('commit-queue: CQ+1 is a dry run, CQ+2 a full run, no vote no run, on the current patchset', () => {
    const dry = evaluateTrigger(cqConfig, change('NEW', { 'Commit-Queue': [[OUTSIDER, 1]] }));
    assert.deepEqual(dry, {
      build: true,
      reason: 'Commit-Queue +1',
      mode: 'dry-run',
      patchset: { number: 2, revision: REV, ref: 'refs/changes/21/4321/2' },
    });
    const full = evaluateTrigger(cqConfig, change('NEW', { 'Commit-Queue': [[OUTSIDER, 2]] }));
    assert.equal(full.build && full.mode, 'full-run');
    const none = evaluateTrigger(cqConfig, change('NEW', { 'Commit-Queue': [[OUTSIDER, 0]] }));
    assert.deepEqual(none, { build: false, reason: 'no Commit-Queue vote' });
  });

  void it("approval: applies Norbert's rule with the given group members", () => {
    const c = change('NEW', { 'Code-Review': [[MEMBER, 2]] });
    assert.equal(evaluateTrigger(approvalConfig, c, { reviewerGroupMembers: members }).build, true);
    assert.equal(evaluateTrigger(approvalConfig, c, { reviewerGroupMembers: new Set([OUTSIDER]) }).build, false);
    assert.equal(evaluateTrigger(approvalConfig, c).build, false, 'no members known → nobody approves');
  });

  void it('patchset-created: builds any open change', () => {
    const r = evaluateTrigger(patchsetConfig, change('NEW'));
    assert.equal(r.build && r.mode, 'verify');
  });

  void it('refuses closed changes, outdated patchsets, other branches and projects', () => {
    const ok = change('NEW', { 'Commit-Queue': [[MEMBER, 2]] });
    assert.match(evaluateTrigger(cqConfig, { ...ok, status: 'MERGED' }).reason, /merged/);
    assert.match(evaluateTrigger(cqConfig, { ...ok, status: 'ABANDONED' }).reason, /abandoned/);
    const outdated = evaluateTrigger(cqConfig, ok, { patchset: 1 });
    assert.deepEqual(outdated, { build: false, reason: 'patchset 1 is outdated (current is 2)' });
    assert.equal(evaluateTrigger(cqConfig, ok, { patchset: 2 }).build, true);
    const branchOnly = { ...cqConfig, branches: ['libreoffice-7-6'] };
    assert.match(evaluateTrigger(branchOnly, ok).reason, /branch master is not verified/);
    assert.equal(evaluateTrigger({ ...cqConfig, branches: ['refs/heads/master'] }, ok).build, true);
    assert.match(evaluateTrigger({ ...cqConfig, project: 'online' }, ok).reason, /project core, not online/);
    const { current_revision: _c, ...noRevision } = ok;
    assert.match(evaluateTrigger(cqConfig, noRevision).reason, /no current revision/);
  });
});

const eventChange = {
  project: 'core',
  branch: 'master',
  id: 'I' + 'a'.repeat(40),
  number: 4321,
  url: 'https://gerrit.example.org/c/core/+/4321',
  owner: { username: 'owner' },
};
const eventPatchSet = { number: 2, revision: REV, ref: 'refs/changes/21/4321/2' };

function commentAdded(
  approvals: { type: string; value: number; oldValue?: number }[],
  author: GerritEventAccount = { username: 'norbert' },
  comment?: string,
): GerritStreamEvent {
  return { type: 'comment-added', change: eventChange, patchSet: eventPatchSet, author, approvals, comment };
}

function actionOf(event: GerritStreamEvent, config: GerritProjectConfig, self?: { username?: string; email?: string }) {
  const ds = routeGerritEvent('gerrit.example.org', event, [config], { self });
  assert.equal(ds.length, 1, 'the event concerns the config');
  return ds[0]!;
}

void describe('routeGerritEvent', () => {
  void it('patchset-created: verify for the patchset-created trigger, evaluate otherwise; supersedes older patchsets', () => {
    const e: GerritStreamEvent = { type: 'patchset-created', change: eventChange, patchSet: eventPatchSet };
    const v = actionOf(e, patchsetConfig);
    assert.deepEqual(
      {
        action: v.action,
        host: v.host,
        change: v.change,
        patchset: v.patchset,
        revision: v.revision,
        ref: v.ref,
        supersedes: v.supersedesOlderPatchsets,
      },
      {
        action: 'verify',
        host: 'gerrit.example.org',
        change: 4321,
        patchset: 2,
        revision: REV,
        ref: 'refs/changes/21/4321/2',
        supersedes: true,
      },
    );
    assert.equal(v.config, patchsetConfig);
    assert.equal(actionOf(e, approvalConfig).action, 'evaluate');
    assert.equal(actionOf(e, approvalConfig).supersedesOlderPatchsets, true);
    assert.equal(actionOf(e, cqConfig).action, 'evaluate');
  });

  void it('comment-added that raises Code-Review or lifts a veto: a fresh evaluate for approval; ignored otherwise', () => {
    // As Gerrit sends it: every label the author may vote, `oldValue` only on the one this comment changed.
    const e = commentAdded([
      { type: 'Verified', value: 0 },
      { type: 'Code-Review', value: 2, oldValue: 0 },
    ]);
    const d = actionOf(e, approvalConfig);
    assert.equal(d.action, 'evaluate');
    assert.equal(d.fresh, true);
    assert.equal(d.supersedesOlderPatchsets, false);
    assert.match(d.reason, /Code-Review \+2 by norbert/);
    assert.equal(
      actionOf(commentAdded([{ type: 'Code-Review', value: 0, oldValue: -1 }]), approvalConfig).action,
      'evaluate',
    );
    // A new veto or a lower vote can never start a verification: no REST reads, no workflow.
    const veto = actionOf(commentAdded([{ type: 'Verified', value: -1, oldValue: 0 }]), approvalConfig);
    assert.equal(veto.action, 'ignore');
    assert.match(veto.reason, /cannot start a verification/);
    assert.equal(
      actionOf(commentAdded([{ type: 'Code-Review', value: -1, oldValue: 0 }]), approvalConfig).action,
      'ignore',
    );
    assert.equal(actionOf(e, patchsetConfig).action, 'ignore');
  });

  void it('comment-added whose votes this comment did not change (no oldValue) is ignored', () => {
    assert.equal(actionOf(commentAdded([]), approvalConfig).action, 'ignore');
    assert.equal(
      actionOf(commentAdded([{ type: 'Commit-Queue', value: 2, oldValue: 0 }]), approvalConfig).action,
      'ignore',
    );
    // A plain reply on a change Norbert approved earlier: Gerrit lists the standing votes without oldValue.
    const reply = actionOf(
      commentAdded([
        { type: 'Verified', value: 0 },
        { type: 'Code-Review', value: 2 },
      ]),
      approvalConfig,
    );
    assert.equal(reply.action, 'ignore');
    assert.match(reply.reason, /no Code-Review\/Verified vote changed/);
    assert.equal(actionOf(commentAdded([{ type: 'Code-Review', value: 1, oldValue: 0 }]), cqConfig).action, 'ignore');
  });

  void it('a `recheck` comment asks for a new run (evaluate, or verify for patchset-created projects)', () => {
    const recheck = commentAdded([{ type: 'Code-Review', value: 2 }], { username: 'alice' }, 'Patch Set 2:\n\nrecheck');
    const a = actionOf(recheck, approvalConfig);
    assert.deepEqual([a.action, a.fresh], ['evaluate', true]);
    assert.match(a.reason, /recheck requested by alice/);
    assert.deepEqual(
      [actionOf(recheck, patchsetConfig).action, actionOf(recheck, patchsetConfig).fresh],
      ['verify', true],
    );
    assert.equal(actionOf(recheck, cqConfig).action, 'evaluate');
    const mention = commentAdded([], { username: 'alice' }, 'Patch Set 2:\n\nplease do not recheck yet');
    assert.equal(actionOf(mention, approvalConfig).action, 'ignore');
  });

  void it("comment-added by Kiln's own account is ignored (its Verified vote must not retrigger)", () => {
    const own = commentAdded([{ type: 'Code-Review', value: 1, oldValue: 0 }], { username: 'kiln-bot' });
    assert.equal(actionOf(own, approvalConfig, { username: 'kiln-bot' }).action, 'ignore');
    assert.equal(actionOf(own, approvalConfig, { username: 'someone-else' }).action, 'evaluate');
    const byEmail = commentAdded([{ type: 'Code-Review', value: 1, oldValue: 0 }], { email: 'Kiln@Example.org' });
    assert.equal(actionOf(byEmail, approvalConfig, { email: 'kiln@example.org' }).action, 'ignore');
  });

  void it('comment-added with Commit-Queue: +1/+2 evaluate, removal cancels, 0 without change ignored', () => {
    assert.equal(
      actionOf(commentAdded([{ type: 'Commit-Queue', value: 1, oldValue: 0 }]), cqConfig).action,
      'evaluate',
    );
    const full = actionOf(commentAdded([{ type: 'Commit-Queue', value: 2, oldValue: 1 }]), cqConfig);
    assert.deepEqual([full.action, full.mode, full.fresh], ['evaluate', 'full-run', true]);
    assert.equal(actionOf(commentAdded([{ type: 'Commit-Queue', value: 1, oldValue: 0 }]), cqConfig).mode, 'dry-run');
    const removed = actionOf(commentAdded([{ type: 'Commit-Queue', value: 0, oldValue: 2 }]), cqConfig);
    assert.equal(removed.action, 'cancel');
    assert.match(removed.reason, /Commit-Queue vote removed/);
    assert.equal(actionOf(commentAdded([{ type: 'Commit-Queue', value: 0 }]), cqConfig).action, 'ignore');
  });

  void it('change-merged → merged, change-abandoned → cancel, change-restored → verify or evaluate', () => {
    const base = { change: eventChange, patchSet: eventPatchSet };
    for (const config of [patchsetConfig, approvalConfig, cqConfig]) {
      assert.equal(actionOf({ type: 'change-merged', ...base }, config).action, 'merged');
      assert.equal(actionOf({ type: 'change-abandoned', ...base }, config).action, 'cancel');
    }
    assert.equal(actionOf({ type: 'change-restored', ...base }, patchsetConfig).action, 'verify');
    assert.equal(actionOf({ type: 'change-restored', ...base }, approvalConfig).action, 'evaluate');
    assert.equal(actionOf({ type: 'change-restored', ...base }, cqConfig).action, 'evaluate');
  });

  void it('only configs for the same host, project and a covered branch are concerned', () => {
    const e: GerritStreamEvent = { type: 'patchset-created', change: eventChange, patchSet: eventPatchSet };
    const configs: GerritProjectConfig[] = [
      patchsetConfig,
      { ...cqConfig, project: 'online' },
      { ...cqConfig, host: 'other.example.org' },
      { ...cqConfig, branches: ['libreoffice-7-6'] },
      { ...approvalConfig, branches: ['master', 'libreoffice-7-6'] },
    ];
    const ds = routeGerritEvent('gerrit.example.org', e, configs);
    assert.deepEqual(
      ds.map((d) => [d.config.trigger, d.action]),
      [
        ['patchset-created', 'verify'],
        ['approval', 'evaluate'],
      ],
    );
    assert.deepEqual(routeGerritEvent('elsewhere.example.org', e, configs), []);
    const refsHeads = { ...e, change: { ...eventChange, branch: 'refs/heads/libreoffice-7-6' } };
    assert.deepEqual(
      routeGerritEvent('gerrit.example.org', refsHeads, configs).map((d) => [d.config.trigger, d.branch]),
      [
        ['patchset-created', 'libreoffice-7-6'],
        ['commit-queue', 'libreoffice-7-6'],
        ['approval', 'libreoffice-7-6'],
      ],
    );
  });
});

void describe('cqBuildProperties', () => {
  const input = {
    host: 'gerrit.example.org',
    change: {
      id: 'platform%2Fcore~4321',
      project: 'platform/core',
      _number: 4321,
      owner: { _account_id: OWNER, email: 'owner@example.org' },
    },
    patchset: { number: 2, revision: REV, ref: 'refs/changes/21/4321/2' },
    builder: parseBuilderPath('libreoffice/gerrit/linux'),
    attemptStartMs: 1_700_000_000_123,
  };

  void it('produces the CQ property set for one builder', () => {
    assert.deepEqual(cqBuildProperties(input), {
      'event.change.id': 'platform%2Fcore~4321',
      'event.change.number': 4321,
      'event.change.url': 'https://gerrit.example.org/c/platform/core/+/4321',
      'event.patchSet.ref': 'refs/changes/21/4321/2',
      gerrit: 'https://gerrit.example.org',
      patch_project: 'platform/core',
      patch_storage: 'gerrit',
      reason: 'CQ',
      revision: REV,
      category: 'cq',
      attempt_start_ts: 1_700_000_000_123_000,
      buildername: 'linux',
      blamelist: ['owner@example.org'],
    });
  });

  void it("builds URLs from the host's base URL (scheme and path prefix) and the event's change URL", () => {
    const p = cqBuildProperties({ ...input, baseUrl: 'http://127.0.0.1:8081/r/' });
    assert.equal(p.gerrit, 'http://127.0.0.1:8081/r');
    assert.equal(p['event.change.url'], 'http://127.0.0.1:8081/r/c/platform/core/+/4321');
    const fromEvent = cqBuildProperties({
      ...input,
      baseUrl: 'http://x/r',
      changeUrl: 'http://gerrit.local/r/c/x/+/1',
    });
    assert.equal(fromEvent['event.change.url'], 'http://gerrit.local/r/c/x/+/1');
  });

  void it("a Commit-Queue run carries LUCI CQ's properties exactly as seed 003 shows them", () => {
    const seed = cqBuildProperties({
      host: 'chromium-review.googlesource.com',
      changeUrl: 'https://chromium-review.googlesource.com/#/c/375219',
      change: {
        id: 'infra%2Finfra~375219',
        project: 'infra/infra',
        branch: 'master',
        change_id: 'I2582d437489ec9688788cbaea026d8eba7e790c3',
        _number: 375219,
        owner: { _account_id: OWNER, email: 'martiniss@chromium.org' },
      },
      patchset: { number: 1, revision: REV, ref: 'refs/changes/19/375219/1' },
      builder: { project: 'infra', bucket: 'luci.infra.try', builder: 'Infra Win Tester' },
      attemptStartMs: 1_472_083_514_000,
      reason: 'Commit-Queue+2 by a committer',
      mode: 'full-run',
    });
    assert.deepEqual(seed, {
      attempt_start_ts: 1.472083514e15,
      category: 'cq',
      'event.change.id': 'infra%2Finfra~master~I2582d437489ec9688788cbaea026d8eba7e790c3',
      'event.change.number': 375219,
      'event.change.url': 'https://chromium-review.googlesource.com/#/c/375219',
      'event.patchSet.ref': 'refs/changes/19/375219/1',
      gerrit: 'https://chromium-review.googlesource.com',
      master: 'luci.infra.try',
      patch_project: 'infra/infra',
      patch_storage: 'gerrit',
      reason: 'CQ',
      revision: 'HEAD',
      // What Swarmbucket adds, and Kiln's dry-run flag.
      buildername: 'Infra Win Tester',
      blamelist: ['martiniss@chromium.org'],
      dry_run: false,
    });
    // A bucket named the LUCI v2 way (`try` in project `infra`) gets the same `master`.
    const short = cqBuildProperties({ ...input, mode: 'dry-run', builder: parseBuilderPath('infra/try/linux') });
    assert.equal(short.master, 'luci.infra.try');
    assert.equal(short.dry_run, true);
    // Results recorded before branch and Change-Id were read: Gerrit's REST id.
    assert.equal(short['event.change.id'], 'platform%2Fcore~4321');
    // The BGP triggers keep their own set: the trigger's reason, the commit SHA, no master.
    const bgp = cqBuildProperties({ ...input, reason: 'Norbert approved' });
    assert.deepEqual([bgp.reason, bgp.revision, 'master' in bgp], ['Norbert approved', REV, false]);
  });

  void it('marks CQ dry and full runs, takes a custom reason, and has an empty blamelist without owner email', () => {
    assert.equal(cqBuildProperties({ ...input, mode: 'dry-run' }).dry_run, true);
    assert.equal(cqBuildProperties({ ...input, mode: 'full-run' }).dry_run, false);
    assert.equal('dry_run' in cqBuildProperties({ ...input, mode: 'verify' }), false);
    assert.equal(cqBuildProperties({ ...input, reason: 'Norbert approved' }).reason, 'Norbert approved');
    const noEmail = { ...input, change: { ...input.change, owner: { _account_id: OWNER } } };
    assert.deepEqual(cqBuildProperties(noEmail).blamelist, []);
  });
});

void describe('parseGerritProjectConfigs', () => {
  void it('accepts valid configs and leaves branches absent (all branches)', () => {
    const [c] = parseGerritProjectConfigs([approvalConfig]);
    assert.equal(c?.branches, undefined);
    assert.deepEqual(c?.builders, approvalConfig.builders);
  });

  function expectConfigError(input: unknown, fragment: string): void {
    assert.throws(
      () => parseGerritProjectConfigs(input),
      (e: unknown) =>
        e instanceof KilnError &&
        e.code === 'INVALID_ARGUMENT' &&
        (e.message.includes(fragment) || assert.fail(`${e.message} lacks ${fragment}`)),
    );
  }

  void it('names the bad field', () => {
    expectConfigError([approvalConfig, { ...cqConfig, builders: ['linux'] }], '[1].builders[0]');
    expectConfigError([{ ...cqConfig, host: 'https://gerrit.example.org' }], '[0].host');
    expectConfigError([{ ...cqConfig, trigger: 'on-merge' }], '[0].trigger');
    expectConfigError([{ ...cqConfig, builders: [] }], '[0].builders');
    expectConfigError([{ ...cqConfig, bulders: ['a/b/c'] }], 'Unrecognized key: "bulders"');
  });

  void it('requires a reviewer group for the approval trigger and refuses duplicates', () => {
    expectConfigError([{ ...approvalConfig, reviewerGroup: undefined }], '[0].reviewerGroup');
    expectConfigError([{ ...cqConfig, builders: ['a/b/c', 'a/b/c'] }], '[0].builders');
    expectConfigError([cqConfig, patchsetConfig], 'gerrit.example.org/core twice');
  });
});

void describe('per-change requirements, recheck comments and dropped votes', () => {
  void it('reads Kiln-Requires footers and requires: hashtags, deduplicated and sorted; ignores junk', () => {
    const msg = 'Add a thing\n\nMore text\n\nChange-Id: Iabc\nKiln-Requires: with-java, with-gtk3\nkiln-requires: odk';
    assert.deepEqual(changeRequirements(msg, ['requires:with-java', 'wip', 'requires:bad name']), [
      'odk',
      'with-gtk3',
      'with-java',
    ]);
    assert.deepEqual(changeRequirements(undefined, []), []);
    assert.deepEqual(changeRequirements('Subject\n\nKiln-Requires: $(rm -rf)', []), []);
  });

  void it('recheck is a line of its own after the Patch Set header', () => {
    assert.equal(isRecheckComment('Patch Set 1:\n\nrecheck'), true);
    assert.equal(isRecheckComment('Patch Set 1:\n\n  ReCheck  '), true);
    assert.equal(isRecheckComment('Patch Set 1: Code-Review+1\n\nrecheck please'), false);
    assert.equal(isRecheckComment(undefined), false);
  });

  void it('a vote is dropped when Gerrit answers without it (labels: {})', () => {
    assert.deepEqual(droppedVotes({ Verified: 1 }, { labels: {} }), ['Verified']);
    assert.deepEqual(droppedVotes({ Verified: 1 }, { labels: { Verified: 1 } }), []);
    assert.deepEqual(droppedVotes(undefined, {}), []);
  });
});
