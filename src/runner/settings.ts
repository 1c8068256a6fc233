/**
 * The runner settings as zod schemas, shared by `kiln runner` config files (config.ts) and the
 * `devRunner` section of Kiln's own config (`kiln dev`). Pure zod, so the config schema can use it.
 */
import { z } from 'zod';

const bucketPathSchema = z.string().regex(/^[^/\s]+\/[^/\s]+$/, 'a "project/bucket" string');
const dimension = z.string().regex(/^[^:\s]+:\S.*$/, 'a "key:value" dimension');

/** Characters git forbids in ref names, plus whitespace; the rest of git's rules are checked below. */
// eslint-disable-next-line no-control-regex -- git forbids control characters in refs
const BAD_REF_CHARS = /[\s~^:?*[\\\x00-\x1f\x7f]/;

/** True when `ref` is a ref name git accepts (the rules of `git check-ref-format`). */
export function isValidRefName(ref: string): boolean {
  if (ref.length === 0 || ref.length > 1024 || BAD_REF_CHARS.test(ref)) return false;
  if (ref.startsWith('-') || ref.startsWith('/') || ref.endsWith('/') || ref.endsWith('.')) return false;
  if (ref.includes('..') || ref.includes('//') || ref.includes('@{') || ref === '@') return false;
  return ref.split('/').every((c) => c.length > 0 && !c.startsWith('.') && !c.endsWith('.lock'));
}

/**
 * A builder's `checkout`: the repository `kiln runner` fetches (with a cache per repository) and
 * checks out into the build's folder before running the command, which then runs in the checkout.
 */
export const checkoutSchema = z
  .object({
    /** URL (https://, ssh://, git@host:path, file://) or a path on the runner's machine (`./x` against its working directory). */
    repo: z
      .string()
      .min(1)
      .refine((r) => !r.startsWith('-') && !/\s/.test(r), 'a repository URL or path (no leading "-", no spaces)'),
    /** Branch (`main`) or full ref built when the build's input names none. @default the repository's HEAD */
    ref: z
      .string()
      .refine(
        (r) => r === 'HEAD' || isValidRefName(r.startsWith('refs/') ? r : `refs/heads/${r}`),
        'a branch name or a full ref (refs/…)',
      )
      .optional(),
  })
  .strict();

/** Which builds to take: a bucket, optionally only some of its builders. */
export const serveSchema = z
  .object({
    bucket: bucketPathSchema,
    /** Builder names; every builder of the bucket when absent. */
    builders: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict();

/** Settings shared by `kiln runner` files and `kiln dev`'s `devRunner` section. */
export const runnerSettingsShape = {
  /** Shown as the lease holder. @default "<hostname>-<pid>" */
  name: z.string().min(1).max(200).optional(),
  /** What this runner serves. `kiln dev`: every bucket in the config when absent. */
  serve: z.array(serveSchema).min(1).optional(),
  /** What this machine offers; a build is leased only when these cover all of its dimensions. */
  dimensions: z.array(dimension).default([]),
  /** Builds run at once. @default 1 */
  capacity: z.number().int().min(1).max(64).default(1),
  /** Seconds between peeks while there is free capacity. @default 10 (Buildbot's classic value) */
  peekIntervalSecs: z.number().positive().max(3600).default(10),
  /** Seconds between heartbeats of running builds. @default 10 */
  heartbeatIntervalSecs: z.number().positive().max(3600).default(10),
  /** Lease length to ask for; the builder's default when absent. */
  leaseDurationSecs: z.number().int().positive().optional(),
  /** Seconds between log uploads while a build runs. @default 2 */
  logFlushIntervalSecs: z.number().positive().max(600).default(2),
  /** On SIGTERM: how long running builds may go on before they are killed and failed INFRA_FAILURE. @default 60 */
  gracePeriodSecs: z
    .number()
    .min(0)
    .max(24 * 3600)
    .default(60),
  /** Seconds between SIGTERM and SIGKILL when a build's process tree is stopped. @default 5 */
  killTimeoutSecs: z.number().min(0).max(600).default(5),
  /** Where builds run: one folder per build. @default ".kiln/runner" */
  workDir: z.string().default('.kiln/runner'),
  /** One bare git repository per checked-out repository, reused by every build. @default "<workDir>/git-cache" */
  gitCacheDir: z.string().optional(),
  /** Keep each build's folder (checkout included) after the build instead of deleting it. @default false */
  keepBuildDirs: z.boolean().default(false),
};

/** `kiln dev`'s own runner: the same settings, plus a switch; peeks every 2 s by default. */
export const devRunnerSchema = z
  .object({
    enabled: z.boolean().default(true),
    ...runnerSettingsShape,
    /** Bearer token with WRITER on the served buckets, when the config has ACLs. */
    token: z.string().optional(),
    /** @default the union of the served builders' dimensions, so the dev runner takes every build */
    dimensions: z.array(dimension).optional(),
    /** @default "<dataDir>/runner" */
    workDir: z.string().optional(),
    peekIntervalSecs: z.number().positive().max(3600).default(2),
    capacity: z.number().int().min(1).max(64).default(4),
    /** Ctrl-C should be quick in development. @default 5 */
    gracePeriodSecs: z
      .number()
      .min(0)
      .max(24 * 3600)
      .default(5),
  })
  .strict();

export type DevRunnerConfig = z.infer<typeof devRunnerSchema>;
