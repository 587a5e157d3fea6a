import type { Redis } from "ioredis";
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
} from "rate-limiter-flexible";

/**
 * Counts failures per key inside a window and blocks the key once it has too many, e.g. failed
 * logins per email. Memory-backed in embedded mode; Redis-backed (shared by every API process,
 * atomic) when a Redis client is given.
 */
export interface FailureThrottle {
  /** Milliseconds until `key` may try again; 0 when it is not blocked. */
  blockedForMs(key: string): Promise<number>;
  /** Records one failure for `key`. */
  recordFailure(key: string): Promise<void>;
  /** Forgets `key`'s failures (after a success). */
  reset(key: string): Promise<void>;
}

export interface FailureThrottleOptions {
  /** Failures allowed inside the window; the next attempt is blocked. */
  maxFailures: number;
  windowSeconds: number;
  /** Namespace of the keys in Redis. */
  keyPrefix: string;
  redis?: Redis;
}

export function createFailureThrottle(opts: FailureThrottleOptions): FailureThrottle {
  const limiterOpts = {
    points: opts.maxFailures,
    duration: opts.windowSeconds,
    keyPrefix: opts.keyPrefix,
  };
  // With Redis, a memory limiter stands in while Redis is unreachable, so an outage degrades
  // throttling to per-process instead of failing every login.
  const limiter: RateLimiterAbstract = opts.redis
    ? new RateLimiterRedis({
        ...limiterOpts,
        storeClient: opts.redis,
        insuranceLimiter: new RateLimiterMemory(limiterOpts),
      })
    : new RateLimiterMemory(limiterOpts);
  return {
    async blockedForMs(key) {
      const res = await limiter.get(key);
      if (!res || res.consumedPoints < opts.maxFailures) return 0;
      return Math.max(1, res.msBeforeNext);
    },
    async recordFailure(key) {
      await limiter.penalty(key, 1);
    },
    async reset(key) {
      await limiter.delete(key);
    },
  };
}
