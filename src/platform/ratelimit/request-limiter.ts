import { LRUCache } from "lru-cache";
import type { LimiterFactory, WindowCounter, WindowState } from "./counter.js";

/** A window a limit applies to, e.g. `{ name: "minute", windowSeconds: 60 }`. */
export interface WindowPolicy {
  name: string;
  windowSeconds: number;
}

/** A subject's limit per policy name; every policy of the limiter has one. */
export type PolicyLimits = Record<string, number>;

/** One policy's window for a subject and bucket, as the headers and the status route show it. */
export interface PolicyState {
  policy: string;
  windowSeconds: number;
  limit: number;
  /** Requests let through in the window (refused ones are not shown as used). */
  used: number;
  remaining: number;
  /** Seconds until the window ends; the whole window when none is open. */
  resetSeconds: number;
  /** Whether a window is open (a request was counted in it); a closed one starts on the next. */
  open: boolean;
}

export interface LimitDecision {
  allowed: boolean;
  /** Every policy, in the limiter's order (shortest window first). */
  policies: PolicyState[];
  /** The policies that refused (empty when allowed). */
  violated: string[];
  /** When refused: the seconds until every violated window has ended (at least 1). */
  retryAfterSeconds: number | undefined;
}

export interface RequestLimiter {
  /**
   * Counts one request of `subject` in `bucket` against each policy, shortest window first,
   * and decides. A request is let through when every policy's count, this request included, is
   * within the subject's limit. The policies are counted in turn and a refused request stops at
   * the first policy that refuses: a flood the per-minute limit refuses does not spend the
   * per-day budget. Of N concurrent requests over a budget of K, exactly K pass (the counters'
   * hits are atomic, in every process sharing the store).
   */
  take(subject: string, bucket: string): Promise<LimitDecision>;
  /** The windows as they stand, counting nothing. */
  peek(subject: string, bucket: string): Promise<LimitDecision>;
  /** The subject's limits (cached; see `invalidate`). */
  limits(subject: string): Promise<PolicyLimits>;
  /** Forgets the subject's cached limits: the next request reads them again. */
  invalidate(subject: string): void;
}

export interface RequestLimiterOptions {
  name: string;
  keyPrefix: string;
  /** Shortest window first. */
  policies: readonly WindowPolicy[];
  /** Reads a subject's limits (a tenant's configuration). */
  limitsOf(subject: string): Promise<PolicyLimits>;
  /** How long a subject's limits are kept before they are read again (other processes' changes). */
  limitsTtlMs?: number;
  /** How many subjects' limits are kept. */
  limitsMax?: number;
}

export function createRequestLimiter(
  limiters: LimiterFactory,
  opts: RequestLimiterOptions,
): RequestLimiter {
  const counters: Array<{ policy: WindowPolicy; counter: WindowCounter }> = opts.policies.map(
    (policy) => ({
      policy,
      counter: limiters.windowCounter({
        name: opts.name,
        windowSeconds: policy.windowSeconds,
        keyPrefix: `${opts.keyPrefix}:${policy.name}`,
      }),
    }),
  );
  const cache = new LRUCache<string, PolicyLimits>({
    max: opts.limitsMax ?? 10_000,
    ttl: opts.limitsTtlMs ?? 10_000,
  });
  const loading = new Map<string, Promise<PolicyLimits>>();
  // Bumped by every invalidation: a read that began before one is used but not kept.
  let epoch = 0;

  function limits(subject: string): Promise<PolicyLimits> {
    const cached = cache.get(subject);
    if (cached) return Promise.resolve(cached);
    const pending = loading.get(subject);
    if (pending) return pending;
    const startedAt = epoch;
    // Concurrent first requests of a subject share one read.
    const read = opts
      .limitsOf(subject)
      .then((value) => {
        if (epoch === startedAt) cache.set(subject, value);
        return value;
      })
      .finally(() => {
        if (loading.get(subject) === read) loading.delete(subject);
      });
    loading.set(subject, read);
    return read;
  }

  const limitOf = (all: PolicyLimits, policy: WindowPolicy): number => {
    const limit = all[policy.name];
    if (limit === undefined) throw new Error(`no limit for the policy ${policy.name}`);
    return limit;
  };

  function stateOf(policy: WindowPolicy, limit: number, w: WindowState | null): PolicyState {
    const count = w?.count ?? 0;
    return {
      policy: policy.name,
      windowSeconds: policy.windowSeconds,
      limit,
      used: Math.min(count, limit),
      remaining: Math.max(0, limit - count),
      resetSeconds: w ? Math.ceil(w.msBeforeReset / 1000) : policy.windowSeconds,
      open: w !== null,
    };
  }

  function decide(policies: PolicyState[], violated: string[]): LimitDecision {
    const retry = policies
      .filter((p) => violated.includes(p.policy))
      .reduce((most, p) => Math.max(most, p.resetSeconds), 0);
    return {
      allowed: violated.length === 0,
      policies,
      violated,
      retryAfterSeconds: violated.length === 0 ? undefined : Math.max(1, retry),
    };
  }

  const key = (subject: string, bucket: string) => `${subject}:${bucket}`;

  return {
    limits,
    invalidate(subject) {
      epoch += 1;
      cache.delete(subject);
      loading.delete(subject);
    },

    async take(subject, bucket) {
      const all = await limits(subject);
      const k = key(subject, bucket);
      const states: PolicyState[] = [];
      for (const [i, { policy, counter }] of counters.entries()) {
        const limit = limitOf(all, policy);
        const w = await counter.hit(k);
        states.push(stateOf(policy, limit, w));
        if (w.count <= limit) continue;
        // Refused here: the longer windows are read, not counted, so that the answer says
        // whether they are spent too (then waiting for this window would not be enough).
        const violated = [policy.name];
        for (const rest of counters.slice(i + 1)) {
          const restLimit = limitOf(all, rest.policy);
          const seen = await rest.counter.peek(k);
          states.push(stateOf(rest.policy, restLimit, seen));
          if ((seen?.count ?? 0) >= restLimit) violated.push(rest.policy.name);
        }
        return decide(states, violated);
      }
      return decide(states, []);
    },

    async peek(subject, bucket) {
      const all = await limits(subject);
      const k = key(subject, bucket);
      const states = await Promise.all(
        counters.map(async ({ policy, counter }) =>
          stateOf(policy, limitOf(all, policy), await counter.peek(k)),
        ),
      );
      return decide(
        states,
        states.filter((s) => s.remaining === 0).map((s) => s.policy),
      );
    },
  };
}

/**
 * The policy a client is closest to hitting: the one with the fewest requests left, and of
 * those the one whose window ends last. When a request was refused, the violated policy that
 * ends last.
 */
export function mostConstrained(decision: LimitDecision): PolicyState {
  const candidates = decision.allowed
    ? decision.policies
    : decision.policies.filter((p) => decision.violated.includes(p.policy));
  const [first, ...rest] = candidates;
  if (!first) throw new Error("a limit decision without policies");
  return rest.reduce(
    (best, p) =>
      p.remaining < best.remaining ||
      (p.remaining === best.remaining && p.resetSeconds > best.resetSeconds)
        ? p
        : best,
    first,
  );
}
