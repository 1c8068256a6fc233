/**
 * The `gerrit` block of Kiln's config: which Gerrit hosts Kiln talks to (and how it authenticates),
 * the shared secret event senders present, the account Kiln votes as, the idle timeout of
 * verifications, and the per-project trigger configs (`GerritProjectConfigSchema`).
 * `resolveGerritSettings` (src/gerrit/settings.ts) turns it into what the API and workers use.
 */
import { z } from 'zod';
import { GerritProjectConfigSchema } from '../domain/gerrit/projectConfig.ts';

const hostName = z
  .string()
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$/, 'a host name without scheme or path');

/** One Gerrit server. `baseUrl` overrides `https://<host>` (tests point it at a fake). */
export const gerritHostSchema = z
  .object({
    host: hostName,
    baseUrl: z.string().url().optional(),
    /** HTTP basic with the account's HTTP password, or an OAuth bearer token; secrets come from env variables. */
    auth: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('basic'), username: z.string().min(1), passwordEnv: z.string().min(1) }).strict(),
        z.object({ kind: z.literal('bearer'), tokenEnv: z.string().min(1) }).strict(),
      ])
      .optional(),
    /** Per-request deadline. @default 30000 */
    timeoutMs: z.number().int().positive().default(30_000),
  })
  .strict();

/** The `gerrit` block. */
export const gerritConfigSchema = z
  .object({
    hosts: z.array(gerritHostSchema).default([]),
    /** Shared secret event senders put in the `X-Kiln-Gerrit-Secret` header: inline, or the name of an env variable. */
    eventSecret: z.string().min(16, 'the event secret must be at least 16 characters').optional(),
    eventSecretEnv: z.string().min(1).optional(),
    /** The account Kiln votes as: its own comments never trigger anything. */
    self: z.object({ username: z.string().optional(), email: z.string().optional() }).strict().optional(),
    /** A platform no tinderbox takes within this long is canceled and the vote is 0. @default 21600 (6 h) */
    idleTimeoutSecs: z
      .number()
      .int()
      .positive()
      .default(6 * 3600),
    projects: z.array(GerritProjectConfigSchema).default([]),
  })
  .strict()
  .refine((g) => (g.eventSecret === undefined) !== (g.eventSecretEnv === undefined), {
    message: 'give exactly one of eventSecret or eventSecretEnv',
    path: ['eventSecret'],
  });

export type GerritConfig = z.infer<typeof gerritConfigSchema>;
