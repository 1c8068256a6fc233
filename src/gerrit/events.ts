/**
 * zod schemas for Gerrit's `stream-events` JSON (one event per line; see Gerrit's
 * Documentation/cmd-stream-events.txt and json.txt). Gerrit warns that any field may be missing, so
 * only what Kiln acts on is required: the change's project, branch, Change-Id and number, and the
 * patchset's number, revision and ref. Unknown fields are kept; numbers Gerrit sends as strings
 * (approval values, `number` on old servers) are normalised to numbers.
 */
import { z } from 'zod';
import { formatZodError } from '../domain/zodIssues.ts';
import { KilnError } from '../domain/errors.ts';
import {
  CHANGE_STATUSES,
  type GerritEventAccount,
  type GerritEventApproval,
  type GerritEventChange,
  type GerritEventPatchSet,
  type GerritStreamEvent,
} from '../domain/gerrit/change.ts';

/** An integer sent as a JSON number or a decimal string (`"2"`, `"-1"`). */
const intLike = z.preprocess((v) => (typeof v === 'string' && /^[+-]?[0-9]+$/.test(v) ? Number(v) : v), z.int());

/** The `account` attribute (`name`, `email`, `username`; all optional). */
export const GerritEventAccountSchema = z.looseObject({
  name: z.string().optional(),
  email: z.string().optional(),
  username: z.string().optional(),
}) satisfies z.ZodType<GerritEventAccount>;

/** The `change` attribute. */
export const GerritEventChangeSchema = z.looseObject({
  project: z.string().min(1),
  branch: z.string().min(1),
  id: z.string().min(1),
  number: intLike.pipe(z.number().positive()),
  url: z.string().optional(),
  owner: GerritEventAccountSchema.optional(),
  status: z.enum(CHANGE_STATUSES).optional(),
  subject: z.string().optional(),
}) satisfies z.ZodType<GerritEventChange, unknown>;

/** The `patchSet` attribute. */
export const GerritEventPatchSetSchema = z.looseObject({
  number: intLike.pipe(z.number().positive()),
  revision: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'expected a commit SHA'),
  ref: z.string().startsWith('refs/'),
  uploader: GerritEventAccountSchema.optional(),
}) satisfies z.ZodType<GerritEventPatchSet, unknown>;

/** The `approval` attribute of `comment-added`. Gerrit omits `value` for a removed vote: read as 0. */
export const GerritEventApprovalSchema = z.looseObject({
  type: z.string().min(1),
  value: intLike.default(0),
  oldValue: intLike.optional(),
  description: z.string().optional(),
  by: GerritEventAccountSchema.optional(),
}) satisfies z.ZodType<GerritEventApproval, unknown>;

const base = {
  change: GerritEventChangeSchema,
  patchSet: GerritEventPatchSetSchema,
  eventCreatedOn: z.number().optional(),
};

/** `patchset-created`: a new change or patchset was uploaded. */
export const PatchsetCreatedEventSchema = z.looseObject({
  type: z.literal('patchset-created'),
  ...base,
  uploader: GerritEventAccountSchema.optional(),
});

/** `comment-added`: a reply, with the author's votes in `approvals` (absent means none). */
export const CommentAddedEventSchema = z.looseObject({
  type: z.literal('comment-added'),
  ...base,
  author: GerritEventAccountSchema.optional(),
  approvals: z.array(GerritEventApprovalSchema).default([]),
  comment: z.string().optional(),
});

/** `change-merged`. */
export const ChangeMergedEventSchema = z.looseObject({
  type: z.literal('change-merged'),
  ...base,
  submitter: GerritEventAccountSchema.optional(),
  newRev: z.string().optional(),
});

/** `change-abandoned`. */
export const ChangeAbandonedEventSchema = z.looseObject({
  type: z.literal('change-abandoned'),
  ...base,
  abandoner: GerritEventAccountSchema.optional(),
  reason: z.string().optional(),
});

/** `change-restored`. */
export const ChangeRestoredEventSchema = z.looseObject({
  type: z.literal('change-restored'),
  ...base,
  restorer: GerritEventAccountSchema.optional(),
  reason: z.string().optional(),
});

/** Every stream event Kiln acts on, by `type`. */
export const GerritStreamEventSchema = z.discriminatedUnion('type', [
  PatchsetCreatedEventSchema,
  CommentAddedEventSchema,
  ChangeMergedEventSchema,
  ChangeAbandonedEventSchema,
  ChangeRestoredEventSchema,
]) satisfies z.ZodType<GerritStreamEvent, unknown>;

const KNOWN_TYPES: ReadonlySet<string> = new Set(GerritStreamEventSchema.options.map((o) => o.shape.type.value));

/** A parsed stream line: an event Kiln acts on, or another event type (ref-updated, reviewer-added, …). */
export type ParsedGerritEvent = { kind: 'event'; event: GerritStreamEvent } | { kind: 'unknown'; type: string };

/**
 * Parses one decoded stream event. Event types Kiln does not act on come back as `unknown` (not an
 * error: Gerrit adds types over time). A known type with a missing or malformed field throws
 * `KilnError('INVALID_ARGUMENT')` naming the field, e.g. `comment-added event: change.number: …`.
 */
export function parseGerritEvent(input: unknown): ParsedGerritEvent {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new KilnError('INVALID_ARGUMENT', 'Gerrit event: expected a JSON object');
  }
  const type = (input as { type?: unknown }).type;
  if (typeof type !== 'string' || type === '') {
    throw new KilnError('INVALID_ARGUMENT', 'Gerrit event: type: expected a non-empty string');
  }
  if (!KNOWN_TYPES.has(type)) return { kind: 'unknown', type };
  const r = GerritStreamEventSchema.safeParse(input);
  if (!r.success) throw new KilnError('INVALID_ARGUMENT', `Gerrit ${type} event: ${formatZodError(r.error)}`);
  return { kind: 'event', event: r.data };
}

/** Parses one line of `gerrit stream-events` output; a line that is not JSON throws `INVALID_ARGUMENT`. */
export function parseGerritEventLine(line: string): ParsedGerritEvent {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (e) {
    throw new KilnError('INVALID_ARGUMENT', `Gerrit event: not JSON (${(e as Error).message})`);
  }
  return parseGerritEvent(json);
}
