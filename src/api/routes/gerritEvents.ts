/**
 * POST /api/v1/gerrit/events — one Gerrit `stream-events` event (JSON, as Gerrit prints it), from
 * `kiln gerrit listen` or a webhook relay. The sender proves itself with the shared secret in the
 * `X-Kiln-Gerrit-Secret` header; `?host=` names the Gerrit host when several are configured.
 * Malformed events and types Kiln does not handle are refused with INVALID_ARGUMENT.
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { eventSecretMatches } from '../../gerrit/settings.ts';
import { type Route } from '../context.ts';
import { checkStorable, parseInput } from '../validate.ts';

/** The header carrying the shared secret. */
export const GERRIT_SECRET_HEADER = 'x-kiln-gerrit-secret';

export const gerritEventsQuery = z.object({ host: z.string().min(1).max(300).optional() }).strict();

/** The answer: what Kiln does about the event, per project config it concerns (none → not Kiln's). */
export const gerritEventsResponse = z.object({
  actions: z.array(
    z.object({
      action: z.enum(['verify', 'evaluate', 'cancel', 'merged', 'ignore', 'poll']),
      reason: z.string(),
      workflowId: z.string().optional(),
    }),
  ),
});
export type GerritEventsResponse = z.infer<typeof gerritEventsResponse>;

export const gerritEvents: Route = (app, ctx) => {
  app.post('/api/v1/gerrit/events', async (req, reply): Promise<GerritEventsResponse> => {
    const intake = ctx.gerrit;
    if (!intake)
      throw new KilnError('NOT_FOUND', 'Gerrit verification is not configured (no gerrit block in the config)');
    const secret = req.headers[GERRIT_SECRET_HEADER];
    if (!eventSecretMatches(intake.o.settings, typeof secret === 'string' ? secret : undefined)) {
      throw new KilnError('UNAUTHENTICATED', `missing or wrong ${GERRIT_SECRET_HEADER} header`);
    }
    const q = parseInput(gerritEventsQuery, req.query, 'query');
    // Event fields end up in verifications and build properties: refuse what storage cannot hold.
    checkStorable(req.body, 'body');
    const actions = await intake.handle(q.host, req.body);
    void reply.code(202);
    return { actions };
  });
};
