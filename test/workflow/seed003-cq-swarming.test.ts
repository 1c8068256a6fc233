/**
 * LUCI's CQ flow end to end, as seed 003 describes it: the `luci.infra.try` bucket, its kitchen task template and
 * its CQ request go through Kiln unchanged, on a real Temporal dev server, against a Swarming fake that speaks the
 * real `swarming.v2` pRPC wire format and a Gerrit fake that speaks Gerrit's REST.
 *
 * 1. Buildbucket → Swarming: the CQ's request (seed 003's `parameters_json`: builder name, changes, properties)
 *    becomes one Swarming task with the merged dimensions, the execution timeout and the kitchen command rendered
 *    with `-properties` holding every CQ property plus Swarmbucket's `buildername` and `blamelist`; the build
 *    follows the task to SUCCESS and is found by its buildset.
 * 2. Gerrit → CQ → Buildbucket: a Commit-Queue +2 on the change makes Kiln the CQ: the project's verification
 *    builder is that same Swarming builder, and its task carries the CQ properties as seed 003 shows them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { GerritHosts } from '../../src/gerrit/settings.ts';
import { swarmingDepsFromConfig } from '../../src/swarming/deps.ts';
import { createKilnWorker } from '../../workers/worker.ts';
import { FakeGerritServer } from '../fakes/gerritServer.ts';
import { type FakeTask, FakeSwarmingServer } from '../fakes/swarmingServer.ts';
import { eventually, startDevEnv, testLogger } from '../support/temporal.ts';
import { ACCOUNTS, EVENT_SECRET, type KilnUnderTest, startKiln } from '../support/verification.ts';

const NOTIFY_TOKEN = 'notify-secret-0123456789';
const GERRIT_HOST = 'chromium-review.googlesource.com';
const BUILDSET = `patch/gerrit/${GERRIT_HOST}/375219/1`;

/** Seed 003's task template chunk (the kitchen command), in a `swarming.v2.NewTaskRequest` with one slice. */
const TASK_TEMPLATE = {
  revision: 'template-rev-1',
  template: {
    name: 'bb-${project}-${bucket}-${builder}',
    priority: '30',
    task_slices: [
      {
        expiration_secs: '21600',
        properties: {
          command: [
            'kitchen${EXECUTABLE_SUFFIX}',
            'cook',
            '-python-path',
            'third_party',
            '-timestamps',
            '-repository',
            '$repository',
            '-revision',
            '$revision',
            '-recipe',
            '$recipe',
            '-properties',
            '$properties_json',
            '-logdog-host',
            'luci-logdog.appspot.com',
            '-logdog-project',
            '$project',
            '-logdog-tee',
            '-logdog-enable-annotee',
          ],
        },
      },
    ],
  },
};

/** Seed 003's `cr-buildbucket.cfg` bucket, in Kiln's config, and a Gerrit project whose CQ runs its builder. */
function configYaml(o: { template: string; swarmingUrl: string; gerritUrl: string }): string {
  return `
projects:
  - name: infra
    buckets:
      - name: luci.infra.try
        swarming:
          hostname: chromium-swarm.appspot.com
          url_format: "https://luci-milo.appspot.com/swarming/task/{task_id}"
          builder_defaults:
            swarming_tags: ["allow_milo:1"]
            dimensions: ["cpu:x86-64", "pool:Chrome"]
            recipe:
              repository: "https://chromium.googlesource.com/infra/infra"
            execution_timeout_secs: 1800 # 30 min
          builders:
            - category: "Infra"
              name: "Infra Win Tester"
              dimensions: ["os:Windows-7-SP1"]
              recipe:
                name: "infra_repo_trybot"
swarming:
  taskTemplate: ${o.template}
  kilnHostname: kiln.example.org
  pubsubTopic: projects/kiln/topics/swarming
  notifyToken: ${NOTIFY_TOKEN}
  syncIntervalSecs: 10
  baseUrlOverride: ${o.swarmingUrl}
gerrit:
  hosts:
    - host: ${GERRIT_HOST}
      baseUrl: ${o.gerritUrl}
      auth: { kind: basic, username: kiln, passwordEnv: KILN_TEST_GERRIT_PASSWORD }
  eventSecret: ${EVENT_SECRET}
  self: { username: kiln }
  projects:
    - host: ${GERRIT_HOST}
      project: infra/infra
      trigger: commit-queue
      builders: ["infra/luci.infra.try/Infra Win Tester"]
`;
}

