/** Build tags are `key:value` strings; keys may repeat. `buildset` is the tag CQ searches by. */

/** Parses a `key:value` tag; returns undefined when it is malformed. */
export function parseTag(tag: string): { key: string; value: string } | undefined {
  const i = tag.indexOf(':');
  if (i <= 0) return undefined;
  const key = tag.slice(0, i);
  if (!/^[A-Za-z0-9_.\-/]+$/.test(key)) return undefined;
  return { key, value: tag.slice(i + 1) };
}

/** Values of every tag with `key`, in order. */
export function tagValues(tags: readonly string[], key: string): string[] {
  const out: string[] = [];
  for (const t of tags) {
    const p = parseTag(t);
    if (p && p.key === key) out.push(p.value);
  }
  return out;
}

/** The build's first `buildset` tag value, if any. */
export function buildsetOf(tags: readonly string[]): string | undefined {
  return tagValues(tags, 'buildset')[0];
}

/** `buildset` of a Gerrit patchset, as CQ writes it. */
export function gerritBuildset(host: string, change: number, patchset: number): string {
  return `patch/gerrit/${host}/${change}/${patchset}`;
}
