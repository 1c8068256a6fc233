/** Durations in config (`"90s"`, `"15m"`, `"6h"`, `"1d"`, `"1h30m"`). Pure: workflows may import it. */

/** A parsed duration. */
export interface ParsedDuration {
  ms: number;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `"1h30m"`-style durations; undefined when malformed. */
export function parseDuration(s: string): ParsedDuration | undefined {
  if (!/^(\d+(ms|s|m|h|d))+$/.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d)/g)) ms += Number(m[1]) * (UNIT_MS[m[2] ?? 's'] ?? 0);
  return Number.isSafeInteger(ms) ? { ms } : undefined;
}

/** Formats milliseconds for people: `6h`, `1h30m`, `90s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}
