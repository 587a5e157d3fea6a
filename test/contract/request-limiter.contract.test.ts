import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createMetrics, type Metrics } from "../../src/platform/metrics/index.js";
import {
  createLimiterFactory,
  createRequestLimiter,
  FALLBACK_METRIC,
  type LimitDecision,
  type PolicyLimits,
  type RequestLimiter,
} from "../../src/platform/ratelimit/index.js";
import { TEST_REDIS_URL } from "../fixtures/db.js";

/** A random prefix per run, so runs against the same Redis never see each other's keys. */
const keyPrefix = `tenantrag-test:rl:${randomBytes(6).toString("hex")}`;
const clients: Redis[] = [];

function redisClient(url = TEST_REDIS_URL as string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  clients.push(client);
  return client;
}

afterAll(async () => {
  const [first] = clients;
  if (first && TEST_REDIS_URL) {
    const keys = await first.keys(`${keyPrefix}*`);
    if (keys.length > 0) await first.del(...keys);
  }
  await Promise.all(clients.map((c) => c.quit()));
});

const POLICIES = [
  { name: "minute", windowSeconds: 60 },
  { name: "day", windowSeconds: 86_400 },
];

const subject = () => `tenant-${randomBytes(4).toString("hex")}`;

/** Limits by subject, changeable by the test; unknown subjects get `fallback`. */
function limitsTable(fallback: PolicyLimits) {
  const table = new Map<string, PolicyLimits>();
  return {
    set: (s: string, l: PolicyLimits) => table.set(s, l),
    limitsOf: async (s: string) => table.get(s) ?? fallback,
  };
}

type Make = (limitsOf: (s: string) => Promise<PolicyLimits>, metrics?: Metrics) => RequestLimiter;

const adapters: Array<{ name: string; skip: boolean; make: Make }> = [
  {
    name: "memory",
    skip: false,
    make: (limitsOf, metrics) =>
      createRequestLimiter(createLimiterFactory(metrics ? { metrics } : {}), {
        name: "requests",
        keyPrefix,
        policies: POLICIES,
        limitsOf,
      }),
  },
  {
    // Each limiter has a connection of its own, as each API process has.
    name: "redis",
    skip: !TEST_REDIS_URL,
    make: (limitsOf, metrics) =>
      createRequestLimiter(
        createLimiterFactory({ redis: redisClient(), ...(metrics ? { metrics } : {}) }),
        { name: "requests", keyPrefix, policies: POLICIES, limitsOf },
      ),
  },
];

const passed = (ds: LimitDecision[]) => ds.filter((d) => d.allowed).length;

