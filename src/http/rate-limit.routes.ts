import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { Clock } from "../platform/clock.js";
import type { PolicyState, RequestLimiter } from "../platform/ratelimit/index.js";
import { tenantContext } from "./auth-hook.js";
import { LIMITED_GROUPS } from "./rate-limit-hook.js";

const windowSchema = z.object({
  policy: z.string().describe("The policy's name in RateLimit-Policy: minute or day"),
  windowSeconds: z.number().int(),
  limit: z.number().int(),
  used: z.number().int().describe("Requests let through in the current window"),
  remaining: z.number().int(),
  resetSeconds: z
    .number()
    .int()
    .describe("Seconds until the window ends; the whole window when none is open"),
  resetAt: z.iso
    .datetime()
    .nullable()
    .describe("When the window ends; null when no request opened one yet"),
});

export const rateLimitStatusSchema = z.object({
  enabled: z.boolean().describe("False when the deployment runs without rate limits"),
  groups: z.array(
    z.object({
      group: z.enum(LIMITED_GROUPS),
      windows: z.array(windowSchema),
    }),
  ),
});

/** GET /api/metrics/rate-limits: the tenant's current windows per route group. */
export const rateLimitRoutes: FastifyPluginAsyncZod<{
  limiter: RequestLimiter | undefined;
  clock: Clock;
}> = async (app, { limiter, clock }) => {
  app.get(
    "/api/metrics/rate-limits",
    {
      // Read, not counted: watching one's limits does not spend them.
      config: { minRole: "member", scope: "read", rateLimit: "peek" },
      schema: {
        tags: ["metrics"],
        summary:
          "The tenant's rate-limit windows per route group (limit, used, remaining, reset), without counting a request",
        response: { 200: rateLimitStatusSchema },
      },
    },
    async (req) => {
      const { tenantId } = tenantContext(req);
      if (!limiter) return { enabled: false, groups: [] };
      const now = clock.now();
      const toWindow = (p: PolicyState) => ({
        policy: p.policy,
        windowSeconds: p.windowSeconds,
        limit: p.limit,
        used: p.used,
        remaining: p.remaining,
        resetSeconds: p.resetSeconds,
        resetAt: p.open ? new Date(now + p.resetSeconds * 1000).toISOString() : null,
      });
      const groups = await Promise.all(
        LIMITED_GROUPS.map(async (group) => ({
          group,
          windows: (await limiter.peek(tenantId, group)).policies.map(toWindow),
        })),
      );
      return { enabled: true, groups };
    },
  );
};