/** Seed 003's `parameters_json`, as CQ posts it. */
const CQ_PARAMETERS = {
  builder_name: 'Infra Win Tester',
  changes: [{ author: { email: 'martiniss@chromium.org' }, repo_url: 'https://chromium.googlesource.com/infra/infra' }],
  properties: {
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
  },
};

describe('seed 003: Gerrit → CQ → Buildbucket → Swarming', () => {
  let env: TestWorkflowEnvironment;
  let swarming: FakeSwarmingServer;
  let gerrit: FakeGerritServer;
  let kiln: KilnUnderTest;
  let worker: Worker;
  let running: Promise<void>;
  let dir: string;

  before(async () => {
    env = await startDevEnv();
    swarming = await FakeSwarmingServer.start();
    gerrit = await FakeGerritServer.start();
    gerrit.addAccount({ ...ACCOUNTS.kiln });
    gerrit.addAccount({ _account_id: 7, username: 'martiniss', name: 'Martiniss', email: 'martiniss@chromium.org' });
    gerrit.addAccount({ ...ACCOUNTS.norbert });
    dir = mkdtempSync(join(tmpdir(), 'kiln-seed003-'));
    const template = join(dir, 'swarming_task_template.json');
    writeFileSync(template, JSON.stringify(TASK_TEMPLATE));
    kiln = await startKiln(
      env,
      GERRIT_HOST,
      configYaml({ template, swarmingUrl: swarming.baseUrl, gerritUrl: gerrit.url }),
    );
    swarming.notifyUrl = `${kiln.url}/api/v1/swarming/notify`;
    worker = await createKilnWorker({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue: kiln.taskQueue,
      deps: {
        storage: kiln.storage,
        logger: testLogger,
        gerrit: { hosts: new GerritHosts(kiln.settings) },
        swarming: swarmingDepsFromConfig(kiln.registry.config),
      },
    });
    running = worker.run();
  });

  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await kiln?.close();
    await swarming?.close();
    await gerrit?.close();
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const api = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const res = await fetch(`${kiln.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Build & { builds?: Build[]; message?: string } };
  };

  const taskOf = (id: string): Promise<FakeTask> =>
    eventually(
      async () =>
        [...swarming.tasks.values()].find((t) =>
          (t.request['tags'] as string[]).includes(`buildbucket_build_id:${id}`),
        ),
      60_000,
      `the Swarming task of build ${id}`,
    );

  const stored = (id: string, pred: (b: Build) => boolean, what: string): Promise<Build> =>
    eventually(
      async () => {
        const b = await kiln.storage.getBuild(id);
        return b && pred(b) && b;
      },
      60_000,
      what,
    );

  type Slice = {
    expiration_secs: number;
    properties: { command: string[]; dimensions: { key: string; value: string }[]; execution_timeout_secs: number };
  };
  const sliceOf = (t: FakeTask): Slice => (t.request['task_slices'] as Slice[])[0]!;

  it("the CQ's request becomes one kitchen task with every CQ property; the build follows it and is found by its buildset", async () => {
    // Buildbucket v1's `builder_name` is the builder of Kiln's `{project, bucket, builder}`; the rest goes as it is.
    const { builder_name, changes, properties } = CQ_PARAMETERS;
    const scheduled = await api('POST', '/api/v1/builds', {
      builder: { project: 'infra', bucket: 'luci.infra.try', builder: builder_name },
      changes,
      properties,
      tags: [`buildset:${BUILDSET}`],
    });
    assert.equal(scheduled.status, 200, scheduled.body.message);
    const b = scheduled.body;
    const task = await taskOf(b.id);
    assert.equal(
      [...swarming.tasks.values()].filter((t) =>
        (t.request['tags'] as string[]).includes(`buildbucket_build_id:${b.id}`),
      ).length,
      1,
      'one task',
    );

    // The merged builder: builder_defaults' dimensions with the builder's, and its execution timeout.
    const slice = sliceOf(task);
    assert.deepEqual(slice.properties.dimensions, [
      { key: 'cpu', value: 'x86-64' },
      { key: 'os', value: 'Windows-7-SP1' },
      { key: 'pool', value: 'Chrome' },
    ]);
    assert.equal(slice.properties.execution_timeout_secs, 1800);

    // The kitchen command: known parameters rendered, `${EXECUTABLE_SUFFIX}` left for the bot.
    const command = slice.properties.command;
    const propertiesJson = command[command.indexOf('-properties') + 1]!;
    assert.deepEqual(
      command.map((a) => (a === propertiesJson ? '<properties_json>' : a)),
      [
        'kitchen${EXECUTABLE_SUFFIX}',
        'cook',
        '-python-path',
        'third_party',
        '-timestamps',
        '-repository',
        'https://chromium.googlesource.com/infra/infra',
        '-revision',
        '', // no recipe revision configured: kitchen checks out FETCH_HEAD
        '-recipe',
        'infra_repo_trybot',
        '-properties',
        '<properties_json>',
        '-logdog-host',
        'luci-logdog.appspot.com',
        '-logdog-project',
        'infra',
        '-logdog-tee',
        '-logdog-enable-annotee',
      ],
    );
    // `properties_json`: every CQ property as CQ sent it, plus what Swarmbucket adds (kitchen adds the rest).
    assert.deepEqual(JSON.parse(propertiesJson), {
      ...properties,
      blamelist: ['martiniss@chromium.org'],
      buildername: 'Infra Win Tester',
    });
    const tags = task.request['tags'] as string[];
    for (const t of [
      'allow_milo:1',
      `buildset:${BUILDSET}`,
      'buildbucket_bucket:infra/luci.infra.try',
      'buildbucket_template_canary:false',
      'recipe_name:infra_repo_trybot',
      'recipe_repository:https://chromium.googlesource.com/infra/infra',
      'recipe_revision:HEAD',
    ]) {
      assert.ok(tags.includes(t), `task tag ${t} in ${tags.join(', ')}`);
    }

    // The build follows the task to SUCCESS.
    await swarming.setState(task.taskId, 'RUNNING');
    await stored(b.id, (x) => x.status === 'STARTED', 'STARTED');
    await swarming.setState(task.taskId, 'COMPLETED', { exitCode: 0 });
    const done = await stored(b.id, (x) => isEnded(x.status), 'ended');
    assert.equal(done.status, 'SUCCESS');
    assert.equal(done.url, `https://luci-milo.appspot.com/swarming/task/${task.taskId}`);
    assert.ok(done.tags.includes(`swarming_task_id:${task.taskId}`));
    assert.ok(done.tags.includes('swarming_dimension:os:Windows-7-SP1'));
    assert.deepEqual(done.input.changes, changes);

    // Found by its buildset, as CQ searches (and by the same patch set as a Gerrit change).
    const byBuildset = await api('GET', `/api/v1/builds?buildset=${encodeURIComponent(BUILDSET)}`);
    assert.deepEqual(
      byBuildset.body.builds?.map((x) => [x.id, x.status]),
      [[b.id, 'SUCCESS']],
    );
    const byChange = await api('GET', `/api/v1/builds?gerritChange=${encodeURIComponent(`${GERRIT_HOST}/375219/1`)}`);
    assert.deepEqual(
      byChange.body.builds?.map((x) => x.id),
      [b.id],
    );
  });

  it('a Commit-Queue +2 verifies the change on the Swarming builder with the CQ properties as seed 003 shows them', async () => {
    const c = gerrit.createChange({ project: 'infra/infra', owner: 7, number: 375220, subject: 'Add a CQ test' });
    gerrit.vote(c.number, ACCOUNTS.norbert._account_id, 'Code-Review', 2);
    gerrit.vote(c.number, ACCOUNTS.norbert._account_id, 'Commit-Queue', 2);
    const r = await kiln.sendEvent({
      type: 'comment-added',
      change: {
        project: 'infra/infra',
        branch: 'master',
        id: c.changeId,
        number: c.number,
        subject: 'Add a CQ test',
        owner: { name: 'Martiniss', email: 'martiniss@chromium.org', username: 'martiniss' },
        url: `https://chromium-review.googlesource.com/#/c/${c.number}`,
        status: 'NEW',
      },
      patchSet: { number: 1, revision: c.patchset.revision, ref: c.patchset.ref },
      author: { name: 'Norbert', email: 'norbert@example.org', username: 'norbert' },
      approvals: [{ type: 'Commit-Queue', value: '2', oldValue: '0' }],
      comment: 'Patch Set 1: Commit-Queue+2',
      eventCreatedOn: 1472083514,
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual(
      r.body.actions?.map((a) => a.action),
      ['evaluate'],
    );

    const [build] = await eventually(
      async () => {
        const bs = await kiln.builds(c.number, 1);
        return bs.length > 0 && bs;
      },
      60_000,
      'the verification build',
    );
    assert.ok(build);
    assert.deepEqual(build.builder, { project: 'infra', bucket: 'luci.infra.try', builder: 'Infra Win Tester' });
    assert.deepEqual(build.input.gerritChanges, [
      { host: GERRIT_HOST, project: 'infra/infra', change: c.number, patchset: 1 },
    ]);
    const task = await taskOf(build.id);
    const command = sliceOf(task).properties.command;
    const props = JSON.parse(command[command.indexOf('-properties') + 1]!) as Record<string, unknown>;
    const startTs = props['attempt_start_ts'];
    assert.ok(typeof startTs === 'number' && startTs > 1.7e15, `attempt_start_ts in µs: ${String(startTs)}`);
    assert.deepEqual(props, {
      attempt_start_ts: startTs,
      category: 'cq',
      'event.change.id': `infra%2Finfra~master~${c.changeId}`,
      'event.change.number': c.number,
      'event.change.url': `https://chromium-review.googlesource.com/#/c/${c.number}`,
      'event.patchSet.ref': c.patchset.ref,
      gerrit: gerrit.url, // the host's baseUrl (the fake's address here)
      master: 'luci.infra.try',
      patch_project: 'infra/infra',
      patch_storage: 'gerrit',
      reason: 'CQ',
      revision: 'HEAD',
      buildername: 'Infra Win Tester',
      blamelist: ['martiniss@chromium.org'],
      // Kiln's additions: a full run (CQ+2), and the target branch.
      dry_run: false,
      'event.change.branch': 'master',
    });
    assert.ok((task.request['tags'] as string[]).includes(`buildset:patch/gerrit/${GERRIT_HOST}/${c.number}/1`));

    // No tinderbox takes a Swarming build, and the idle timeout does not cancel it: Swarming runs it.
    await swarming.setState(task.taskId, 'RUNNING');
    await swarming.setState(task.taskId, 'COMPLETED', { exitCode: 0 });
    const v = await kiln.result(c.number, 1);
    assert.equal(v.vote, 1);
    assert.deepEqual(
      v.platforms.map((p) => [p.name, p.status]),
      [['Infra Win Tester', 'SUCCESS']],
    );
    const report = v.messages.find((m) => m.startsWith('Infra Win Tester: SUCCESS'));
    assert.equal(report, `Infra Win Tester: SUCCESS. Log: https://luci-milo.appspot.com/swarming/task/${task.taskId}`);
  });
});
