/**
 * docker-compose.yml checked statically (there is no Docker engine here): it parses; every Kiln
 * service runs a real `kiln` command with real options, sets only environment variables Kiln reads
 * (or the token variables its config names), and mounts a config file that Kiln's own schema
 * accepts; ports, volumes and dependencies are consistent; and the Temporal setup step registers
 * exactly the search attributes Kiln upserts, within what SQL visibility can hold.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { type Command } from 'commander';
import YAML from 'yaml';
import { envSchema, loadEnv, parseConfig } from '../../src/config/load.ts';
import { buildProgram } from '../../src/cli/program.ts';
import { KILN_SEARCH_ATTRIBUTES } from '../../src/domain/searchAttributes.ts';
import { parseRunnerConfig } from '../../src/runner/config.ts';
import { BUILD_INPUTS } from '../../scripts/build.ts';

const ROOT = resolve(import.meta.dirname, '../..');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test: string[] | string };
  restart?: string;
  deploy?: { replicas?: number };
}

interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const composeText = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
// `merge`: compose files use YAML merge keys (`<<: *anchor`).
const compose = YAML.parse(composeText, { merge: true }) as ComposeFile;

/** Kiln's own services: built from this repo's Dockerfile. */
const kilnServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);

/** A value as Compose would interpolate it, with `${VAR:?…}` (required from the operator) set to a stand-in. */
function interpolate(value: string): string {
  return value
    .replace(/\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
      if (op === '-') return arg ?? '';
      return `stand-in-${name.toLowerCase()}-0123456789`;
    })
    .replace(/\$\$/g, '$');
}

/** The service's environment as the container sees it. */
function envOf(s: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v ?? ''))]));
}

/** `host path → container path` for bind mounts of files in this repo. */
function bindMounts(s: Service): { source: string; target: string }[] {
  return (s.volumes ?? [])
    .map((v) => v.split(':'))
    .filter(([source]) => source?.startsWith('./'))
    .map(([source, target]) => ({ source: join(ROOT, source!), target: target! }));
}

/** The repo file mounted at `target` in the service. */
function mountedFile(s: Service, target: string): string | undefined {
  return bindMounts(s).find((m) => m.target === target)?.source;
}

const asArgv = (c: string[] | string | undefined): string[] =>
  c === undefined ? [] : Array.isArray(c) ? c : c.split(/\s+/);

/** The token variables a Kiln config file names (`acls[].tokenEnv`, `temporal.apiKeyEnv`). */
function tokenEnvsOfKilnConfig(text: string): string[] {
  const raw = YAML.parse(text) as {
    temporal?: { apiKeyEnv?: string };
    projects?: { buckets?: { acls?: { tokenEnv?: string }[] }[] }[];
  };
  const names = (raw.projects ?? []).flatMap((p) =>
    (p.buckets ?? []).flatMap((b) => (b.acls ?? []).map((a) => a.tokenEnv)),
  );
  return [...names, raw.temporal?.apiKeyEnv].filter((n): n is string => n !== undefined);
}

/** The config files a Kiln service reads and the token variables they name. */
function configsOf(name: string, s: Service): { kiln?: string; runner?: string; tokenEnvs: string[] } {
  const env = envOf(s);
  const argv = asArgv(s.command);
  const kilnPath = env.KILN_CONFIG ?? (argv[0] !== 'runner' ? flagValue(argv, '--config', '-c') : undefined);
  const kiln = kilnPath === undefined ? undefined : mountedFile(s, kilnPath);
  if (kilnPath !== undefined) assert.ok(kiln, `${name}: config ${kilnPath} is not mounted from the repo`);
  let runner: string | undefined;
  if (argv[0] === 'runner') {
    const p = flagValue(argv, '--config', '-c');
    assert.ok(p, `${name}: kiln runner needs --config`);
    runner = mountedFile(s, p);
    assert.ok(runner, `${name}: runner config ${p} is not mounted from the repo`);
  }
  const tokenEnvs = [
    ...(kiln ? tokenEnvsOfKilnConfig(readFileSync(kiln, 'utf8')) : []),
    ...(runner
      ? [(YAML.parse(readFileSync(runner, 'utf8')) as { tokenEnv?: string }).tokenEnv].filter((t): t is string => !!t)
      : []),
  ];
  return { kiln, runner, tokenEnvs };
}

