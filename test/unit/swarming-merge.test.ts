import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KilnError } from '../../src/domain/errors.ts';
import { formatZodError } from '../../src/domain/zodIssues.ts';
import {
  SwarmingBucketConfigSchema,
  type SwarmingBucketConfigInput,
  parseOverrideBuilderCfg,
} from '../../src/domain/swarming/config.ts';
import { validatedOverrideBuilderCfg } from '../../src/domain/swarming/keys.ts';
import { mergeBuilderConfig, mergeDimensions } from '../../src/domain/swarming/merge.ts';

const REPO = 'https://example.org/recipes';

function bucket(cfg: Partial<SwarmingBucketConfigInput>) {
  return SwarmingBucketConfigSchema.parse({ hostname: 'swarm.example.org', ...cfg });
}

function kilnError(code: string, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof KilnError, `expected KilnError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

void test('builder_defaults fill in what the builder does not set; the builder wins where it does', () => {
  const b = bucket({
    builder_defaults: {
      dimensions: ['pool:ci', 'os:Linux'],
      recipe: { repository: REPO, name: 'chromium', properties: { goma: true, mastername: 'tryserver' } },
      execution_timeout_secs: 3600,
      priority: 30,
      service_account: 'ci@example.iam.gserviceaccount.com',
    },
    builders: [{ name: 'win-rel', dimensions: ['os:Windows'], priority: 20, recipe: { properties: { goma: false } } }],
  });
  const m = mergeBuilderConfig(b, 'win-rel');
  assert.deepEqual(m.dimensions, ['os:Windows', 'pool:ci']);
  assert.equal(m.priority, 20);
  assert.equal(m.execution_timeout_secs, 3600);
  assert.equal(m.service_account, 'ci@example.iam.gserviceaccount.com');
  assert.deepEqual(m.recipe, {
    repository: REPO,
    name: 'chromium',
    properties: { goma: false, mastername: 'tryserver' },
  });
});

void test('mixins apply in the order listed, after defaults and before the builder, recursively', () => {
  const b = bucket({
    builder_defaults: { dimensions: ['pool:ci', 'cores:8'], recipe: { repository: REPO, name: 'default' } },
    mixins: [
      { name: 'big', dimensions: ['cores:32'], swarming_tags: ['size:big'] },
      { name: 'huge', mixins: ['big'], dimensions: ['cores:64'], recipe: { name: 'huge-recipe' } },
      { name: 'linux', dimensions: ['os:Linux'], caches: [{ name: 'git', path: 'git' }] },
    ],
    builders: [
      { name: 'a', mixins: ['huge', 'linux'] },
      { name: 'b', mixins: ['linux', 'big'], dimensions: ['cores:16'] },
    ],
  });
  const a = mergeBuilderConfig(b, 'a');
  assert.deepEqual(a.dimensions, ['cores:64', 'os:Linux', 'pool:ci']);
  assert.equal(a.recipe.name, 'huge-recipe');
  assert.deepEqual(a.swarming_tags, ['size:big']);
  assert.deepEqual(a.caches, [{ name: 'git', path: 'git' }]);

  const bb = mergeBuilderConfig(b, 'b');
  assert.deepEqual(bb.dimensions, ['cores:16', 'os:Linux', 'pool:ci'], 'the builder beats its mixins');
  assert.equal(bb.recipe.name, 'default');
});

void test('"key:" removes a dimension set by an earlier layer, and a later layer can set it again', () => {
  const b = bucket({
    builder_defaults: { dimensions: ['pool:ci', 'gpu:nvidia', 'os:Linux'], recipe: { repository: REPO, name: 'r' } },
    mixins: [{ name: 'no-gpu', dimensions: ['gpu:'] }],
    builders: [
      { name: 'cpu', mixins: ['no-gpu'] },
      { name: 'plain', dimensions: ['os:'] },
    ],
  });
  assert.deepEqual(mergeBuilderConfig(b, 'cpu').dimensions, ['os:Linux', 'pool:ci']);
  assert.deepEqual(mergeBuilderConfig(b, 'plain').dimensions, ['gpu:nvidia', 'pool:ci']);
  assert.deepEqual(mergeBuilderConfig(b, 'cpu', { dimensions: ['gpu:amd'] }).dimensions, [
    'gpu:amd',
    'os:Linux',
    'pool:ci',
  ]);
});

void test('overrideBuilderCfg is applied last: {"dimensions": ["cores:64"]} redefines cores only', () => {
  const b = bucket({
    builders: [
      {
        name: 'linux',
        dimensions: ['pool:ci', 'cores:8', 'os:Linux'],
        recipe: { repository: REPO, name: 'r', properties: { a: 1, b: 2 } },
        swarming_tags: ['team:infra'],
        caches: [{ name: 'git', path: 'git' }],
      },
    ],
  });
  const m = mergeBuilderConfig(
    b,
    'linux',
    parseOverrideBuilderCfg({
      dimensions: ['cores:64'],
      recipe: { properties: { b: null, c: 3 }, revision: 'deadbeef' },
      swarmingTags: ['experiment:1'],
      executionTimeoutSecs: 600,
      caches: [{ name: 'git', path: 'git2' }],
    }),
  );
  assert.deepEqual(m.dimensions, ['cores:64', 'os:Linux', 'pool:ci']);
  assert.deepEqual(m.recipe.properties, { a: 1, c: 3 }, 'null removes a property');
  assert.equal(m.recipe.revision, 'deadbeef');
  assert.deepEqual(m.swarming_tags, ['experiment:1', 'team:infra'], 'tags append');
  assert.equal(m.execution_timeout_secs, 600, 'JSONPB camelCase names are accepted');
  assert.deepEqual(m.caches, [{ name: 'git', path: 'git2' }], 'caches merge by name');
});

void test('swarming_tags are unioned and sorted; caches keep one entry per name, sorted by name', () => {
  const b = bucket({
    builder_defaults: {
      swarming_tags: ['z:1', 'a:1'],
      caches: [
        { name: 'win_toolchain', path: 'win' },
        { name: 'builder', path: 'b' },
      ],
    },
    builders: [
      {
        name: 'x',
        recipe: { repository: REPO, name: 'r' },
        swarming_tags: ['a:1', 'm:2'],
        caches: [{ name: 'builder', path: 'builder' }],
      },
    ],
  });
  const m = mergeBuilderConfig(b, 'x');
  assert.deepEqual(m.swarming_tags, ['a:1', 'm:2', 'z:1']);
  assert.deepEqual(m.caches, [
    { name: 'builder', path: 'builder' },
    { name: 'win_toolchain', path: 'win' },
  ]);
});

void test('a builder without a recipe name after merging is refused, naming builder and key', () => {
  const b = bucket({
    builder_defaults: { recipe: { repository: REPO } },
    builders: [{ name: 'nameless', dimensions: ['pool:ci'] }],
  });
  assert.throws(() => mergeBuilderConfig(b, 'nameless'), kilnError('INVALID_ARGUMENT', /"nameless".*recipe\.name/));
  assert.equal(mergeBuilderConfig(b, 'nameless', { recipe: { name: 'r' } }).recipe.name, 'r');
});

void test('unknown mixins are refused at config parse and at merge, naming the mixin', () => {
  const parsed = SwarmingBucketConfigSchema.safeParse({
    hostname: 'swarm.example.org',
    builders: [{ name: 'x', mixins: ['ghost'] }],
  });
  assert.equal(parsed.success, false);
  assert.match(
    formatZodError(parsed.error!, { all: true }),
    /builders\[0\]\.mixins\[0\]: mixin "ghost" is not defined/,
  );

  // A config built without the schema (e.g. by hand in code) still fails clearly at merge.
  const cfg = bucket({ builders: [{ name: 'x', recipe: { repository: REPO, name: 'r' } }] });
  cfg.builders[0]!.mixins = ['ghost'];
  assert.throws(() => mergeBuilderConfig(cfg, 'x'), kilnError('INVALID_ARGUMENT', /mixin "ghost" is not defined/));
});

void test('a mixin cycle is refused with the chain', () => {
  const b = bucket({
    mixins: [
      { name: 'a', mixins: ['b'] },
      { name: 'b', mixins: ['a'] },
    ],
    builders: [{ name: 'x', mixins: ['a'], recipe: { repository: REPO, name: 'r' } }],
  });
  assert.throws(() => mergeBuilderConfig(b, 'x'), kilnError('INVALID_ARGUMENT', /circular mixin chain a -> b -> a/));
});

void test('unknown builder → BUILDER_NOT_FOUND', () => {
  assert.throws(() => mergeBuilderConfig(bucket({}), 'nope'), kilnError('BUILDER_NOT_FOUND', /"nope"/));
});

void test('a bad overrideBuilderCfg is refused naming the field', () => {
  assert.throws(
    () => parseOverrideBuilderCfg({ dimensions: ['no colon'] }),
    kilnError('INVALID_ARGUMENT', /^swarming\.overrideBuilderCfg\.dimensions\[0\]: /),
  );
  assert.throws(
    () => parseOverrideBuilderCfg({ name: 'other' }),
    kilnError('INVALID_ARGUMENT', /overrideBuilderCfg.*name/),
  );
  assert.throws(
    () => parseOverrideBuilderCfg({ mixins: ['m'] }),
    kilnError('INVALID_ARGUMENT', /overrideBuilderCfg.*mixins/),
  );
  assert.throws(() => parseOverrideBuilderCfg({ priority: 0 }), kilnError('INVALID_ARGUMENT', /priority/));
  assert.equal(parseOverrideBuilderCfg(undefined), undefined);
  assert.equal(parseOverrideBuilderCfg(null), undefined);
});

void test('the workflow, which only renames JSONPB fields of a validated override, merges what the parse gives', () => {
  const b = bucket({
    builder_defaults: { caches: [{ name: 'git', path: 'git' }], execution_timeout_secs: 60 },
    builders: [{ name: 'x', dimensions: ['pool:ci', 'os:Linux'], recipe: { repository: REPO, name: 'r' } }],
  });
  const overrides: Record<string, unknown>[] = [
    {},
    { dimensions: ['os:', 'cores:64', 'cores:32'], priority: 20, category: 'c' },
    {
      recipe: { properties: { z: [1], a: null }, name: 'other', revision: 'abc' },
      swarmingTags: ['t:1'],
      executionTimeoutSecs: 600,
      expirationSecs: 30,
      serviceAccount: 'ci@example.iam.gserviceaccount.com',
      caches: [{ path: 'git2', name: 'git' }],
    },
    { swarming_tags: ['t:2'], execution_timeout_secs: 7, service_account: 'bot', caches: [] },
  ];
  for (const raw of overrides) {
    const json = JSON.parse(JSON.stringify(raw)) as unknown; // as the workflow's input carries it
    assert.equal(
      JSON.stringify(mergeBuilderConfig(b, 'x', validatedOverrideBuilderCfg(json))),
      JSON.stringify(mergeBuilderConfig(b, 'x', parseOverrideBuilderCfg(raw))),
      JSON.stringify(raw),
    );
  }
});

void test('bad bucket config fails at parse with the field named', () => {
  const cases: [unknown, RegExp][] = [
    [{ hostname: 'https://swarm.example.org' }, /hostname: must not contain ":\/\/"/],
    [{ hostname: 'h', task_template_canary_percentage: 101 }, /task_template_canary_percentage/],
    [{ hostname: 'h', builders: [{ name: 'x' }, { name: 'x' }] }, /builders\[1\]\.name: duplicate builder "x"/],
    [{ hostname: 'h', builders: [{ name: 'x', dimensions: ['os:Linux', 'os:'] }] }, /builders\[0\]\.dimensions/],
    [{ hostname: 'h', builders: [{ name: 'x', caches: [{ name: 'git', path: '../up' }] }] }, /caches\[0\]\.path/],
    [{ hostname: 'h', builder_defaults: { name: 'd' } }, /builder_defaults/],
    [{ hostname: 'h', url_format: 'https://x/{task}' }, /url_format/],
    [{ hostname: 'h', builders: [{ name: 'x', dimenssions: [] }] }, /builders\[0\]/],
  ];
  for (const [input, pattern] of cases) {
    const r = SwarmingBucketConfigSchema.safeParse(input);
    assert.equal(r.success, false, JSON.stringify(input));
    assert.match(formatZodError(r.error!, { all: true }), pattern);
  }
  assert.equal(bucket({}).task_template_canary_percentage, 10, 'canary percentage defaults to 10');
});

void test('mergeDimensions keeps repeated keys from one layer and replaces them as a whole', () => {
  assert.deepEqual(mergeDimensions(['pool:ci', 'os:Linux', 'os:Ubuntu'], ['cpu:x86']), [
    'cpu:x86',
    'os:Linux',
    'os:Ubuntu',
    'pool:ci',
  ]);
  assert.deepEqual(mergeDimensions(['os:Linux', 'os:Ubuntu'], ['os:Mac']), ['os:Mac']);
});
