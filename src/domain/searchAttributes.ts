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

/** The search attributes a build workflow starts with, whoever starts it (the API or a verification). */
export function initialBuildSearchAttributes(build: Build): SearchAttributePair[] {
  const buildset = buildsetOf(build.tags);
  return [
    { key: KilnBuildId, value: build.id },
    { key: KilnProject, value: build.builder.project },
    { key: KilnBucket, value: build.builder.bucket },
    { key: KilnBuilder, value: build.builder.builder },
    { key: KilnStatus, value: build.status },
    { key: KilnTags, value: build.tags },
    ...(buildset !== undefined ? [{ key: KilnBuildset, value: buildset }] : []),
  ];
}
