/**
 * Kiln's custom search attributes: upserted by the build workflow on every transition so operators
 * find builds in the Temporal Web UI and `kiln stuck` can list them through visibility.
 */
import { defineSearchAttributeKey, type SearchAttributePair, SearchAttributeType } from '@temporalio/common';
import { type Build } from './build.ts';
import { buildsetOf } from './tags.ts';

export const KilnBuildId = defineSearchAttributeKey('KilnBuildId', SearchAttributeType.KEYWORD);
export const KilnProject = defineSearchAttributeKey('KilnProject', SearchAttributeType.KEYWORD);
export const KilnBucket = defineSearchAttributeKey('KilnBucket', SearchAttributeType.KEYWORD);
export const KilnBuilder = defineSearchAttributeKey('KilnBuilder', SearchAttributeType.KEYWORD);
export const KilnStatus = defineSearchAttributeKey('KilnStatus', SearchAttributeType.KEYWORD);
export const KilnBuildset = defineSearchAttributeKey('KilnBuildset', SearchAttributeType.KEYWORD);
export const KilnTags = defineSearchAttributeKey('KilnTags', SearchAttributeType.KEYWORD_LIST);
export const KilnLeaseExpiresAt = defineSearchAttributeKey('KilnLeaseExpiresAt', SearchAttributeType.DATETIME);
export const KilnLeaseHolder = defineSearchAttributeKey('KilnLeaseHolder', SearchAttributeType.KEYWORD);
export const KilnLastHeartbeatAt = defineSearchAttributeKey('KilnLastHeartbeatAt', SearchAttributeType.DATETIME);

/** Every Kiln search attribute key; the dev server and the compose setup register these. */
export const KILN_SEARCH_ATTRIBUTE_KEYS = [
  KilnBuildId,
  KilnProject,
  KilnBucket,
  KilnBuilder,
  KilnStatus,
  KilnBuildset,
  KilnTags,
  KilnLeaseExpiresAt,
  KilnLeaseHolder,
  KilnLastHeartbeatAt,
] as const;

const SERVER_TYPE_NAMES = {
  [SearchAttributeType.KEYWORD]: 'Keyword',
  [SearchAttributeType.KEYWORD_LIST]: 'KeywordList',
  [SearchAttributeType.DATETIME]: 'Datetime',
} as const;

/** Every Kiln search attribute with its server type name, for `--search-attribute` and `operator search-attribute create`. */
export const KILN_SEARCH_ATTRIBUTES: Record<string, 'Keyword' | 'KeywordList' | 'Datetime'> = Object.fromEntries(
  KILN_SEARCH_ATTRIBUTE_KEYS.map((k) => [k.name, SERVER_TYPE_NAMES[k.type as keyof typeof SERVER_TYPE_NAMES]]),
);

/**
 * Temporal's limit on the size of one search attribute's value (the server's
 * `limit.searchAttributesSizeOfValueLimit`, 2 KiB by default): a KeywordList counts as its JSON.
 */
export const SEARCH_ATTRIBUTE_VALUE_LIMIT_BYTES = 2048;

/** UTF-8 length of `s` (pure: workflow code has no Buffer). */
function utf8Length(s: string): number {
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

/**
 * The tags `KilnTags` shows in Temporal: the build's tags in order, as many as fit in
 * `SEARCH_ATTRIBUTE_VALUE_LIMIT_BYTES` (a longer value would make Temporal refuse the whole start
 * or upsert). Storage keeps every tag, so the API's search finds builds by any of them.
 */
export function visibleTags(tags: readonly string[]): string[] {
  const shown: string[] = [];
  let size = 2; // "[]"
  for (const t of tags) {
    const add = utf8Length(JSON.stringify(t)) + (shown.length > 0 ? 1 : 0);
    if (size + add > SEARCH_ATTRIBUTE_VALUE_LIMIT_BYTES) continue;
    shown.push(t);
    size += add;
  }
  return shown;
}

/** The search attributes a build workflow starts with, whoever starts it (the API or a verification). */
export function initialBuildSearchAttributes(build: Build): SearchAttributePair[] {
  const buildset = buildsetOf(build.tags);
  return [
    { key: KilnBuildId, value: build.id },
    { key: KilnProject, value: build.builder.project },
    { key: KilnBucket, value: build.builder.bucket },
    { key: KilnBuilder, value: build.builder.builder },
    { key: KilnStatus, value: build.status },
    { key: KilnTags, value: visibleTags(build.tags) },
    ...(buildset !== undefined ? [{ key: KilnBuildset, value: buildset }] : []),
  ];
}
