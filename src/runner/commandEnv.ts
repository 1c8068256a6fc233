/**
 * The environment a build command runs with: the runner's own, less every Kiln credential. A
 * command's output goes to a log any READER can read, so `env` in a build must not print a token:
 * the runner's token variables (`tokenEnv`, and in `kiln dev` every `…Env` of Kiln's config and
 * DATABASE_URL), the CLI's KILN_TOKEN and KILN_RUNNER_TOKEN, and any variable whose value holds
 * the runner's token are removed. Build commands get no Kiln credentials.
 */

/** Variables never passed to a build command, whatever the config says. */
export const ALWAYS_SCRUBBED = ['KILN_TOKEN', 'KILN_RUNNER_TOKEN'] as const;

/** `base` without Kiln's credentials, plus `extra` (the build's own KILN_* variables). */
export function commandEnv(
  base: NodeJS.ProcessEnv,
  s: { token?: string; secretEnv?: readonly string[] },
  extra: Record<string, string>,
): NodeJS.ProcessEnv {
  const scrub = new Set<string>([...ALWAYS_SCRUBBED, ...(s.secretEnv ?? [])]);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    if (v === undefined || scrub.has(k)) continue;
    if (s.token && v.includes(s.token)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}
