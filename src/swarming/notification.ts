/**
 * Swarming task notifications as Pub/Sub pushes them to Kiln's HTTP endpoint (Node side). The API
 * route parses the body with `parseSwarmingNotification`, then signals the build's workflow.
 */
import { z } from 'zod';
import { formatZodError } from '../domain/zodIssues.ts';
import { KilnError } from '../domain/errors.ts';

/** A Pub/Sub push request body (`message.data` is base64). Unknown fields are allowed. */
export const PubsubPushSchema = z.looseObject({
  message: z.looseObject({
    data: z.string().min(1),
    attributes: z.record(z.string(), z.string()).optional(),
    messageId: z.string().optional(),
    message_id: z.string().optional(),
    publishTime: z.string().optional(),
  }),
  subscription: z.string().optional(),
});
export type PubsubPush = z.infer<typeof PubsubPushSchema>;

/** The JSON Swarming publishes: which task changed and the `pubsub_userdata` it was created with. */
export const SwarmingNotificationDataSchema = z.looseObject({
  task_id: z.string().min(1),
  userdata: z.string().default(''),
});

/** A parsed Swarming notification. */
export interface SwarmingNotification {
  taskId: string;
  /** The task's `pubsub_userdata`, verbatim (Kiln's: see `parsePubsubUserdata`). */
  userdata: string;
  /** `message.attributes.auth_token`: the task's `pubsub_auth_token`, when it had one. */
  authToken?: string;
  messageId?: string;
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function invalid(error: z.ZodError, at: string): KilnError {
  return new KilnError('INVALID_ARGUMENT', formatZodError(error, { at }));
}

/**
 * Parses a Pub/Sub push body from Swarming into `{taskId, userdata}`. Throws `INVALID_ARGUMENT`
 * naming the offending field (`message.data`, `message.data.task_id`, ...) when it is malformed;
 * the route answers 4xx so Pub/Sub does not redeliver garbage forever.
 */
export function parseSwarmingNotification(body: unknown): SwarmingNotification {
  const push = PubsubPushSchema.safeParse(body);
  if (!push.success) throw invalid(push.error, '');
  const { message } = push.data;
  const b64 = message.data.replace(/\s+/g, '');
  if (!BASE64_RE.test(b64) || b64.length % 4 === 1) {
    throw new KilnError('INVALID_ARGUMENT', 'message.data: not base64');
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(b64, 'base64').toString('utf8'));
  } catch {
    throw new KilnError('INVALID_ARGUMENT', 'message.data: not base64-encoded JSON');
  }
  const data = SwarmingNotificationDataSchema.safeParse(json);
  if (!data.success) throw invalid(data.error, 'message.data');
  const out: SwarmingNotification = { taskId: data.data.task_id, userdata: data.data.userdata };
  const authToken = message.attributes?.['auth_token'];
  if (authToken !== undefined) out.authToken = authToken;
  const messageId = message.messageId ?? message.message_id;
  if (messageId !== undefined) out.messageId = messageId;
  return out;
}
