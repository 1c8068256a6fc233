/**
 * The per-project Gerrit trigger config: which projects and branches Kiln verifies, what triggers a
 * verification, and which builders run. Validated Node side (config load); the verification workflow
 * imports only its types, so zod stays out of the workflow bundle.
 */
import { z } from 'zod';
import { type BuilderId } from '../build.ts';
import { KilnError } from '../errors.ts';
import { formatZodError } from '../zodIssues.ts';
import { BUILDER_NAME_RULE, isBuilderName } from '../names.ts';

/** What starts a verification for a Gerrit project. */
export const GERRIT_TRIGGERS = ['patchset-created', 'approval', 'commit-queue'] as const;
export type GerritTrigger = (typeof GERRIT_TRIGGERS)[number];

/** A Gerrit host name as used in buildsets (`gerrit.example.org`, optionally `:port`); no scheme, no path. */
const hostSchema = z
  .string()
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$/, 'must be a host name without scheme or path');

/** `project/bucket/builder`; the builder part follows LUCI's names (spaces allowed: `infra/try/Infra Win Tester`). */
const builderPathSchema = z
  .string()
  .regex(/^[^/\s]+\/[^/\s]+\/[^/]+$/, 'must be a builder path project/bucket/builder')
  .refine((p) => isBuilderName(p.split('/')[2] ?? ''), `builder names are ${BUILDER_NAME_RULE}`);

/**
 * One Gerrit project Kiln verifies. `branches` absent means every branch. `reviewerGroup` is the
 * group whose Code-Review > 0 counts for Norbert's rule (required for the `approval` trigger).
 * `builders` get one build each per verification (BGP: one per platform).
 */
export const GerritProjectConfigSchema = z
  .strictObject({
    host: hostSchema,
    project: z.string().min(1),
    branches: z.array(z.string().min(1)).min(1).optional(),
    trigger: z.enum(GERRIT_TRIGGERS),
    reviewerGroup: z.string().min(1).optional(),
    builders: z.array(builderPathSchema).min(1),
  })
  .superRefine((c, ctx) => {
    if (c.trigger === 'approval' && c.reviewerGroup === undefined) {
      ctx.addIssue({ code: 'custom', path: ['reviewerGroup'], message: "required when trigger is 'approval'" });
    }
    if (new Set(c.builders).size !== c.builders.length) {
      ctx.addIssue({ code: 'custom', path: ['builders'], message: 'must not repeat a builder' });
    }
  });
export type GerritProjectConfig = z.infer<typeof GerritProjectConfigSchema>;

/**
 * Validates the Gerrit project configs (an array). Throws `KilnError('INVALID_ARGUMENT')` naming the
 * first bad field (e.g. `[1].builders[0]`), and refuses two configs for the same host and project.
 */
export function parseGerritProjectConfigs(input: unknown): GerritProjectConfig[] {
  const r = z.array(GerritProjectConfigSchema).safeParse(input);
  if (!r.success) {
    throw new KilnError('INVALID_ARGUMENT', `invalid Gerrit project config ${formatZodError(r.error)}`);
  }
  const seen = new Set<string>();
  for (const [i, c] of r.data.entries()) {
    const key = `${c.host}/${c.project}`;
    if (seen.has(key)) throw new KilnError('INVALID_ARGUMENT', `invalid Gerrit project config [${i}]: ${key} twice`);
    seen.add(key);
  }
  return r.data;
}

/** Parses a config builder path `project/bucket/builder` (validated by the schema). */
export function parseBuilderPath(path: string): BuilderId {
  const [project, bucket, builder] = path.split('/');
  if (!project || !bucket || !builder || path.split('/').length !== 3) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      `invalid builder path ${JSON.stringify(path)}: want project/bucket/builder`,
    );
  }
  return { project, bucket, builder };
}
