import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import {
  createFailureThrottle,
  type FailureThrottle,
  type FailureThrottleOptions,
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

type Options = Omit<FailureThrottleOptions, "keyPrefix" | "redis">;

const adapters: Array<{
  name: string;
  skip: boolean;
  make: (opts: Options) => FailureThrottle;
}> = [
  { name: "memory", skip: false, make: (opts) => createFailureThrottle({ ...opts, keyPrefix }) },
  {
    name: "redis",
    skip: !TEST_REDIS_URL,
    make: (opts) => createFailureThrottle({ ...opts, keyPrefix, redis: redisClient() }),
  },
];

const key = (label: string) => `${label}-${randomBytes(4).toString("hex")}@example.test`;

async function fail(throttle: FailureThrottle, k: string, times: number) {
  for (let i = 0; i < times; i++) await throttle.recordFailure(k);
}

describe.each(adapters)("FailureThrottle: $name", ({ name, skip, make }) => {
  describe.skipIf(skip)(`${name} store`, () => {
    const WINDOW_S = 60;
    const throttle = skip
      ? (undefined as never)
      : make({ maxFailures: 3, windowSeconds: WINDOW_S });

    it("does not block a key it has never seen", async () => {
      expect(await throttle.blockedForMs(key("new"))).toBe(0);
    });

    it("allows failures up to the limit and blocks once it is reached", async () => {
      const k = key("user");
      await fail(throttle, k, 2);
      expect(await throttle.blockedForMs(k)).toBe(0);
      await throttle.recordFailure(k);
      const ms = await throttle.blockedForMs(k);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThanOrEqual(WINDOW_S * 1000);
      // Asking does not count as a failure nor change the answer much.
      const again = await throttle.blockedForMs(k);
      expect(again).toBeGreaterThan(0);
      expect(again).toBeLessThanOrEqual(ms);
    });

    it("stays blocked while failures keep coming", async () => {
      const k = key("user");
      await fail(throttle, k, 5);
      expect(await throttle.blockedForMs(k)).toBeGreaterThan(0);
    });

    it("reset unblocks the key and starts its count again", async () => {
      const k = key("user");
      await fail(throttle, k, 3);
      expect(await throttle.blockedForMs(k)).toBeGreaterThan(0);
      await throttle.reset(k);
      expect(await throttle.blockedForMs(k)).toBe(0);
      await fail(throttle, k, 2);
      expect(await throttle.blockedForMs(k)).toBe(0);
    });

    it("reset of an unknown key is harmless", async () => {
      await expect(throttle.reset(key("ghost"))).resolves.toBeUndefined();
    });

    it("keeps keys independent", async () => {
      const blocked = key("a");
      const other = key("b");
      await fail(throttle, blocked, 3);
      await fail(throttle, other, 2);
      expect(await throttle.blockedForMs(blocked)).toBeGreaterThan(0);
      expect(await throttle.blockedForMs(other)).toBe(0);
      await throttle.reset(other);
      expect(await throttle.blockedForMs(blocked)).toBeGreaterThan(0);
    });

    it("unblocks by itself when the window has passed", async () => {
      const short = make({ maxFailures: 2, windowSeconds: 1 });
      const k = key("short");
      await fail(short, k, 2);
      const ms = await short.blockedForMs(k);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThanOrEqual(1000);
      await new Promise((r) => setTimeout(r, ms + 150));
      expect(await short.blockedForMs(k)).toBe(0);
    });

    it.skipIf(name !== "redis")(
      "shares state between processes: failures seen by one block on the other",
      async () => {
        // Two throttles with two connections, as two API processes behind a load balancer have.
        const a = make({ maxFailures: 3, windowSeconds: WINDOW_S });
        const b = make({ maxFailures: 3, windowSeconds: WINDOW_S });
        const k = key("shared");
        await a.recordFailure(k);
        await b.recordFailure(k);
        expect(await a.blockedForMs(k)).toBe(0);
        await a.recordFailure(k);
        expect(await b.blockedForMs(k)).toBeGreaterThan(0);
        await b.reset(k);
        expect(await a.blockedForMs(k)).toBe(0);
      },
    );

    it.skipIf(name !== "redis")("counts concurrent failures atomically", async () => {
      const a = make({ maxFailures: 20, windowSeconds: WINDOW_S });
      const b = make({ maxFailures: 20, windowSeconds: WINDOW_S });
      const k = key("race");
      await Promise.all(Array.from({ length: 19 }, (_, i) => (i % 2 ? a : b).recordFailure(k)));
      expect(await a.blockedForMs(k)).toBe(0);
      await b.recordFailure(k);
      expect(await a.blockedForMs(k)).toBeGreaterThan(0);
    });
  });
});
