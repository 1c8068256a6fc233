/**
 * Which buckets and builders a web UI read may show: only buckets the caller's token can read
 * (every bucket when auth is off). Shared by the UI's read endpoints (issue 14).
 */
import { type FastifyRequest } from 'fastify';
import { type Registry } from '../config/load.ts';
import { type BuilderId, bucketPath } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { type Storage } from '../storage/storage.ts';
import { readableBuckets } from './auth.ts';
import { type ApiContext } from './context.ts';

/** The storage the UI's read endpoints query, or UNAVAILABLE when this API was built without it. */
export function readModel(ctx: ApiContext): Storage {
  if (!ctx.storage) throw new KilnError('UNAVAILABLE', 'this API has no storage for the web UI read endpoints');
  return ctx.storage;
}

/**
 * The `project/bucket`s to show: every readable one, or just `bucket` when given. Throws NOT_FOUND
 * for a bucket that is not configured and PERMISSION_DENIED for one the caller may not read.
 */
export function bucketsToShow(registry: Registry, req: FastifyRequest, bucket?: string): string[] {
  const readable = readableBuckets(registry, req);
  if (bucket === undefined) return readable;
  if (!registry.bucket(bucket)) throw new KilnError('NOT_FOUND', `bucket ${bucket} is not configured`);
  if (!readable.includes(bucket)) {
    throw new KilnError('PERMISSION_DENIED', `READER role on bucket ${bucket} is required`);
  }
  return [bucket];
}

/** Every configured builder of `buckets` (lease-mode and Swarming), in config order. */
export function buildersOf(registry: Registry, buckets: readonly string[]): BuilderId[] {
  const want = new Set(buckets);
  return registry.config.projects.flatMap((p) =>
    p.buckets
      .filter((b) => want.has(`${p.name}/${b.name}`))
      .flatMap((b) =>
        [...b.builders, ...(b.swarming?.builders ?? [])].map((bl) => ({
          project: p.name,
          bucket: b.name,
          builder: bl.name,
        })),
      ),
  );
}

/** True when `id` is a configured builder (lease-mode or Swarming). */
export function builderExists(registry: Registry, id: BuilderId): boolean {
  return buildersOf(registry, [bucketPath(id)]).some((b) => b.builder === id.builder);
}

/** True when every build a verification covers is in a readable bucket. */
export function canReadAll(readable: ReadonlySet<string>, builders: readonly BuilderId[]): boolean {
  return builders.every((b) => readable.has(bucketPath(b)));
}
