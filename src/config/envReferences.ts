/**
 * The environment variables a config names for its secrets: every key ending in `Env` (`tokenEnv`,
 * `passwordEnv`, `eventSecretEnv`, `notifyTokenEnv`, `apiKeyEnv`, …) wherever it appears. Used to
 * report every unset one at start in one message, and to keep them all away from build commands.
 */

/** One `…Env` key: where it is in the config, and the variable it names. */
export interface EnvReference {
  /** e.g. `projects[0].buckets[1].acls[0].tokenEnv` */
  path: string;
  variable: string;
}

/** Every `…Env` key of a parsed config, in document order. */
export function envReferences(config: unknown): EnvReference[] {
  const found: EnvReference[] = [];
  const walk = (v: unknown, path: string): void => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${path}[${i}]`));
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        const p = path ? `${path}.${k}` : k;
        if (/.Env$/.test(k) && typeof x === 'string') found.push({ path: p, variable: x });
        else walk(x, p);
      }
    }
  };
  walk(config, '');
  return found;
}

/** `file: path: environment variable X is not set` for each unset variable (none: empty). */
export function missingVariables(file: string, refs: readonly EnvReference[], env: NodeJS.ProcessEnv): string[] {
  return refs
    .filter((r) => !env[r.variable])
    .map((r) => `${file}: ${r.path}: environment variable ${r.variable} is not set`);
}
