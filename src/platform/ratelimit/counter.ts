import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { Counter } from "prom-client";
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterRes } from "rate-limiter-flexible";
import type { Metrics } from "../metrics/index.js";

/** A key's count in its current window, and how long until that window ends. */
export interface WindowState {
  count: number;
  msBeforeReset: number;
}

/**
 * Fixed-window counters per key: the one mechanism under every limit of the platform (request
 * rate limits, login throttling). A window starts with the first hit of a key and lasts
 * `windowSeconds`; it does not slide.
 *
 * Windows run on the store's time, not on the application's Clock (platform/clock.ts):
 * rate-limiter-flexible takes no clock; its memory store reads `Date.now()` and expires keys with
 * timers, and its Redis store lets Redis expire them.
 */
export interface WindowCounter {
  /**
   * Counts one hit of `key` and returns the count including it. Atomic: of any number of hits at
   * once, across every process sharing the store, each sees a different count (Redis: one Lua
   * script, increment then read), so "granted when count ≤ limit" grants exactly the limit.
   */
  hit(key: string): Promise<WindowState>;
  /** The key's current window without counting anything; null when no window is open. */
  peek(key: string): Promise<WindowState | null>;
  /**
   * Takes one hit back (the counted attempt turned out not to count, e.g. a login that
   * succeeded). Inside the window it was counted in; a window that ended meanwhile is not
   * reopened below zero by more than this one hit.
   */
  giveBack(key: string): Promise<void>;
}

export interface WindowCounterOptions {
  /** What the counter limits, for the fallback metric's `limiter` label and the logs. */
  name: string;
  windowSeconds: number;
  /** Namespace of the keys in Redis (and in memory). */
  keyPrefix: string;
}

/** Makes every counter of a process: the one place that picks memory or Redis. */
export interface LimiterFactory {
  windowCounter(opts: WindowCounterOptions): WindowCounter;
  /** Whether counters are shared through Redis (server mode) or kept in this process. */
  readonly store: "memory" | "redis";
}

export const FALLBACK_METRIC = "tenantrag_ratelimit_fallback_total";

/**
 * The factory over Redis when `redis` is given, else memory.
 *
 * With Redis, each counter has an insurance counter in memory: when Redis does not answer (not
 * connected, or a command fails), the hit is counted in this process instead, so an outage
 * degrades limits to per-process rather than failing every request or letting every request
 * through. Each such hit increments `tenantrag_ratelimit_fallback_total{limiter}`; the switch to
 * per-process counting is logged once (warn), and the return to Redis once (info), never once
 * per request. Commands are not queued while Redis is away (`rejectIfRedisNotReady`): a request
 * does not wait out reconnection attempts. Only the first connection is waited for (at most
 * FIRST_CONNECT_WAIT_MS), so that a process just started shares its limits from its first request.
 */
export function createLimiterFactory(
  deps: { redis?: Redis | undefined; metrics?: Metrics; logger?: Logger } = {},
): LimiterFactory {
  const { redis, logger } = deps;
  const fallbacks = fallbackCounter(deps.metrics);
  let degraded = false;
  const onFallback = (name: string, err: unknown) => {
    fallbacks?.inc({ limiter: name });
    if (degraded) return;
    degraded = true;
    logger?.warn(
      { err, limiter: name },
      "rate limits: Redis unreachable; counting per process until it answers again",
    );
  };
  const onRedisAnswer = () => {
    if (!degraded) return;
    degraded = false;
    logger?.info("rate limits: Redis answers again; limits are shared by every process");
  };

  const firstConnect = redis ? firstConnection(redis) : undefined;

  return {
    store: redis ? "redis" : "memory",
    windowCounter(opts) {
      const limiterOpts = {
        // The counters never refuse by themselves: callers compare counts with limits that vary
        // per key (a tenant's own), so `points` is only an upper bound for the library.
        points: Number.MAX_SAFE_INTEGER,
        duration: opts.windowSeconds,
        keyPrefix: opts.keyPrefix,
      };
      const memory = new RateLimiterMemory(limiterOpts);
      if (!redis) return counterOver(memory);
      const shared = counterOver(
        new RateLimiterRedis({ ...limiterOpts, storeClient: redis, rejectIfRedisNotReady: true }),
      );
      const insurance = counterOver(memory);
      // Each operation tries Redis and, when Redis fails (an Error, never a count), counts here.
      const guarded =
        <A extends unknown[], R>(op: (...a: A) => Promise<R>, fallback: (...a: A) => Promise<R>) =>
        async (...args: A): Promise<R> => {
          let result: R;
          try {
            await firstConnect?.();
            result = await op(...args);
          } catch (err) {
            onFallback(opts.name, err);
            return fallback(...args);
          }
          onRedisAnswer();
          return result;
        };
      return {
        hit: guarded(shared.hit, insurance.hit),
        peek: guarded(shared.peek, insurance.peek),
        giveBack: guarded(shared.giveBack, insurance.giveBack),
      };
    },
  };
}

const FIRST_CONNECT_WAIT_MS = 2000;

/**
 * Resolves at once when the client is ready or has been ready before (a later disconnection is
 * an outage: the insurance counts); before its first connection, waits for it, for a bounded time.
 */
function firstConnection(redis: Redis): () => Promise<void> {
  let everReady = redis.status === "ready";
  let waiting: Promise<void> | undefined;
  if (!everReady) {
    redis.once("ready", () => {
      everReady = true;
    });
  }
  return () => {
    if (everReady || !["wait", "connecting", "connect"].includes(redis.status)) {
      return Promise.resolve();
    }
    waiting ??= new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, FIRST_CONNECT_WAIT_MS);
      timer.unref();
      redis.once("ready", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return waiting;
  };
}

function counterOver(limiter: RateLimiterMemory | RateLimiterRedis): WindowCounter {
  const state = (res: RateLimiterRes): WindowState => ({
    count: res.consumedPoints,
    msBeforeReset: Math.max(0, res.msBeforeNext),
  });
  return {
    // `penalty` adds points without ever refusing: the caller decides with the count.
    hit: async (key) => state(await limiter.penalty(key, 1)),
    async peek(key) {
      const res = await limiter.get(key);
      return res ? state(res) : null;
    },
    async giveBack(key) {
      await limiter.reward(key, 1);
    },
  };
}

/** One counter per registry: two factories of one context (tests) share it. */
function fallbackCounter(metrics: Metrics | undefined): Counter<"limiter"> | undefined {
  if (!metrics) return undefined;
  const existing = metrics.registry.getSingleMetric(FALLBACK_METRIC);
  if (existing) return existing as Counter<"limiter">;
  return new Counter({
    name: FALLBACK_METRIC,
    help: "Rate-limit and throttle operations counted in this process because Redis did not answer",
    labelNames: ["limiter"],
    registers: [metrics.registry],
  });
}
