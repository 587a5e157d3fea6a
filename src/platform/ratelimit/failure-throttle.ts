import type { LimiterFactory } from "./counter.js";

/** The answer to a reservation: granted, or refused until the window has passed. */
export type Reservation = { granted: true } | { granted: false; retryAfterMs: number };

/**
 * A budget of failures per key and window, e.g. failed logins per email. An attempt that may
 * fail is *reserved* before it is tried, so that concurrent attempts cannot all pass a check
 * made before any of them has failed; a reservation that turned out a success is released.
 * Built on the factory's window counters (counter.ts): memory in embedded mode, Redis (shared by
 * every API process, per-process while Redis is down) in server mode.
 *
 * A test cannot move a window with a test clock (see WindowCounter); it can only wait one out
 * (short `windowSeconds`) or watch budgets refuse.
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
  /** The name the fallback metric and logs give this throttle. */
  name?: string;
}

export function createFailureThrottle(
  limiters: LimiterFactory,
  opts: FailureThrottleOptions,
): FailureThrottle {
  const counter = limiters.windowCounter({
    name: opts.name ?? opts.keyPrefix,
    windowSeconds: opts.windowSeconds,
    keyPrefix: opts.keyPrefix,
  });
  return {
    async reserve(key) {
      const { count, msBeforeReset } = await counter.hit(key);
      if (count <= opts.maxFailures) return { granted: true };
      return { granted: false, retryAfterMs: Math.max(1, msBeforeReset) };
    },
    release: (key) => counter.giveBack(key),
  };
}
