/**
 * The resolved `gerrit` config block: env variables read and builders cross-checked at start, so a
 * bad block fails with the field named, never on a request.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError, type Registry } from '../config/load.ts';
import { type GerritConfig } from '../config/gerrit.ts';
import { bucketPath, type BuilderId, builderPath } from '../domain/build.ts';
import { type GerritProjectConfig, parseBuilderPath } from '../domain/gerrit/projectConfig.ts';
import { type GerritAuth, GerritClient } from './client.ts';

/** One Gerrit server, ready for a client. */
export interface GerritHostSettings {
  host: string;
  baseUrl: string;
  auth?: GerritAuth;
  timeoutMs: number;
}

/** The resolved `gerrit` block. */
export interface GerritSettings {
  hosts: Map<string, GerritHostSettings>;
  eventSecret: string;
  self?: { username?: string; email?: string };
  idleTimeoutMs: number;
  projects: GerritProjectConfig[];
}

/**
 * Resolves the `gerrit` block: env variables read now (a missing one fails here), every project's
 * host configured, every builder configured in `registry`, no host or host/project twice.
 * Returns undefined when the config has no `gerrit` block.
 */
export function resolveGerritSettings(
  gerrit: GerritConfig | undefined,
  registry: Registry,
  env: NodeJS.ProcessEnv = process.env,
): GerritSettings | undefined {
  if (gerrit === undefined) return undefined;
  const file = registry.config.configFile ?? 'config';
  const fail = (path: string, msg: string): never => {
    throw new ConfigError(`${file}: gerrit.${path}: ${msg}`);
  };
  const fromEnv = (path: string, name: string): string =>
    env[name] || fail(path, `environment variable ${name} is not set`);
  const hosts = new Map<string, GerritHostSettings>();
  gerrit.hosts.forEach((h, i) => {
    if (hosts.has(h.host)) fail(`hosts[${i}].host`, `${h.host} twice`);
    const auth: GerritAuth | undefined =
      h.auth === undefined
        ? undefined
        : h.auth.kind === 'basic'
          ? {
              kind: 'basic',
              username: h.auth.username,
              password: fromEnv(`hosts[${i}].auth.passwordEnv`, h.auth.passwordEnv),
            }
          : { kind: 'bearer', token: fromEnv(`hosts[${i}].auth.tokenEnv`, h.auth.tokenEnv) };
    hosts.set(h.host, { host: h.host, baseUrl: h.baseUrl ?? `https://${h.host}`, auth, timeoutMs: h.timeoutMs });
  });
  const seen = new Set<string>();
  gerrit.projects.forEach((p, i) => {
    if (!hosts.has(p.host)) fail(`projects[${i}].host`, `${p.host} is not in gerrit.hosts`);
    if (seen.has(`${p.host}/${p.project}`)) fail(`projects[${i}]`, `${p.host}/${p.project} twice`);
    seen.add(`${p.host}/${p.project}`);
    p.builders.forEach((b, j) => {
      const id = parseBuilderPath(b);
      if (verificationBuilderKind(registry, id) === undefined) {
        const near = registry.nearestBuilders(id);
        fail(
          `projects[${i}].builders[${j}]`,
          `builder ${b} is not configured (neither a lease-mode builder nor a Swarming builder)` +
            (near.length ? `; did you mean ${near.join(' or ')}?` : ''),
        );
      }
    });
    if (new Set(p.builders.map((b) => parseBuilderPath(b).builder)).size !== p.builders.length) {
      fail(`projects[${i}].builders`, 'builder names must differ (they name the platforms in messages)');
    }
  });
  const eventSecret = gerrit.eventSecret ?? fromEnv('eventSecretEnv', gerrit.eventSecretEnv ?? '(unset)');
  return {
    hosts,
    eventSecret,
    self: gerrit.self,
    idleTimeoutMs: gerrit.idleTimeoutSecs * 1000,
    projects: gerrit.projects,
  };
}

/**
 * How a verification builder runs: `lease` (runners and tinderboxes lease it: `builders` of a bucket) or
 * `swarming` (pushed to Swarming as a task: `swarming.builders` of a Swarming bucket); undefined when
 * no such builder is configured.
 */
export function verificationBuilderKind(registry: Registry, id: BuilderId): 'lease' | 'swarming' | undefined {
  if (registry.builder(id)) return 'lease';
  const swarming = registry.bucket(bucketPath(id))?.swarming;
  return swarming?.builders.some((b) => b.name === id.builder) ? 'swarming' : undefined;
}

/** True when `given` is the configured event secret (constant time). */
export function eventSecretMatches(settings: GerritSettings, given: string | undefined): boolean {
  if (given === undefined) return false;
  const d = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(settings.eventSecret), d(given));
}

/** `project/bucket/builder` paths of a project config, parsed. */
export function projectBuilders(config: GerritProjectConfig) {
  return config.builders.map((b) => {
    const id = parseBuilderPath(b);
    return { id, path: builderPath(id) };
  });
}

/** One `GerritClient` per configured host, made on first use. */
export class GerritHosts {
  private readonly clients = new Map<string, GerritClient>();
  constructor(private readonly settings: GerritSettings) {}

  /** Kiln's own Gerrit account (`gerrit.self`), whose votes and comments trigger nothing. */
  get self(): GerritSettings['self'] {
    return this.settings.self;
  }

  /** The username Kiln authenticates as on `host` (HTTP basic), when the config says. */
  username(host: string): string | undefined {
    const auth = this.settings.hosts.get(host)?.auth;
    return auth?.kind === 'basic' ? auth.username : undefined;
  }

  /** The base URL of `host`'s REST API and web UI (config `baseUrl`, else `https://<host>`). */
  baseUrl(host: string): string | undefined {
    return this.settings.hosts.get(host)?.baseUrl;
  }

  /** The client for `host`; throws when the host is not configured. */
  client(host: string): GerritClient {
    let c = this.clients.get(host);
    if (!c) {
      const h = this.settings.hosts.get(host);
      if (!h) throw new ConfigError(`Gerrit host ${host} is not configured`);
      c = new GerritClient({ baseUrl: h.baseUrl, auth: h.auth, timeoutMs: h.timeoutMs });
      this.clients.set(host, c);
    }
    return c;
  }
}