function flagValue(argv: string[], ...flags: string[]): string | undefined {
  const i = argv.findIndex((a) => flags.includes(a));
  return i >= 0 ? argv[i + 1] : undefined;
}

/** `host:port` of a URL-ish address (`temporal:7233`, `postgres://u:p@host:5432/db`, `http://kiln-api:8080`). */
function hostPort(address: string): { host: string; port: string } {
  const u = new URL(address.includes('://') ? address : `tcp://${address}`);
  return { host: u.hostname, port: u.port };
}

/** The container ports a service listens on (published or exposed). */
function containerPorts(s: Service): string[] {
  return [...(s.ports ?? []).map((p) => p.split(':').pop()!), ...(s.expose ?? [])].map((p) => p.replace(/\/.*/, ''));
}

void describe('docker-compose.yml', () => {
  void it('parses, and has the whole stack', () => {
    const names = Object.keys(compose.services);
    for (const want of [
      'postgresql',
      'temporal',
      'temporal-setup',
      'temporal-ui',
      'kiln-api',
      'kiln-worker',
      'kiln-runner',
    ]) {
      assert.ok(names.includes(want), `service ${want} is missing`);
    }
    assert.ok(compose.services.temporal?.image?.startsWith('temporalio/'));
    assert.equal(compose.services.temporal?.environment?.DB, 'postgres12', 'Temporal persists in PostgreSQL');
    assert.ok((compose.services['kiln-worker']?.deploy?.replicas ?? 1) >= 2, 'workers run as several replicas');
  });

  void it('runs real kiln commands with options the CLI knows', () => {
    const program = buildProgram();
    const byName = new Map<string, Command>(program.commands.map((c) => [c.name(), c]));
    for (const [name, s] of kilnServices) {
      const argv = asArgv(s.command);
      const cmd = byName.get(argv[0] ?? '');
      assert.ok(
        cmd,
        `${name}: "kiln ${argv.join(' ')}" is not a kiln command (known: ${[...byName.keys()].join(', ')})`,
      );
      const known = new Set(cmd.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f)));
      for (const flag of argv.slice(1).filter((a) => a.startsWith('-'))) {
        assert.ok(known.has(flag.split('=')[0]!), `${name}: kiln ${argv[0]} has no option ${flag}`);
      }
      for (const o of cmd.options.filter((o) => o.mandatory)) {
        assert.ok(
          argv.includes(o.long!) || (o.short !== undefined && argv.includes(o.short)),
          `${name}: kiln ${argv[0]} needs ${o.long}`,
        );
      }
    }
    // The roles the stack needs are all there.
    assert.deepEqual(
      new Set(kilnServices.map(([, s]) => asArgv(s.command)[0])),
      new Set(['migrate', 'api', 'worker', 'runner']),
    );
  });

  void it('gives Kiln services only environment variables Kiln reads, and every token its config names', () => {
    const known = new Set(Object.keys(envSchema.shape));
    for (const [name, s] of kilnServices) {
      const { tokenEnvs } = configsOf(name, s);
      const env = envOf(s);
      for (const key of Object.keys(env)) {
        assert.ok(known.has(key) || tokenEnvs.includes(key), `${name}: Kiln does not read ${key}`);
      }
      for (const t of tokenEnvs) assert.ok(env[t], `${name}: its config reads a token from ${t}, which is not set`);
      // Values are valid too (e.g. KILN_API_PORT is a port number).
      assert.doesNotThrow(() => loadEnv(env), `${name}: environment`);
    }
  });

  void it('mounts config files that Kiln and kiln runner accept, with the env each service gets', () => {
    let checkedKiln = 0;
    let checkedRunner = 0;
    for (const [name, s] of kilnServices) {
      const { kiln, runner } = configsOf(name, s);
      const env = envOf(s);
      if (kiln) {
        const saved = { ...process.env };
        Object.assign(process.env, env); // tokenEnv is resolved from process.env
        try {
          const cfg = parseConfig(readFileSync(kiln, 'utf8'), kiln, loadEnv(env));
          const argv0 = asArgv(s.command)[0];
          if (argv0 !== 'migrate') assert.ok(cfg.temporal.address, `${name}: no Temporal address`);
          assert.equal(cfg.storage.kind, 'postgres', `${name}: several processes need PostgreSQL storage`);
          if (argv0 === 'api')
            assert.equal(cfg.api.host, '0.0.0.0', `${name}: the API must listen beyond the container`);
        } finally {
          process.env = saved;
        }
        checkedKiln++;
      }
      if (runner) {
        const settings = parseRunnerConfig(readFileSync(runner, 'utf8'), runner, env);
        const api = hostPort(settings.api);
        const target = compose.services[api.host];
        assert.ok(target, `${name}: runner api ${settings.api} is not a service`);
        assert.ok(containerPorts(target).includes(api.port), `${name}: ${api.host} does not listen on ${api.port}`);
        checkedRunner++;
      }
    }
    assert.ok(
      checkedKiln >= 3 && checkedRunner === 1,
      `checked ${checkedKiln} Kiln configs and ${checkedRunner} runner configs`,
    );
  });

  void it('points Kiln at services that exist, on the ports they listen on', () => {
    for (const [name, s] of kilnServices) {
      const env = envOf(s);
      for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL'] as const) {
        if (env[key] === undefined) continue;
        const { host, port } = hostPort(env[key]);
        const target = compose.services[host];
        assert.ok(target, `${name}: ${key} names ${host}, which is not a service`);
        if (key === 'TEMPORAL_ADDRESS')
          assert.ok(containerPorts(target).includes(port), `${name}: ${host} does not expose ${port}`);
        if (key === 'DATABASE_URL') {
          assert.equal(port, '5432');
          const url = new URL(env[key]);
          assert.equal(url.username, target.environment?.POSTGRES_USER, `${name}: DATABASE_URL user`);
          assert.equal(url.pathname, `/${String(target.environment?.POSTGRES_DB)}`, `${name}: DATABASE_URL database`);
        }
      }
      const apiPort = env.KILN_API_PORT;
      if (apiPort !== undefined)
        assert.ok(containerPorts(s).includes(apiPort), `${name}: listens on ${apiPort} but does not publish it`);
    }
  });

  void it('has consistent ports, volumes, dependencies and health checks', () => {
    const published = Object.entries(compose.services).flatMap(([name, s]) =>
      (s.ports ?? []).map((p) => ({ name, host: p.split(':').slice(0, -1).join(':') })),
    );
    const hostPorts = published.map((p) => p.host);
    assert.equal(new Set(hostPorts).size, hostPorts.length, `published ports collide: ${hostPorts.join(', ')}`);
    assert.ok(!compose.services['kiln-worker']?.ports, 'a scaled service cannot publish a fixed host port');

    const declared = new Set(Object.keys(compose.volumes ?? {}));
    const used = new Set<string>();
    for (const [name, s] of Object.entries(compose.services)) {
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0]!;
        if (source.startsWith('./') || source.startsWith('/')) {
          assert.ok(existsSync(join(ROOT, source)), `${name}: bind mount ${source} does not exist in the repo`);
          continue;
        }
        assert.ok(declared.has(source), `${name}: volume ${source} is not declared under volumes:`);
        used.add(source);
      }
      const deps = Array.isArray(s.depends_on)
        ? Object.fromEntries(s.depends_on.map((d) => [d, { condition: 'service_started' }]))
        : (s.depends_on ?? {});
      for (const [dep, { condition }] of Object.entries(deps)) {
        const target = compose.services[dep];
        assert.ok(target, `${name}: depends on ${dep}, which is not a service`);
        if (condition === 'service_healthy')
          assert.ok(target.healthcheck, `${name}: waits for ${dep} to be healthy, but it has no healthcheck`);
        if (condition === 'service_completed_successfully') {
          assert.notEqual(target.restart, 'always', `${dep} must exit for ${name} to start`);
          assert.notEqual(target.restart, 'unless-stopped', `${dep} must exit for ${name} to start`);
        }
      }
    }
    assert.deepEqual([...declared].sort(), [...used].sort(), 'every declared volume is used');

    for (const [name, s] of Object.entries(compose.services)) {
      const oneShot = ['migrate'].includes(asArgv(s.command)[0] ?? '') || name === 'temporal-setup';
      if (!oneShot && name !== 'temporal-ui') assert.ok(s.healthcheck, `${name}: no healthcheck`);
      assert.ok(s.restart, `${name}: no restart policy`);
    }
  });

  void it('creates every search attribute Kiln uses, with its type, within SQL visibility limits', () => {
    const setup = compose.services['temporal-setup'];
    assert.ok(setup);
    const script = interpolate(asArgv(setup.command).join('\n'));
    const created = Object.fromEntries([...script.matchAll(/^\s*create (\w+) (\w+)\s*$/gm)].map((m) => [m[1], m[2]]));
    assert.deepEqual(created, KILN_SEARCH_ATTRIBUTES);
    assert.match(script, /temporal operator search-attribute create --namespace default --name "\$1" --type "\$2"/);
    // Temporal's SQL visibility (PostgreSQL) holds at most this many custom attributes of each type per namespace.
    const limits: Record<string, number> = { Keyword: 10, KeywordList: 3, Datetime: 3 };
    for (const [type, limit] of Object.entries(limits)) {
      const n = Object.values(KILN_SEARCH_ATTRIBUTES).filter((t) => t === type).length;
      assert.ok(n <= limit, `${n} ${type} attributes; PostgreSQL visibility allows ${limit}`);
    }
    // The namespace the setup step uses is the one Kiln runs in.
    const ns = new Set(kilnServices.map(([, s]) => envOf(s).TEMPORAL_NAMESPACE).filter(Boolean));
    assert.deepEqual([...ns], ['default']);
  });

  void it('builds an image that runs the production build, made in a build stage from every source folder', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^(?=FROM )/m).filter((st) => st.startsWith('FROM '));
    assert.ok(stages.length >= 2, 'a build stage and the image');
    const build = stages.find((st) => /^FROM \S+ AS build$/m.test(st));
    const image = stages.at(-1)!;
    assert.ok(build && build !== image, 'a stage named build, before the image');
    const copies = (st: string) => [...st.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)].flatMap((m) => m[1]!.split(/\s+/));

    // The build stage: every dev dependency (tsc, the bundler), every folder the build compiles, and the build.
    assert.match(build, /^RUN npm ci(?! .*--omit=dev)/m, 'the build stage needs the dev dependencies');
    const tsconfigBuild = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    for (const input of [...tsconfigBuild.include, ...BUILD_INPUTS, 'tsconfig.build.json', 'scripts/build.ts']) {
      assert.ok(copies(build).includes(input), `the build stage lacks ${input}`);
    }
    assert.match(build, /^RUN node --import tsx scripts\/build\.ts/m, 'the build stage runs the build');
    const buildDir = /^WORKDIR (\S+)$/m.exec(build)?.[1];

    // The image: production dependencies, the CLI entry point, the shipped config and the build; no sources.
    assert.match(image, /^ENTRYPOINT \["node", "bin\/kiln\.js"\]$/m);
    assert.match(image, /npm ci --omit=dev/);
    assert.match(image, /^ENV KILN_RUN_FROM=dist$/m, 'bin/kiln.js must run the build, never look for sources');
    for (const f of ['bin', 'config', 'package.json', 'package-lock.json']) {
      assert.ok(copies(image).includes(f), `the image lacks ${f}`);
    }
    assert.ok(
      new RegExp(`^COPY --from=build ${buildDir}/dist \\./dist$`, 'm').test(image),
      'the image takes dist/ from the build stage',
    );
    for (const source of tsconfigBuild.include) {
      assert.ok(!copies(image).includes(source), `the image copies the TypeScript sources of ${source}`);
    }

    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const dir of ['bin', 'config', 'scripts', ...tsconfigBuild.include]) assert.ok(!ignored.includes(dir), dir);
    assert.ok(ignored.includes('node_modules'), 'host node_modules stay out of the image');
    assert.ok(ignored.includes('dist'), 'a local build stays out of the image (the build stage makes its own)');
  });
});
