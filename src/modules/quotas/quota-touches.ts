import type { RequestMeta } from "../../tenancy.js";
import type { Limit, QuotaType } from "./quota-types.js";

export interface Touch {
  limit: Limit;
  remaining: number | null;
  resetAt: string | null;
}

export interface TouchedQuota extends Touch {
  quota: QuotaType;
  limit: number;
  remaining: number;
}

/**
 * The quotas each request touched, keyed by the request's metadata object (one per request,
 * set by the auth hook), so the response can carry the X-Quota-* headers. Weakly held: a
 * finished request's entry goes with it. Jobs (no request) record nothing.
 */
export function createQuotaTouches() {
  const byRequest = new WeakMap<RequestMeta, Map<QuotaType, Touch>>();
  return {
    record(request: RequestMeta | null, quota: QuotaType, t: Touch): void {
      if (!request) return;
      let m = byRequest.get(request);
      if (!m) {
        m = new Map();
        byRequest.set(request, m);
      }
      m.set(quota, { limit: t.limit, remaining: t.remaining, resetAt: t.resetAt });
    },

    /**
     * The most constrained limited quota touched: the smallest share of its limit left (ties:
     * the fewest left). Unlimited quotas constrain nothing and are never chosen.
     */
    mostConstrained(request: RequestMeta | undefined): TouchedQuota | undefined {
      const m = request ? byRequest.get(request) : undefined;
      if (!m) return undefined;
      let best: TouchedQuota | undefined;
      let bestShare = Number.POSITIVE_INFINITY;
      for (const [quota, t] of m) {
        if (t.limit === null || t.remaining === null) continue;
        const share = t.limit === 0 ? 0 : t.remaining / t.limit;
        if (share < bestShare || (share === bestShare && best && t.remaining < best.remaining)) {
          best = { quota, limit: t.limit, remaining: t.remaining, resetAt: t.resetAt };
          bestShare = share;
        }
      }
      return best;
    },
  };
}
