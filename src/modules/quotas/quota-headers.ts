import type { FastifyReply, FastifyRequest } from "fastify";
import type { QuotasService } from "./quotas.service.js";

/**
 * The onSend hook (registered once, for every route) that puts the most constrained quota the
 * request touched on its response: `X-Quota-Limit`, `X-Quota-Remaining`, `X-Quota-Reset` (ISO
 * 8601 UTC, when the quota starts again; absent for a level quota, which never resets) and
 * `X-Quota-Type`. A refusal (429 quota.exceeded) carries them too. Requests that touched no
 * limited quota get none.
 */
export function quotaHeadersHook(quotas: Pick<QuotasService, "touchedBy">) {
  return async function quotaHeaders(
    req: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
  ): Promise<unknown> {
    const t = quotas.touchedBy(req.requestMeta);
    if (t) {
      reply.header("x-quota-limit", String(t.limit));
      reply.header("x-quota-remaining", String(t.remaining));
      if (t.resetAt) reply.header("x-quota-reset", t.resetAt);
      reply.header("x-quota-type", t.quota);
    }
    return payload;
  };
}
