/**
 * The service-level `swarming` block of Kiln's config file: where the task templates are, how Swarming
 * reaches Kiln back (Pub/Sub topic, notify token) and how often a build polls its task. Buckets name
 * their Swarming server and builders in their own `swarming` block (`SwarmingBucketConfigSchema`).
 */
import { z } from 'zod';

/** Service-wide Swarming settings; required as soon as one bucket has a `swarming` block. */
export const swarmingServiceSchema = z
  .object({
    /** Path to the task template JSON file (`{"revision": ..., "template": {...}}`), relative to the config file. */
    taskTemplate: z.string().min(1),
    /** Path to the canary task template JSON file, same format; absent → no canary. */
    taskTemplateCanary: z.string().min(1).optional(),
    /** Kiln's hostname as tagged on tasks (`buildbucket_hostname`). @default the host of `api.publicUrl`, else "localhost" */
    kilnHostname: z.string().min(1).optional(),
    /** Pub/Sub topic Swarming publishes task updates to (`projects/<p>/topics/<t>`); absent → Kiln only polls. */
    pubsubTopic: z.string().min(1).optional(),
    /**
     * Shared secret for `POST /api/v1/swarming/notify`: sent to Swarming as each task's `pubsub_auth_token`
     * and required on every notification (message attribute `auth_token` or `?token=`).
     */
    notifyToken: z.string().min(16, 'tokens must be at least 16 characters').optional(),
    /** Environment variable holding `notifyToken`. */
    notifyTokenEnv: z.string().min(1).optional(),
    /** How often a build polls its task when no notification came. @default 300 */
    syncIntervalSecs: z.number().positive().default(300),
    /** Reach every Swarming server at this base URL instead of `https://<hostname>` (tests, proxies). */
    baseUrlOverride: z.string().url().optional(),
    /** Environment variable holding the OAuth bearer token Kiln sends to Swarming. */
    tokenEnv: z.string().min(1).optional(),
  })
  .strict()
  .refine((s) => s.notifyToken === undefined || s.notifyTokenEnv === undefined, {
    message: 'give at most one of notifyToken or notifyTokenEnv',
    path: ['notifyTokenEnv'],
  });
export type SwarmingServiceSettings = z.infer<typeof swarmingServiceSchema>;
