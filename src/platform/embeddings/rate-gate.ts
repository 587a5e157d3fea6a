/**
 * The adaptive rate limit of one provider key: how many requests may be in flight with it, and
 * until when it must not be used at all.
 *
 * AIMD, as TCP does with its window: each success raises the concurrency by 1/limit (about one
 * more request per round of `limit` requests), a 429 halves it (at most once per pause: the
 * other requests already in flight that come back 429 too are the same congestion) and pauses
 * the key for what the provider asked (Retry-After), or a backoff when it asked nothing.
 * Requests wait for a free place in arrival order. One gate per key: a tenant whose own key is
 * limited slows down alone; tenants on the operator's key share its limit, as they share the
 * provider's.
 */

export interface RateGateOptions {
  /** Requests in flight at first, and after a long quiet. */
  initialConcurrency: number;
  /** The most it grows to. */
  maxConcurrency: number;
}

export type Release =
  | { kind: "success" }
  /** The provider answered 429: pause the key this long. */
  | { kind: "rate_limited"; pauseMs: number }
  /** Any other failure: says nothing about the key's rate. */
  | { kind: "other" };

/** Thrown by `acquire` when the key cannot be used before the caller's deadline. */
export class RateGateTimeout extends Error {
  override name = "RateGateTimeout";
  constructor(readonly waitMs: number) {
    super(`the provider key is rate limited for ${Math.ceil(waitMs / 1000)} s more`);
  }
}

export interface RateGate {
  /**
   * Waits for a place (the key unpaused, fewer than `limit` in flight); rejects with
   * `RateGateTimeout` as soon as it is clear none comes before `deadline` (epoch ms), or with
   * the signal's reason on abort. Every resolved acquire must be released once.
   */
  acquire(deadline: number, signal?: AbortSignal): Promise<void>;
  release(outcome: Release): void;
  /** For tests and metrics: the current limit and pause. */
  state(): { limit: number; inFlight: number; pausedUntil: number };
}

export function createRateGate(opts: RateGateOptions, now: () => number = Date.now): RateGate {
  let limit = opts.initialConcurrency;
  let inFlight = 0;
  let pausedUntil = 0;
  /** Waiters in arrival order; each re-checks when woken. */
  const waiters: Array<() => void> = [];

  const wakeAll = () => {
    for (const w of waiters.splice(0)) w();
  };

  const free = () => now() >= pausedUntil && inFlight < Math.floor(limit);

  return {
    async acquire(deadline, signal) {
      for (;;) {
        signal?.throwIfAborted();
        // FIFO: a newcomer does not overtake earlier waiters.
        if (waiters.length === 0 && free()) {
          inFlight++;
          return;
        }
        const t = now();
        if (pausedUntil > deadline) throw new RateGateTimeout(pausedUntil - t);
        if (t >= deadline) throw new RateGateTimeout(0);
        await new Promise<void>((resolve, reject) => {
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", onAbort);
            const i = waiters.indexOf(done);
            if (i >= 0) waiters.splice(i, 1);
            resolve();
          };
          const onAbort = () => {
            done();
            reject(signal?.reason);
          };
          // Paused: wake at its end (or the deadline). Full: a release wakes us (or the deadline).
          const until = pausedUntil > t ? Math.min(deadline, pausedUntil) : deadline;
          const timer = setTimeout(done, Math.max(0, until - t));
          signal?.addEventListener("abort", onAbort, { once: true });
          waiters.push(done);
        });
        // Woken: the first waiter in line tries first.
        if (free()) {
          inFlight++;
          // The others look again: a place may be left.
          wakeAll();
          return;
        }
      }
    },

    release(outcome) {
      inFlight = Math.max(0, inFlight - 1);
      const t = now();
      switch (outcome.kind) {
        case "success":
          limit = Math.min(opts.maxConcurrency, limit + 1 / limit);
          break;
        case "rate_limited":
          if (t >= pausedUntil) limit = Math.max(1, limit / 2);
          pausedUntil = Math.max(pausedUntil, t + outcome.pauseMs);
          break;
        case "other":
          break;
      }
      wakeAll();
    },

    state: () => ({ limit, inFlight, pausedUntil }),
  };
}