describe.each(adapters)("RequestLimiter: $name", ({ name, skip, make }) => {
  describe.skipIf(skip)(`${name} store`, () => {
    it("of 60 concurrent requests over a per-minute limit of 7, exactly 7 pass", async () => {
      const limiter = make(async () => ({ minute: 7, day: 1000 }));
      const s = subject();
      const all = await Promise.all(Array.from({ length: 60 }, () => limiter.take(s, "search")));
      expect(passed(all)).toBe(7);
      for (const d of all.filter((x) => !x.allowed)) {
        expect(d.violated).toEqual(["minute"]);
        expect(d.retryAfterSeconds).toBeGreaterThan(0);
        expect(d.retryAfterSeconds).toBeLessThanOrEqual(60);
      }
      // The day's budget was spent by the 7 that passed, not by the refused ones.
      const day = (await limiter.peek(s, "search")).policies.find((p) => p.policy === "day");
      expect(day).toMatchObject({ used: 7, remaining: 993, open: true });
    });

    it("of 40 concurrent requests over a per-day limit of 4, exactly 4 pass; the day is named", async () => {
      const limiter = make(async () => ({ minute: 100, day: 4 }));
      const s = subject();
      const all = await Promise.all(Array.from({ length: 40 }, () => limiter.take(s, "ingest")));
      expect(passed(all)).toBe(4);
      const refused = all.find((d) => !d.allowed);
      expect(refused?.violated).toEqual(["day"]);
      expect(refused?.retryAfterSeconds).toBeGreaterThan(86_000);
    });

    it("keeps subjects and buckets apart", async () => {
      const limiter = make(async () => ({ minute: 2, day: 100 }));
      const [a, b] = [subject(), subject()];
      await Promise.all(Array.from({ length: 5 }, () => limiter.take(a, "search")));
      expect((await limiter.take(a, "search")).allowed).toBe(false);
      expect((await limiter.take(a, "management")).allowed).toBe(true);
      expect((await limiter.take(b, "search")).allowed).toBe(true);
    });

    it("peek counts nothing and reports the windows", async () => {
      const limiter = make(async () => ({ minute: 5, day: 50 }));
      const s = subject();
      const fresh = await limiter.peek(s, "chat");
      expect(fresh.policies).toEqual([
        expect.objectContaining({ policy: "minute", used: 0, remaining: 5, open: false }),
        expect.objectContaining({ policy: "day", used: 0, remaining: 50, resetSeconds: 86_400 }),
      ]);
      await limiter.take(s, "chat");
      for (let i = 0; i < 3; i++) await limiter.peek(s, "chat");
      const seen = await limiter.peek(s, "chat");
      expect(seen.allowed).toBe(true);
      expect(seen.policies[0]).toMatchObject({ used: 1, remaining: 4, open: true });
      expect(seen.policies[0]?.resetSeconds).toBeLessThanOrEqual(60);
    });

    it("a lowered limit applies to the open window once the cached limits are invalidated", async () => {
      const table = limitsTable({ minute: 10, day: 100 });
      const limiter = make(table.limitsOf);
      const s = subject();
      for (let i = 0; i < 4; i++) expect((await limiter.take(s, "search")).allowed).toBe(true);
      table.set(s, { minute: 3, day: 100 });
      // Still cached: the old limit holds until the owner of the change invalidates it.
      expect((await limiter.take(s, "search")).allowed).toBe(true);
      limiter.invalidate(s);
      const refused = await limiter.take(s, "search");
      expect(refused.allowed).toBe(false);
      expect(refused.policies[0]).toMatchObject({ limit: 3, used: 3, remaining: 0 });
    });

    it("concurrent first requests of a subject read its limits once", async () => {
      let reads = 0;
      const limiter = make(async () => {
        reads += 1;
        await new Promise((r) => setTimeout(r, 20));
        return { minute: 100, day: 1000 };
      });
      await Promise.all(Array.from({ length: 20 }, () => limiter.take(subject(), "search")));
      expect(reads).toBe(20);
      const s = subject();
      reads = 0;
      await Promise.all(Array.from({ length: 20 }, () => limiter.take(s, "search")));
      expect(reads).toBe(1);
    });

    it.skipIf(name !== "redis")(
      "two processes share one limit exactly: 100 concurrent requests through 2 connections pass 9",
      async () => {
        const limits = async () => ({ minute: 9, day: 1000 });
        const procs = [make(limits), make(limits)];
        const s = subject();
        const all = await Promise.all(
          Array.from({ length: 100 }, (_, i) => (procs[i % 2] as RequestLimiter).take(s, "search")),
        );
        expect(passed(all)).toBe(9);
      },
    );

    it.skipIf(name !== "redis")(
      "Redis unreachable: limits per process still hold, counted in the metric, logged once",
      async () => {
        const dead = new Redis("redis://127.0.0.1:1", {
          maxRetriesPerRequest: 0,
          enableOfflineQueue: false,
          lazyConnect: true,
        });
        dead.on("error", () => {});
        const lines: Array<{ level: number; msg: string }> = [];
        const logger = pino(
          { level: "info" },
          new Writable({
            write(chunk, _enc, done) {
              lines.push(JSON.parse(chunk.toString()));
              done();
            },
          }),
        );
        const metrics = createMetrics();
        const limiter = createRequestLimiter(
          createLimiterFactory({ redis: dead, metrics, logger }),
          {
            name: "requests",
            keyPrefix,
            policies: POLICIES,
            limitsOf: async () => ({ minute: 3, day: 1000 }),
          },
        );
        const s = subject();
        const all = await Promise.all(Array.from({ length: 20 }, () => limiter.take(s, "search")));
        expect(passed(all)).toBe(3);
        const metric = await metrics.registry.getSingleMetric(FALLBACK_METRIC)?.get();
        // 20 minute hits, 3 day hits for the requests that passed, 17 day reads for the refused.
        expect(metric?.values).toEqual([
          expect.objectContaining({ labels: { limiter: "requests" }, value: 40 }),
        ]);
        expect(lines.filter((l) => l.msg.includes("Redis unreachable"))).toHaveLength(1);
        dead.disconnect();
      },
    );
  });
});
