import type { Redis } from "ioredis";
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from "rate-limiter-flexible";

/** The answer to a reservation: granted, or refused until the window has passed. */
export type Reservation = { granted: true } | { granted: false; retryAfterMs: number };

/**
 * A budget of failures per key and window, e.g. failed logins per email. An attempt that may
 * fail is *reserved* before it is tried, so that concurrent attempts cannot all pass a check
 * made before any of them has failed; a reservation that turned out a success is released.
 * Memory-backed in embedded mode (one process); Redis-backed when a Redis client is given
 * (shared by every API process).
 *
 * Windows run on the store's time, not on the application's Clock (platform/clock.ts):
 * rate-limiter-flexible takes no clock; its memory store reads `Date.now()` and expires keys
 * with timers, and its Redis store lets Redis expire them. A test cannot move a window with a
 * test clock; it can only wait one out (short `windowSeconds`) or watch budgets refuse.
 */
export interface FailureThrottle {
  /**
   * Takes one failure from `key`'s budget for the current window. Atomic: of any number of
   * calls at once, across every process sharing the store, at most the budget left is granted;
   * the rest are refused with the time until the window ends. Refused calls are counted too,
   * so while a key is flooded a release does not reopen its budget. The window starts with the
   * first reservation of a key and does not slide.
   */
  reserve(key: string): Promise<Reservation>;
  /**
   * Gives one granted reservation back: the attempt succeeded, so it is not a failure. Failures
   * recorded before it still count until their window ends (a success does not erase them, or a
   * guesser could refill the budget by logging in with their own account).
   */
  release(key: string): Promise<void>;
}

export interface FailureThrottleOptions {
  /** Failures allowed inside the window; further reservations are refused. */
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
  // throttling to per-process instead of failing every login. Redis's consume is one Lua
  // script (increment, then read), so concurrent reservations are counted exactly.
  const limiter: RateLimiterAbstract = opts.redis
    ? new RateLimiterRedis({
        ...limiterOpts,
        storeClient: opts.redis,
        insuranceLimiter: new RateLimiterMemory(limiterOpts),
      })
    : new RateLimiterMemory(limiterOpts);
  return {
    async reserve(key) {
      try {
        await limiter.consume(key, 1);
        return { granted: true };
      } catch (err) {
        // The library rejects with its result object when the budget is spent, and with an
        // Error when neither store answered: that is not a refusal, so it propagates.
        if (!(err instanceof RateLimiterRes)) throw err;
        return { granted: false, retryAfterMs: Math.max(1, err.msBeforeNext) };
      }
    },
    async release(key) {
      await limiter.reward(key, 1);
    },
  };
}
