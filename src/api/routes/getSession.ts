/**
 * GET /api/v1/session — who the caller is to the web UI: whether auth is on, the buckets its token
 * may read with its role on each (what the UI offers: cancel needs SCHEDULER, priority WRITER), and
 * the links the UI builds (Temporal Web UI, Gerrit hosts). With auth on, a missing or unknown token
 * is UNAUTHENTICATED, which sends the UI back to its token prompt.
 */
import { z } from 'zod';
import { type Role } from '../../config/schema.ts';
import { bearerToken, callerName, readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { roleSchema } from '../uiSchemas.ts';

export const sessionResponse = z.object({
  authEnabled: z.boolean(),
  /** The token's name in the ACLs (`anonymous` with auth off). */
  name: z.string(),
  buckets: z.array(z.object({ bucket: z.string(), role: roleSchema, swarming: z.boolean() })),
  links: z.object({
    /** Temporal Web UI base URL, when known. */
    temporalUi: z.string().optional(),
    namespace: z.string(),
    /** Gerrit web base URL per host name. */
    gerrit: z.record(z.string(), z.string()),
  }),
});
export type SessionResponse = z.infer<typeof sessionResponse>;

/** The Temporal Web UI base URL: the configured one, else the dev server's that `kiln dev` starts. */
export function temporalUiUrl(config: {
  ui: { temporalUiUrl?: string };
  temporal: { address?: string; devServer: { uiPort: number } };
}): string | undefined {
  if (config.ui.temporalUiUrl) return config.ui.temporalUiUrl.replace(/\/$/, '');
  return config.temporal.address === undefined ? `http://127.0.0.1:${config.temporal.devServer.uiPort}` : undefined;
}

export const getSession: Route = (app, ctx) => {
  app.get('/api/v1/session', async (req): Promise<SessionResponse> => {
    const { registry } = ctx;
    const readable = readableBuckets(registry, req);
    const token = registry.authDisabled ? undefined : bearerToken(req);
    const config = registry.config;
    return {
      authEnabled: !registry.authDisabled,
      name: callerName(registry, req),
      buckets: readable.map((bucket) => ({
        bucket,
        role: (registry.authDisabled ? 'WRITER' : registry.roleOf(bucket, token)) as Role,
        swarming: registry.bucket(bucket)?.swarming !== undefined,
      })),
      links: {
        temporalUi: temporalUiUrl(config),
        namespace: config.temporal.namespace,
        gerrit: Object.fromEntries(
          (config.gerrit?.hosts ?? []).map((h) => [h.host, (h.baseUrl ?? `https://${h.host}`).replace(/\/$/, '')]),
        ),
      },
    };
  });
};
