import type { FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../errors.js";
import {
  type LimitDecision,
  mostConstrained,
  type RequestLimiter,
  rateLimitFields,
} from "../platform/ratelimit/index.js";
import { type RouteGroup, routeGroupOf } from "./route-groups.js";

/** The error a request over its tenant's limit is answered with (429, http/errors.ts). */
export type RateLimitErrorCode = "rate_limit.exceeded";

declare module "../errors.js" {
  interface ErrorCodes extends Record<RateLimitErrorCode, true> {}
}

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * How the rate-limit hook treats the route: `count` (the default) counts each request in
     * its group's windows; `peek` reads them without counting (the rate-limit status route, so
     * that watching one's limits does not spend them). Either way the response carries the
     * RateLimit headers.
     */
    rateLimit?: "count" | "peek";
  }
}

/** The groups a tenant's limits apply to, each with a budget of its own. */
export const LIMITED_GROUPS = ["ingest", "search", "chat", "management"] as const;
export type LimitedGroup = (typeof LIMITED_GROUPS)[number];

export function isLimitedGroup(group: RouteGroup): group is LimitedGroup {
  return (LIMITED_GROUPS as readonly string[]).includes(group);
}

/**
 * The onRequest hook after authentication: a request of a tenant's user or API key on a route
 * of a limited group is counted against the tenant's per-minute and per-day limits for that
 * group. Every such response carries `RateLimit-Policy` and `RateLimit` (the most constrained
 * policy); over a limit the request is refused before its body is read, `429
 * rate_limit.exceeded` with `Retry-After`. Platform admins, auth routes, public routes and
 * unmatched URLs are not tenant-limited (the login throttle guards the auth routes).
 */
export function createRateLimitHook(limiter: RequestLimiter) {
  return async function rateLimit(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const p = req.principal;
    if (!p || p.kind === "platform_admin") return;
    const group = routeGroupOf(req.method, req.routeOptions.url);
    if (!isLimitedGroup(group)) return;
    const decision =
      req.routeOptions.config.rateLimit === "peek"
        ? await limiter.peek(p.tenantId, group)
        : await limiter.take(p.tenantId, group);
    // Headers set here stay on whatever answers the request, errors included.
    const fields = rateLimitFields(decision, group);
    reply.header("ratelimit-policy", fields["ratelimit-policy"]);
    reply.header("ratelimit", fields.ratelimit);
    if (!decision.allowed && req.routeOptions.config.rateLimit !== "peek") {
      throw exceeded(decision, group);
    }
  };
}

function exceeded(decision: LimitDecision, group: LimitedGroup): AppError {
  const policy = mostConstrained(decision);
  const retryAfter = decision.retryAfterSeconds ?? policy.resetSeconds;
  return new AppError(
    "rate_limit.exceeded",
    `rate limit exceeded: at most ${policy.limit} ${group} requests per ${policy.policy}; retry in ${retryAfter} s`,
    {
      group,
      policy: policy.policy,
      limit: policy.limit,
      windowSeconds: policy.windowSeconds,
      violatedPolicies: decision.violated,
      retryAfterSeconds: retryAfter,
    },
    { "retry-after": String(retryAfter) },
  );
}
