/**
 * Bearer-token auth with per-bucket roles (READER < SCHEDULER < WRITER). With no token configured
 * anywhere, auth is off — and the server then refuses to listen on anything but loopback.
 */
import { type FastifyRequest } from 'fastify';
import { rank, type Registry } from '../config/load.ts';
import { type Role } from '../config/schema.ts';
import { KilnError } from '../domain/errors.ts';

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

/** Throws unless the request's token has at least `role` on bucket `path` (`project/bucket`). */
export function requireRole(registry: Registry, req: FastifyRequest, path: string, role: Role): void {
  if (registry.authDisabled) return;
  const token = bearerToken(req);
  if (token === undefined) throw new KilnError('UNAUTHENTICATED', 'a bearer token is required');
  if (!registry.knowsToken(token)) throw new KilnError('UNAUTHENTICATED', 'unknown token');
  const has = registry.roleOf(path, token);
  if (has === undefined || rank(has) < rank(role)) {
    throw new KilnError('PERMISSION_DENIED', `${role} role on bucket ${path} is required`);
  }
}

/** The buckets the request may read (every bucket when auth is off). */
export function readableBuckets(registry: Registry, req: FastifyRequest): string[] {
  if (registry.authDisabled) return registry.bucketPaths();
  const token = bearerToken(req);
  if (token === undefined) throw new KilnError('UNAUTHENTICATED', 'a bearer token is required');
  if (!registry.knowsToken(token)) throw new KilnError('UNAUTHENTICATED', 'unknown token');
  return registry.bucketPaths().filter((p) => registry.roleOf(p, token) !== undefined);
}
