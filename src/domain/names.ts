/**
 * What a builder may be called. Pure: config, API and CLI share one rule, so every name the config
 * accepts works everywhere (schedule, search, peek, the builder route, search attributes, the CLI).
 */

/**
 * LUCI's builder names: letters, digits, spaces and `-_.()`, 1 to 128 characters, e.g.
 * "Infra Win Tester" or "linux-rel (dbg)". No `/`, so `project/bucket/builder` stays unambiguous.
 */
export const BUILDER_NAME_RE = /^[a-zA-Z0-9\-_.() ]{1,128}$/;

/** The message every edge gives for a bad builder name. */
export const BUILDER_NAME_RULE = 'letters, digits, spaces and "-_.()", at most 128 characters';

/** True when `name` is a valid builder name. */
export function isBuilderName(name: string): boolean {
  return BUILDER_NAME_RE.test(name);
}
