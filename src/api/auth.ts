/**
 * Bearer-token auth with per-bucket roles (READER < SCHEDULER < WRITER). With no token configured
 * anywhere, auth is off — and the server then refuses to listen on anything but loopback.
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { type FastifyRequest } from 'fastify';
import { rank, type Registry } from '../config/load.ts';
import { type Role } from '../config/schema.ts';
import { type Build, bucketPath } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** True when `address` (an IP literal) is a loopback address. */
function isLoopbackAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The addresses `host` stands for when every one of them is loopback, else undefined. Names are
 * resolved (as `listen` would), never matched by prefix: `127.attacker.example` is not loopback.
 */
export async function loopbackAddresses(host: string): Promise<string[] | undefined> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) !== 0) return isLoopbackAddress(bare) ? [bare] : undefined;
  let found: { address: string }[];
  try {
    found = await lookup(bare, { all: true, verbatim: true });
  } catch {
    return undefined;
  }
  if (found.length === 0 || !found.every((a) => isLoopbackAddress(a.address))) return undefined;
  return found.map((a) => a.address);
}

/** Why an API without tokens will not listen on `host`, and what to do instead. */
export function noAuthBeyondLoopback(host: string): string {
  return `refusing to listen on ${host}: no bucket has a token, so anyone who can reach it could schedule and lease builds; add acls with tokens, or bind 127.0.0.1`;
}

/** True for a host only this machine can reach: a loopback address, or a name that resolves only to such. */
export async function isLoopback(host: string): Promise<boolean> {
  return (await loopbackAddresses(host)) !== undefined;
}

/** The bearer token of a request, if any. */
export function bearerToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  if (!m) throw new KilnError('UNAUTHENTICATED', 'Authorization header must be "Bearer <token>"');
  return m[1];
}

/** Who a request is, for `createdBy`/`canceledBy`. */
export function callerName(registry: Registry, req: FastifyRequest): string {
  if (registry.authDisabled) return 'anonymous';
  const t = bearerToken(req);
  return t === undefined ? 'anonymous' : (registry.nameOf(t) ?? 'token');
}

/** Throws UNAUTHENTICATED unless auth is off or the request carries a known token. */
export function authenticate(registry: Registry, req: FastifyRequest): string | undefined {
  if (registry.authDisabled) return undefined;
  const token = bearerToken(req);
  if (token === undefined) throw new KilnError('UNAUTHENTICATED', 'a bearer token is required');
  if (!registry.knowsToken(token)) throw new KilnError('UNAUTHENTICATED', 'unknown token');
  return token;
}

/**
 * Build `id` for a caller who needs `role` on its bucket. The token is checked before the build is
 * looked up, so a caller without a valid token learns nothing about which ids exist
 * (UNAUTHENTICATED either way), and a token with no role at all on the build's bucket gets the same
 * BUILD_NOT_FOUND as an unknown id. A lower role than `role` is PERMISSION_DENIED.
 */
export async function authorizedBuild(
  ctx: { registry: Registry; service: { get(id: string): Promise<Build> } },
  req: FastifyRequest,
  id: string,
  role: Role,
): Promise<Build> {
  const token = authenticate(ctx.registry, req);
  const build = await ctx.service.get(id);
  if (token === undefined) return build;
  const path = bucketPath(build.builder);
  if (ctx.registry.roleOf(path, token) === undefined) throw new KilnError('BUILD_NOT_FOUND', `build ${id} not found`);
  requireRole(ctx.registry, req, path, role);
  return build;
}

/**
 * `authorizedBuild` for a caller that needs only the verdict, not the build: the same answers, but
 * the build's bucket comes from the service's memory when it has seen the build (a lease right after
 * a peek or schedule costs no storage read), else from storage.
 */
export async function authorizeBuild(
  ctx: { registry: Registry; service: { bucketOf(id: string): Promise<string> } },
  req: FastifyRequest,
  id: string,
  role: Role,
): Promise<void> {
  const token = authenticate(ctx.registry, req);
  const path = await ctx.service.bucketOf(id);
  if (token === undefined) return;
  if (ctx.registry.roleOf(path, token) === undefined) throw new KilnError('BUILD_NOT_FOUND', `build ${id} not found`);
  requireRole(ctx.registry, req, path, role);
}

/** Throws unless the request's token has at least `role` on bucket `path` (`project/bucket`). */
export function requireRole(registry: Registry, req: FastifyRequest, path: string, role: Role): void {
  if (registry.authDisabled) return;
  const token = authenticate(registry, req);
  const has = registry.roleOf(path, token);
  if (has === undefined || rank(has) < rank(role)) {
    throw new KilnError('PERMISSION_DENIED', `${role} role on bucket ${path} is required`);
  }
}

/** The buckets the request may read (every bucket when auth is off). */
export function readableBuckets(registry: Registry, req: FastifyRequest): string[] {
  if (registry.authDisabled) return registry.bucketPaths();
  const token = authenticate(registry, req);
  return registry.bucketPaths().filter((p) => registry.roleOf(p, token) !== undefined);
}
