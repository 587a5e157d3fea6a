import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { createMetrics } from "../../src/platform/metrics/index.js";
import {
  createFailureThrottle,
  createLimiterFactory,
  FALLBACK_METRIC,
  type FailureThrottle,
  type FailureThrottleOptions,
  type Reservation,
} from "../../src/platform/ratelimit/index.js";
import { TEST_REDIS_URL } from "../fixtures/db.js";

/** A random prefix per run, so runs against the same Redis never see each other's keys. */
const keyPrefix = `tenantrag-test:throttle:${randomBytes(6).toString("hex")}`;
const clients: Redis[] = [];

function redisClient(): Redis {
  const client = new Redis(TEST_REDIS_URL as string, { maxRetriesPerRequest: 1 });
  clients.push(client);
  return client;
}

afterAll(async () => {
  const [first] = clients;
  if (first) {
    const keys = await first.keys(`${keyPrefix}*`);
    if (keys.length > 0) await first.del(...keys);
  }
  await Promise.all(clients.map((c) => c.quit()));
});

type Options = Omit<FailureThrottleOptions, "keyPrefix">;

const adapters: Array<{
  name: string;
  skip: boolean;
  make: (opts: Options) => FailureThrottle;
}> = [
  {
    name: "memory",
    skip: false,
    make: (opts) => createFailureThrottle(createLimiterFactory(), { ...opts, keyPrefix }),
  },
  {
    // A factory with a connection of its own per throttle, as each API process has.
    name: "redis",
    skip: !TEST_REDIS_URL,
    make: (opts) =>
      createFailureThrottle(createLimiterFactory({ redis: redisClient() }), {
        ...opts,
        keyPrefix,
      }),
  },
];

const key = (label: string) => `${label}-${randomBytes(4).toString("hex")}@example.test`;

async function fail(throttle: FailureThrottle, k: string, times: number) {
  for (let i = 0; i < times; i++) expect((await throttle.reserve(k)).granted).toBe(true);
}

function retryAfter(r: Reservation): number {
  if (r.granted) throw new Error("expected a refusal, got a grant");
  return r.retryAfterMs;
}

describe.each(adapters)("FailureThrottle: $name", ({ name, skip, make }) => {
  describe.skipIf(skip)(`${name} store`, () => {
    const WINDOW_S = 60;
    const throttle = skip
      ? (undefined as never)
      : make({ maxFailures: 3, windowSeconds: WINDOW_S });

    it("grants a key it has never seen", async () => {
      expect(await throttle.reserve(key("new"))).toEqual({ granted: true });
    });

    it("grants reservations up to the budget and refuses the next until the window ends", async () => {
      const k = key("user");
      await fail(throttle, k, 3);
      const ms = retryAfter(await throttle.reserve(k));
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThanOrEqual(WINDOW_S * 1000);
      const again = retryAfter(await throttle.reserve(k));
      expect(again).toBeLessThanOrEqual(ms);
    });

    it("grants at most the budget to concurrent reservations", async () => {
      const k = key("burst");
      const answers = await Promise.all(Array.from({ length: 50 }, () => throttle.reserve(k)));
      expect(answers.filter((a) => a.granted)).toHaveLength(3);
      for (const a of answers.filter((x) => !x.granted)) expect(retryAfter(a)).toBeGreaterThan(0);
    });

    it("a release gives one reservation back; earlier failures still count", async () => {
      const k = key("user");
      await fail(throttle, k, 3);
      await throttle.release(k);
      expect((await throttle.reserve(k)).granted).toBe(true);
      expect((await throttle.reserve(k)).granted).toBe(false);
    });

    it("concurrent reserve-then-release pairs never exceed the budget in flight", async () => {
      // Each caller holds its reservation while it "checks a password", as a login does.
      const k = key("pairs");
      let inFlight = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 30 }, async () => {
          const r = await throttle.reserve(k);
          if (!r.granted) return;
          inFlight += 1;
          most = Math.max(most, inFlight);
          await new Promise((res) => setTimeout(res, 20));
          inFlight -= 1;
          await throttle.release(k);
        }),
      );
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(3);
    });

    it("keeps keys independent", async () => {
      const blocked = key("a");
      const other = key("b");
      await fail(throttle, blocked, 3);
      await fail(throttle, other, 2);
      expect((await throttle.reserve(blocked)).granted).toBe(false);
      expect((await throttle.reserve(other)).granted).toBe(true);
    });

    it("grants again by itself when the window has passed", async () => {
      const short = make({ maxFailures: 2, windowSeconds: 1 });
      const k = key("short");
      await fail(short, k, 2);
      const ms = retryAfter(await short.reserve(k));
      expect(ms).toBeLessThanOrEqual(1000);
      await new Promise((r) => setTimeout(r, ms + 150));
      expect((await short.reserve(k)).granted).toBe(true);
    });

    it.skipIf(name !== "redis")(
      "shares state between processes: reservations on one count on the other",
      async () => {
        // Two throttles with two connections, as two API processes behind a load balancer have.
        const a = make({ maxFailures: 3, windowSeconds: WINDOW_S });
        const b = make({ maxFailures: 3, windowSeconds: WINDOW_S });
        const k = key("shared");
        await fail(a, k, 2);
        await fail(b, k, 1);
        await b.release(k);
        expect((await a.reserve(k)).granted).toBe(true);
        expect((await b.reserve(k)).granted).toBe(false);
      },
    );

    it.skipIf(name !== "redis")(
      "grants at most the budget to concurrent reservations from several processes",
      async () => {
        const procs = [0, 1, 2, 3].map(() => make({ maxFailures: 5, windowSeconds: WINDOW_S }));
        const k = key("race");
        const answers = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            (procs[i % procs.length] as FailureThrottle).reserve(k),
          ),
        );
        expect(answers.filter((a) => a.granted)).toHaveLength(5);
      },
    );

    it.skipIf(name !== "redis")(
      "falls back to a per-process budget while Redis is unreachable",
      async () => {
        const dead = new Redis("redis://127.0.0.1:1", {
          maxRetriesPerRequest: 0,
          enableOfflineQueue: false,
          lazyConnect: true,
        });
        dead.on("error", () => {});
        const metrics = createMetrics();
        const t = createFailureThrottle(createLimiterFactory({ redis: dead, metrics }), {
          name: "login_email",
          maxFailures: 2,
          windowSeconds: WINDOW_S,
          keyPrefix,
        });
        const k = key("outage");
        const answers = await Promise.all(Array.from({ length: 10 }, () => t.reserve(k)));
        expect(answers.filter((a) => a.granted)).toHaveLength(2);
        const fallbacks = await metrics.registry.getSingleMetric(FALLBACK_METRIC)?.get();
        expect(fallbacks?.values).toEqual([
          expect.objectContaining({ labels: { limiter: "login_email" }, value: 10 }),
        ]);
        dead.disconnect();
      },
    );
  });
});
