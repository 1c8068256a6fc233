/**
 * POST /api/v1/swarming/notify — Swarming task notifications as Pub/Sub pushes them
 * (`{message: {data: base64 JSON {task_id, userdata}, attributes?}}`). The userdata Kiln gave the task
 * names the build; the build is signalled and then polls the task itself, so a notification is only a
 * hint and never sets a status. No bearer token: when `swarming.notifyToken` is configured, the push
 * must carry it (message attribute `auth_token`, which Swarming copies from the task, or `?token=`).
 * Answers 204 (Pub/Sub acks), 400 INVALID_ARGUMENT for a malformed push, 404 BUILD_NOT_FOUND.
 */
import { z } from 'zod';
import { sameSecret } from '../../config/load.ts';
import { isBuildId } from '../../domain/buildId.ts';
import { KilnError } from '../../domain/errors.ts';
import { parsePubsubUserdata } from '../../domain/swarming/template.ts';
import { parseSwarmingNotification, PubsubPushSchema } from '../../swarming/notification.ts';
import { type Route } from '../context.ts';
import { parseInput } from '../validate.ts';

export const swarmingNotifyQuery = z.object({ token: z.string().max(512).optional() }).strict();
/** The request body: a Pub/Sub push (checked, with the data inside it, by `parseSwarmingNotification`). */
export const swarmingNotifyBody = PubsubPushSchema;
export type SwarmingNotifyRequest = z.input<typeof swarmingNotifyBody>;

export const swarmingNotify: Route = (app, ctx) => {
  app.post('/api/v1/swarming/notify', async (req, reply) => {
    const query = parseInput(swarmingNotifyQuery, req.query, 'query');
    const n = parseSwarmingNotification(req.body);
    const expected = ctx.registry.config.swarming?.notifyToken;
    if (expected !== undefined) {
      const given = n.authToken ?? query.token;
      if (given === undefined) throw new KilnError('UNAUTHENTICATED', 'notification carries no auth_token');
      if (!sameSecret(given, expected)) throw new KilnError('PERMISSION_DENIED', 'notification auth_token is wrong');
    }
    const { buildId } = parsePubsubUserdata(n.userdata);
    if (!isBuildId(buildId))
      throw new KilnError('INVALID_ARGUMENT', `userdata.build_id: "${buildId}" is not a build ID`);
    await ctx.service.notifySwarming(buildId, { taskId: n.taskId, ...(n.messageId ? { messageId: n.messageId } : {}) });
    req.log.debug({ buildId, taskId: n.taskId, messageId: n.messageId }, 'swarming notification');
    return reply.code(204).send();
  });
};
