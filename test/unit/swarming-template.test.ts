import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KilnError } from '../../src/domain/errors.ts';
import {
  SwarmingBucketConfigSchema,
  SwarmingServiceConfigSchema,
  type SwarmingServiceConfig,
} from '../../src/domain/swarming/config.ts';
import { mergeBuilderConfig } from '../../src/domain/swarming/merge.ts';
import {
  type NewTaskInput,
  TEMPLATE_PARAMETERS,
  chooseTaskTemplate,
  newTaskRequest,
  parsePubsubUserdata,
  renderTaskTemplate,
  requestUuidForBuild,
  substituteTemplateString,
  passedThroughPlaceholders,
  closeTemplateParameter,
  swarmingBuildTags,
  swarmingTaskUrl,
} from '../../src/domain/swarming/template.ts';
import { builderHash } from '../../src/swarming/client.ts';

const REPO = 'https://example.org/recipes';
const BUILD_ID = '8922054662172514000';

function kilnError(code: string, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof KilnError, `expected KilnError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

/** A template in LUCI's style: the command line carries the parameters. */
function templateBody(name = 'bb-${builder}') {
  return {
    name,
    priority: '100',
    tags: ['from_template:yes'],
    task_slices: [
      {
        expiration_secs: '21600',
        wait_for_capacity: false,
        properties: {
          command: [
            'kitchen',
            '-repository',
            '${repository}',
            '-revision',
            '$revision',
            '-recipe',
            '${recipe}',
            '-properties',
            '${properties_json}',
            '-cache-dir',
            '${cache_dir}/builder_${builder_hash}',
            '-logdog-project',
            '${project}',
            '-prefix',
            'bb/${bucket}/${builder}/${swarming_hostname}',
            '-price',
            '$$5',
          ],
          execution_timeout_secs: '10800',
          dimensions: [{ key: 'kvm', value: '1' }],
          caches: [
            { name: 'vpython', path: 'cache/vpython' },
            { name: 'git', path: 'cache/tmpl_git' },
          ],
        },
      },
    ],
  };
}

const service: SwarmingServiceConfig = SwarmingServiceConfigSchema.parse({
  task_template: { revision: 'stable-rev', template: templateBody() },
  task_template_canary: { revision: 'canary-rev', template: templateBody('canary-${builder}') },
});

const bucketCfg = SwarmingBucketConfigSchema.parse({
  hostname: 'swarm.example.org',
  builder_defaults: {
    dimensions: ['pool:luci.chromium.try', 'os:Linux'],
    recipe: { repository: REPO, name: 'chromium_trybot', properties: { mastername: 'tryserver.chromium' } },
    caches: [{ name: 'git', path: 'git' }],
  },
  builders: [
    {
      name: 'linux-rel',
      category: 'Linux',
      swarming_tags: ['team:browser'],
      priority: 30,
      expiration_secs: 3600,
      service_account: 'builder@example.iam.gserviceaccount.com',
    },
  ],
});

function input(over: Partial<NewTaskInput> = {}): NewTaskInput {
  return {
    buildId: BUILD_ID,
    builder: { project: 'chromium', bucket: 'try', builder: 'linux-rel' },
    builderCfg: mergeBuilderConfig(bucketCfg, 'linux-rel'),
    builderHash: builderHash('try', 'linux-rel'),
    swarmingHostname: 'swarm.example.org',
    kilnHostname: 'kiln.example.org',
    template: chooseTaskTemplate(service, { canaryTemplate: false, canaryPercentage: 10, random100: 0 }),
    buildTags: ['buildset:patch/gerrit/review.example.org/123/4', 'user_agent:cq'],
    inputProperties: { reason: 'CQ' },
    blamelist: ['alice@example.org', 'bob@example.org'],
    pubsub: { topic: 'projects/kiln/topics/swarming', authToken: 'tok' },
    ...over,
  };
}

void test('every template parameter is rendered, in both ${name} and $name forms; $$ is a literal $', () => {
  const req = newTaskRequest(input());
  const cmd = (req.task_slices[0]!.properties['command'] as string[]).join(' ');
  const hash = builderHash('try', 'linux-rel');
  assert.match(hash, /^[0-9a-f]{64}$/);
  assert.notEqual(hash, builderHash('try', 'linux-dbg'));
  assert.ok(cmd.includes(`-repository ${REPO} -revision  -recipe chromium_trybot`), cmd);
  assert.ok(cmd.includes(`-cache-dir cache/builder_${hash}`), cmd);
  assert.ok(cmd.includes('-logdog-project chromium'), cmd);
  assert.ok(cmd.includes('-prefix bb/try/linux-rel/swarm.example.org'), cmd);
  assert.ok(cmd.endsWith('-price $5'), cmd);
  assert.equal(req.name, 'bb-linux-rel');
  assert.ok(!cmd.includes('$'.concat('{')), 'no placeholder left');

  const props = JSON.parse((req.task_slices[0]!.properties['command'] as string[])[8]!) as Record<string, unknown>;
  assert.deepEqual(props, {
    blamelist: ['alice@example.org', 'bob@example.org'],
    buildername: 'linux-rel',
    category: 'Linux',
    mastername: 'tryserver.chromium',
    reason: 'CQ',
  });

  const withRev = newTaskRequest(
    input({ builderCfg: mergeBuilderConfig(bucketCfg, 'linux-rel', { recipe: { revision: 'abc123' } }) }),
  );
  assert.ok((withRev.task_slices[0]!.properties['command'] as string[]).includes('abc123'));
});

void test('the renderer knows all ten parameters and leaves keys and non-string values alone', () => {
  const params = Object.fromEntries(TEMPLATE_PARAMETERS.map((p) => [p, `<${p}>`]));
  const tmpl = { a: TEMPLATE_PARAMETERS.map((p) => `\${${p}}`), '${builder}': { c: 7, d: [true, null] } };
  assert.deepEqual(renderTaskTemplate(tmpl, params), {
    a: TEMPLATE_PARAMETERS.map((p) => `<${p}>`),
    '${builder}': { c: 7, d: [true, null] },
  });
  assert.equal(TEMPLATE_PARAMETERS.length, 10);
});

void test('placeholders Kiln does not know are left for Swarming, as Buildbucket renders templates', () => {
  const svc = SwarmingServiceConfigSchema.parse({
    task_template: {
      revision: 'r',
      template: {
        task_slices: [
          {
            expiration_secs: '60',
            properties: {
              execution_timeout_secs: '60',
              command: ['kitchen${EXECUTABLE_SUFFIX}', '-output-result-json', '${ISOLATED_OUTDIR}/out.json'],
              cipd_input: { packages: [{ package_name: 'vpython/${platform}' }] },
            },
          },
        ],
      },
    },
  });
  const chosen = chooseTaskTemplate(svc, { canaryPercentage: 0, random100: 50 });
  const props = newTaskRequest(input({ template: chosen })).task_slices[0]!.properties;
  assert.deepEqual(props['command'], [
    'kitchen${EXECUTABLE_SUFFIX}',
    '-output-result-json',
    '${ISOLATED_OUTDIR}/out.json',
  ]);
  assert.deepEqual(props['cipd_input'], { packages: [{ package_name: 'vpython/${platform}' }] });
  // Python's safe_substitute: `$$` is `$`, a stray `$` and unknown names stay, known ones in both forms are filled.
  assert.equal(substituteTemplateString('$buildername/$builder/${builder}', { builder: 'x' }), '$buildername/x/x');
  assert.equal(substituteTemplateString('cost: $5, $', {}), 'cost: $5, $');
  assert.equal(substituteTemplateString('vpython/$${platform}', {}), 'vpython/${platform}');
});

void test('passed-through placeholders are listed with the known parameter a typo looks like', () => {
  const found = passedThroughPlaceholders({
    task_slices: [
      { properties: { command: ['kitchen${EXECUTABLE_SUFFIX}', '$propeties_json', '${Builder}', '$hostname'] } },
    ],
  });
  assert.deepEqual(found, [
    { name: 'EXECUTABLE_SUFFIX', at: 'task_slices[0].properties.command[0]' },
    { name: 'propeties_json', at: 'task_slices[0].properties.command[1]', looksLike: 'properties_json' },
    { name: 'Builder', at: 'task_slices[0].properties.command[2]', looksLike: 'builder' },
    { name: 'hostname', at: 'task_slices[0].properties.command[3]' },
  ]);
  assert.equal(closeTemplateParameter('recipie'), 'recipe');
  assert.equal(closeTemplateParameter('ISOLATED_OUTDIR'), undefined);
  assert.equal(closeTemplateParameter('cache'), undefined);
});

void test('input properties win over derived ones, but may not rename the builder', () => {
  const req = newTaskRequest(
    input({ inputProperties: { category: 'custom', mastername: 'm2' }, blamelist: undefined }),
  );
  const props = JSON.parse((req.task_slices[0]!.properties['command'] as string[])[8]!) as Record<string, unknown>;
  assert.deepEqual(props, { buildername: 'linux-rel', category: 'custom', mastername: 'm2' });
  assert.throws(
    () => newTaskRequest(input({ inputProperties: { buildername: 'other' } })),
    kilnError('INVALID_ARGUMENT', /buildername "other" does not match builder "linux-rel"/),
  );
});

void test('canary: true forces it, false forbids it, absent follows the percentage', () => {
  const pick = (canaryTemplate: boolean | undefined, random100: number, pct = 10) =>
    chooseTaskTemplate(service, { canaryTemplate, canaryPercentage: pct, random100 });
  assert.deepEqual(
    [pick(true, 99.9).revision, pick(true, 99.9).canary],
    ['canary-rev', true],
    'true uses the canary whatever the dice say',
  );
  assert.deepEqual([pick(false, 0).revision, pick(false, 0).canary], ['stable-rev', false]);
  assert.equal(pick(undefined, 9.99).canary, true, 'below the percentage → canary');
  assert.equal(pick(undefined, 10).canary, false, 'at the percentage → stable');
  assert.equal(pick(undefined, 0, 0).canary, false, '0% never picks the canary');
  assert.equal(pick(undefined, 99.99, 100).canary, true, '100% always picks it');

  const canaryReq = newTaskRequest(input({ template: pick(true, 50) }));
  assert.equal(canaryReq.name, 'canary-linux-rel');
  assert.ok(canaryReq.tags.includes('buildbucket_template_canary:true'));
  assert.ok(canaryReq.tags.includes('buildbucket_template_revision:canary-rev'));
});

void test('canary: forced without a canary template is INVALID_ARGUMENT; by chance it falls back to stable', () => {
  const stableOnly = SwarmingServiceConfigSchema.parse({ task_template: { revision: 's', template: templateBody() } });
  assert.throws(
    () => chooseTaskTemplate(stableOnly, { canaryTemplate: true, canaryPercentage: 10, random100: 0 }),
    kilnError('INVALID_ARGUMENT', /canary/),
  );
  const byChance = chooseTaskTemplate(stableOnly, { canaryPercentage: 100, random100: 0 });
  assert.deepEqual([byChance.revision, byChance.canary], ['s', false]);
});

void test('the NewTask request carries tags, dimensions, caches, timeouts, priority, account, pubsub and request_uuid', () => {
  const req = newTaskRequest(input());
  assert.deepEqual(req.tags, [
    'buildbucket_bucket:chromium/try',
    `buildbucket_build_id:${BUILD_ID}`,
    'buildbucket_hostname:kiln.example.org',
    'buildbucket_template_canary:false',
    'buildbucket_template_revision:stable-rev',
    'buildset:patch/gerrit/review.example.org/123/4',
    'from_template:yes',
    'recipe_name:chromium_trybot',
    `recipe_repository:${REPO}`,
    'recipe_revision:HEAD',
    'team:browser',
    'user_agent:cq',
  ]);
  const slice = req.task_slices[0]!;
  assert.deepEqual(slice.properties.dimensions, [
    { key: 'kvm', value: '1' },
    { key: 'os', value: 'Linux' },
    { key: 'pool', value: 'luci.chromium.try' },
  ]);
  assert.deepEqual(slice.properties.caches, [
    { name: 'git', path: 'cache/git' },
    { name: 'vpython', path: 'cache/vpython' },
  ]);
  assert.equal(slice.expiration_secs, 3600, 'builder expiration beats the template');
  assert.equal(slice.properties.execution_timeout_secs, 10800, 'template timeout when the builder sets none');
  assert.equal(slice.wait_for_capacity, false, 'other template fields pass through');
  assert.equal(req.priority, 30, 'builder priority beats the template');
  assert.equal(newTaskRequest(input({ priority: 7 })).priority, 7, "the build's requested priority beats both");
  assert.equal(req.service_account, 'builder@example.iam.gserviceaccount.com');
  assert.equal(req.pubsub_topic, 'projects/kiln/topics/swarming');
  assert.equal(req.pubsub_auth_token, 'tok');
  assert.deepEqual(parsePubsubUserdata(req.pubsub_userdata!), {
    buildId: BUILD_ID,
    swarmingHostname: 'swarm.example.org',
  });
  assert.equal(req.request_uuid, requestUuidForBuild(BUILD_ID));
  assert.match(req.request_uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(newTaskRequest(input()).request_uuid, req.request_uuid, 'same build → same request_uuid');
  assert.notEqual(requestUuidForBuild('8922054662172514001'), req.request_uuid, 'another build → another one');

  const quiet = newTaskRequest(input({ pubsub: undefined }));
  assert.equal(quiet.pubsub_topic, undefined);
  assert.equal(quiet.pubsub_userdata, undefined);
});

void test('template dimensions win per key, and "key:" in the template removes a builder dimension', () => {
  const svc = SwarmingServiceConfigSchema.parse({
    task_template: {
      revision: 'r',
      template: {
        task_slices: [
          {
            expiration_secs: 60,
            properties: {
              execution_timeout_secs: 60,
              dimensions: [
                { key: 'os', value: 'Ubuntu-22.04' },
                { key: 'kvm', value: '' },
              ],
            },
          },
        ],
      },
    },
  });
  const cfg = mergeBuilderConfig(bucketCfg, 'linux-rel', { dimensions: ['kvm:1'] });
  const req = newTaskRequest(
    input({ builderCfg: cfg, template: chooseTaskTemplate(svc, { canaryPercentage: 0, random100: 0 }) }),
  );
  assert.deepEqual(req.task_slices[0]!.properties.dimensions, [
    { key: 'os', value: 'Ubuntu-22.04' },
    { key: 'pool', value: 'luci.chromium.try' },
  ]);
  assert.equal(req.name, `kiln-${BUILD_ID}-chromium-try-linux-rel`, 'a default name when the template has none');
});

void test('a task without a pool, expiration or execution timeout is refused before Swarming sees it', () => {
  const noPool = mergeBuilderConfig(bucketCfg, 'linux-rel', { dimensions: ['pool:'] });
  assert.throws(() => newTaskRequest(input({ builderCfg: noPool })), kilnError('INVALID_ARGUMENT', /"pool"/));
  const svc = SwarmingServiceConfigSchema.parse({
    task_template: { revision: 'r', template: { task_slices: [{ properties: {} }] } },
  });
  const bare = chooseTaskTemplate(svc, { canaryPercentage: 0, random100: 0 });
  assert.throws(
    () => newTaskRequest(input({ template: bare })),
    kilnError('INVALID_ARGUMENT', /execution_timeout_secs/),
  );
});

void test('build tags from the created task, and the task URL', () => {
  const tags = swarmingBuildTags('swarm.example.org', {
    taskId: '5a1ee70000',
    request: {
      tags: ['pool:ci', 'recipe_name:r'],
      taskSlices: [
        {
          properties: {
            dimensions: [
              { key: 'os', value: 'Linux' },
              { key: 'pool', value: 'ci' },
            ],
          },
        },
      ],
    },
  });
  assert.deepEqual(tags, [
    'swarming_hostname:swarm.example.org',
    'swarming_task_id:5a1ee70000',
    'swarming_tag:pool:ci',
    'swarming_tag:recipe_name:r',
    'swarming_dimension:os:Linux',
    'swarming_dimension:pool:ci',
  ]);
  const v = { swarmingHostname: 'swarm.example.org', taskId: '5a1ee70000', bucket: 'try', builder: 'linux-rel' };
  assert.equal(swarmingTaskUrl(undefined, v), 'https://swarm.example.org/task?id=5a1ee70000');
  assert.equal(
    swarmingTaskUrl('https://ci.example.org/{bucket}/{builder}/{{{task_id}}}', v),
    'https://ci.example.org/try/linux-rel/{5a1ee70000}',
  );
  assert.throws(() => swarmingTaskUrl('https://x/{taskid}', v), kilnError('INVALID_ARGUMENT', /\{taskid\}/));
});

void test('a template must be a swarming.v2 request with exactly one slice', () => {
  const bad = [
    { revision: 'r', template: { properties: {}, task_slices: [{}] } },
    { revision: 'r', template: { task_slices: [{}, {}] } },
    { revision: '', template: { task_slices: [{}] } },
  ];
  for (const t of bad) {
    assert.equal(SwarmingServiceConfigSchema.safeParse({ task_template: t }).success, false, JSON.stringify(t));
  }
});
