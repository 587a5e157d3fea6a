import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRollups, floorTo, type Rollups } from "../../src/modules/usage/rollups.js";
import type { Period, RollupRow } from "../../src/modules/usage/rollups.store.js";
import { deserializeSketch } from "../../src/modules/usage/sketch.js";
import { createTestClock } from "../../src/platform/clock.js";
import type { Db } from "../../src/platform/db/index.js";
import { backends, type TestDb } from "../fixtures/db.js";
import {
  type ApiCallSpec,
  insertApiCalls,
  insertTenant,
  insertUsageEvents,
  mixedUsage,
  prng,
  type UsageEventSpec,
  unitsToUsd,
} from "../fixtures/usage.js";

const noVersions = { versionCountsByHour: async () => [] };

interface Expected {
  total: number;
  successful: number;
  failed: number;
  rateLimited: number;
  quotaExceeded: number;
  errors: number;
  latencySum: number;
  embeddings: number;
  embeddingTokens: number;
  searches: number;
  cost: bigint;
  costPlatform: bigint;
  costTenant: bigint;
  perSecond: Map<number, number>;
}

const empty = (): Expected => ({
  total: 0,
  successful: 0,
  failed: 0,
  rateLimited: 0,
  quotaExceeded: 0,
  errors: 0,
  latencySum: 0,
  embeddings: 0,
  embeddingTokens: 0,
  searches: 0,
  cost: 0n,
  costPlatform: 0n,
  costTenant: 0n,
  perSecond: new Map(),
});

/** The figures of every window, computed from the raw specs the way a human would. */
function expected(calls: ApiCallSpec[], events: UsageEventSpec[], period: Period) {
  const out = new Map<number, Expected>();
  const get = (t: Date) => {
    const k = floorTo(period, t).getTime();
    let e = out.get(k);
    if (!e) {
      e = empty();
      out.set(k, e);
    }
    return e;
  };
  for (const c of calls) {
    const e = get(c.occurredAt);
    e.total++;
    if (c.status < 400) e.successful++;
    else e.failed++;
    if (c.status === 429 && c.errorCode === "rate_limit.exceeded") e.rateLimited++;
    if (c.errorCode === "quota.exceeded") e.quotaExceeded++;
    if (c.status >= 500) e.errors++;
    e.latencySum += c.latencyMs;
    const s = Math.floor(c.occurredAt.getTime() / 1000);
    e.perSecond.set(s, (e.perSecond.get(s) ?? 0) + 1);
  }
  for (const ev of events) {
    const e = get(ev.occurredAt);
    if (ev.metric === "embedding_tokens") {
      e.embeddings += ev.items ?? 1;
      e.embeddingTokens += ev.quantity;
    }
    if (ev.metric === "search_queries") e.searches += ev.quantity;
    if (ev.metric !== "documents_stored" && ev.metric !== "storage_bytes") {
      const c = ev.costUnits ?? 0n;
      e.cost += c;
      if ((ev.payer ?? "platform") === "platform") e.costPlatform += c;
      else e.costTenant += c;
    }
  }
  return out;
}

function expectRowMatches(row: RollupRow, e: Expected) {
  expect(row.api_calls_total).toBe(e.total);
  expect(row.api_calls_successful).toBe(e.successful);
  expect(row.api_calls_failed).toBe(e.failed);
  expect(row.api_calls_rate_limited).toBe(e.rateLimited);
  expect(row.quota_exceeded_count).toBe(e.quotaExceeded);
  expect(row.error_count).toBe(e.errors);
  expect(row.latency_sum_ms).toBeCloseTo(e.latencySum, 3);
  expect(row.embeddings_generated).toBe(e.embeddings);
  expect(row.embedding_tokens).toBe(e.embeddingTokens);
  expect(row.total_tokens).toBe(e.embeddingTokens);
  expect(row.searches).toBe(e.searches);
  expect(row.cost_usd).toBe(unitsToUsd(e.cost));
  expect(row.cost_platform_usd).toBe(unitsToUsd(e.costPlatform));
  expect(row.cost_tenant_usd).toBe(unitsToUsd(e.costTenant));
  expect(row.peak_qps).toBe(Math.max(0, ...e.perSecond.values()));
  if (e.total > 0) expect(row.error_rate).toBeCloseTo(e.errors / e.total, 12);
}

/** The exact value at rank q·(n−1) (the rank DDSketch answers for). */
function exactQuantile(sorted: number[], q: number) {
  return sorted[Math.floor(q * (sorted.length - 1))] as number;
}

describe.each(backends)("usage roll-ups ($name)", (backend) => {
  let t: TestDb;
  let db: Db;
  let rollups: Rollups;
  const clock = createTestClock(new Date("2027-01-20T12:00:00Z"));
  beforeAll(async () => {
    t = await backend.open();
    db = t.db;
    rollups = createRollups({
      db,
      clock,
      documents: noVersions,
      logger: pino({ level: "silent" }),
    });
  });
  afterAll(() => t.dispose());

  it("rolls 10 000 mixed rows up to exact totals per hour, day and month, across a year end", async () => {
    const a = await insertTenant(db, "A");
    const b = await insertTenant(db, "B");
    const from = new Date("2026-12-30T00:00:00Z");
    const to = new Date("2027-01-02T06:00:00Z");
    const dataA = mixedUsage(a, 8000, from, to, 7);
    const dataB = mixedUsage(b, 2000, from, to, 8);
    await insertApiCalls(db, [...dataA.calls, ...dataB.calls]);
    await insertUsageEvents(db, [...dataA.events, ...dataB.events]);

    await rollups.recompute(a, from, to);
    await rollups.recompute(b, from, to);
    for (const period of ["hour", "day", "month"] as const) {
      const rows = await rollups.read(a, period, floorTo(period, from), to);
      const exp = expected(dataA.calls, dataA.events, period);
      expect(rows.map((r) => r.period_start.getTime()).sort()).toEqual([...exp.keys()].sort());
      for (const row of rows)
        expectRowMatches(row, exp.get(row.period_start.getTime()) as Expected);
    }
    // The months of A add up to A's raw rows, and to nothing of B's.
    const months = await rollups.read(a, "month", new Date("2026-12-01Z"), new Date("2027-02-01Z"));
    expect(months.map((m) => m.period_start.toISOString())).toEqual([
      "2026-12-01T00:00:00.000Z",
      "2027-01-01T00:00:00.000Z",
    ]);
    expect(months.reduce((s, m) => s + m.api_calls_total, 0)).toBe(dataA.calls.length);
    const bMonths = await rollups.read(
      b,
      "month",
      new Date("2026-12-01Z"),
      new Date("2027-02-01Z"),
    );
    expect(bMonths.reduce((s, m) => s + m.api_calls_total, 0)).toBe(dataB.calls.length);
  });

  it("recomputing a window gives identical rows and writes nothing", async () => {
    const a = await insertTenant(db);
    const from = new Date("2027-01-05T00:00:00Z");
    const to = new Date("2027-01-07T00:00:00Z");
    const data = mixedUsage(a, 2000, from, to, 11);
    await insertApiCalls(db, data.calls);
    await insertUsageEvents(db, data.events);
    expect(await rollups.recompute(a, from, to)).toBeGreaterThan(0);
    const first = await Promise.all(
      (["hour", "day", "month"] as const).map((p) =>
        rollups.read(a, p, floorTo("month", from), to),
      ),
    );
    const computedAt = await db.query<{ c: Date }>(
      "select max(computed_at) as c from usage_rollups where tenant_id = $1",
      [a],
    );
    expect(await rollups.recompute(a, from, to)).toBe(0);
    const second = await Promise.all(
      (["hour", "day", "month"] as const).map((p) =>
        rollups.read(a, p, floorTo("month", from), to),
      ),
    );
    expect(second).toEqual(first);
    const again = await db.query<{ c: Date }>(
      "select max(computed_at) as c from usage_rollups where tenant_id = $1",
      [a],
    );
    expect(again).toEqual(computedAt);
  });

  it("concurrent recomputations and job passes of one tenant end in the rows one recomputation gives", async () => {
    const a = await insertTenant(db);
    const from = new Date("2027-01-08T00:00:00Z");
    const to = new Date("2027-01-09T00:00:00Z");
    const data = mixedUsage(a, 1500, from, to, 13);
    await insertApiCalls(db, data.calls);
    await insertUsageEvents(db, data.events);
    await Promise.all([
      rollups.recompute(a, from, to),
      rollups.recompute(a, new Date("2027-01-08T06:00:00Z"), new Date("2027-01-08T18:00:00Z")),
      rollups.run(),
      rollups.recompute(a, from, to),
    ]);
    const read = () =>
      Promise.all(
        (["hour", "day", "month"] as const).map((p) =>
          rollups.read(a, p, floorTo("month", from), to),
        ),
      );
    const together = await read();
    expect(await rollups.recompute(a, from, to)).toBe(0);
    expect(await read()).toEqual(together);
    const [day] = together[1] ?? [];
    expect(day?.api_calls_total).toBe(data.calls.length);
  });

  it("splits 23:59:59.999 on 31 December and 00:00 on 1 January into their own hour, day, month", async () => {
    const a = await insertTenant(db);
    const last = new Date("2026-12-31T23:59:59.999Z");
    const first = new Date("2027-01-01T00:00:00.000Z");
    await insertApiCalls(db, [
      { tenantId: a, occurredAt: last, status: 200, latencyMs: 10 },
      { tenantId: a, occurredAt: first, status: 500, latencyMs: 20, errorCode: "internal" },
    ]);
    await insertUsageEvents(db, [
      { tenantId: a, metric: "embedding_tokens", quantity: 100, occurredAt: last, costUnits: 3n },
      { tenantId: a, metric: "embedding_tokens", quantity: 5, occurredAt: first, costUnits: 1n },
    ]);
    await rollups.recompute(a, new Date("2026-12-31T23:00:00Z"), new Date("2027-01-01T01:00:00Z"));
    for (const [period, a0, a1] of [
      ["hour", "2026-12-31T23:00:00.000Z", "2027-01-01T00:00:00.000Z"],
      ["day", "2026-12-31T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
      ["month", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
    ] as const) {
      const rows = await rollups.read(a, period, new Date("2026-01-01Z"), new Date("2028-01-01Z"));
      expect(rows.map((r) => r.period_start.toISOString())).toEqual([a0, a1]);
      expect(
        rows.map((r) => [r.api_calls_total, r.error_count, r.embedding_tokens, r.cost_usd]),
      ).toEqual([
        [1, 0, 100, "0.0000000003"],
        [1, 1, 5, "0.0000000001"],
      ]);
      expect(rows[0]?.period_end.toISOString()).toBe(a1);
    }
  });

  it("folds rows flushed late into their window on the next run", async () => {
    const a = await insertTenant(db);
    const hour = new Date("2027-01-10T08:00:00Z");
    await insertApiCalls(db, [
      { tenantId: a, occurredAt: new Date("2027-01-10T08:15:00Z"), status: 200, latencyMs: 5 },
    ]);
    await rollups.run();
    const before = await rollups.read(a, "hour", hour, new Date("2027-01-10T09:00:00Z"));
    expect(before.map((r) => r.api_calls_total)).toEqual([1]);
    // A call of that hour written only now (a buffer flushed after a restart), and a billable event.
    await insertApiCalls(db, [
      {
        tenantId: a,
        occurredAt: new Date("2027-01-10T08:59:00Z"),
        status: 429,
        latencyMs: 1,
        errorCode: "rate_limit.exceeded",
      },
    ]);
    await insertUsageEvents(db, [
      {
        tenantId: a,
        metric: "search_queries",
        quantity: 1,
        occurredAt: new Date("2027-01-10T08:30:00Z"),
      },
    ]);
    const pass = await rollups.run();
    expect(pass.windows).toBeGreaterThanOrEqual(1);
    const [h] = await rollups.read(a, "hour", hour, new Date("2027-01-10T09:00:00Z"));
    expect([h?.api_calls_total, h?.api_calls_rate_limited, h?.searches]).toEqual([2, 1, 1]);
    const [d] = await rollups.read(a, "day", new Date("2027-01-10Z"), new Date("2027-01-11Z"));
    expect(d?.api_calls_total).toBe(2);
    const [m] = await rollups.read(a, "month", new Date("2027-01-01Z"), new Date("2027-02-01Z"));
    expect(m?.api_calls_total).toBe(2);
  });

  it("merges hourly sketches: a day's p95 is the p95 of its calls, not an average of hours", async () => {
    const a = await insertTenant(db);
    const calls: ApiCallSpec[] = [];
    // Hour 1: 2 000 fast calls. Hour 2: 200 slow ones. Averaging the hourly p95s gives ~505 ms;
    // the day's real p95 (rank 2 089 of 2 200) is a slow call, ~1 000 ms.
    for (let i = 0; i < 2000; i++)
      calls.push({
        tenantId: a,
        occurredAt: new Date(Date.UTC(2027, 0, 12, 1, 0, i % 3600)),
        status: 200,
        latencyMs: 10,
      });
    for (let i = 0; i < 200; i++)
      calls.push({
        tenantId: a,
        occurredAt: new Date(Date.UTC(2027, 0, 12, 2, 0, i)),
        status: 200,
        latencyMs: 1000 + i,
      });
    // Hour 3: a wide skewed distribution, checked against exact quantiles.
    const rnd = prng(99);
    const wide: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const v = Math.round(Math.exp(rnd() * 9) * 1000) / 1000;
      wide.push(v);
      calls.push({
        tenantId: a,
        occurredAt: new Date(Date.UTC(2027, 0, 12, 3, 0, i % 3600)),
        status: 200,
        latencyMs: v,
      });
    }
    await insertApiCalls(db, calls);
    await rollups.recompute(a, new Date("2027-01-12T00:00:00Z"), new Date("2027-01-13T00:00:00Z"));
    const hours = await rollups.read(a, "hour", new Date("2027-01-12Z"), new Date("2027-01-13Z"));
    const near = (got: number | null | undefined, exact: number) =>
      expect(Math.abs((got as number) - exact) / exact).toBeLessThanOrEqual(0.0101);
    expect(hours).toHaveLength(3);
    near(hours[0]?.latency_p95_ms, 10);
    near(
      hours[1]?.latency_p95_ms,
      exactQuantile(
        Array.from({ length: 200 }, (_, i) => 1000 + i),
        0.95,
      ),
    );
    const sortedWide = [...wide].sort((x, y) => x - y);
    for (const [q, got] of [
      [0.95, hours[2]?.latency_p95_ms],
      [0.99, hours[2]?.latency_p99_ms],
    ] as const) {
      const exact = exactQuantile(sortedWide, q);
      expect(Math.abs((got as number) - exact) / exact).toBeLessThanOrEqual(0.0101);
    }
    const [day] = await rollups.read(a, "day", new Date("2027-01-12Z"), new Date("2027-01-13Z"));
    const all = calls.map((c) => c.latencyMs).sort((x, y) => x - y);
    for (const [q, got] of [
      [0.95, day?.latency_p95_ms],
      [0.99, day?.latency_p99_ms],
    ] as const) {
      const exact = exactQuantile(all, q);
      expect(Math.abs((got as number) - exact) / exact).toBeLessThanOrEqual(0.0101);
    }
    // The first two hours alone: the merged p95 is a slow call; the average of p95s is not.
    const firstTwo = [...calls.slice(0, 2200)].map((c) => c.latencyMs).sort((x, y) => x - y);
    const averaged = ((hours[0]?.latency_p95_ms ?? 0) + (hours[1]?.latency_p95_ms ?? 0)) / 2;
    expect(exactQuantile(firstTwo, 0.95)).toBeGreaterThan(1000);
    expect(averaged).toBeLessThan(0.7 * exactQuantile(firstTwo, 0.95));
    // The day's sketch holds every call once.
    expect(deserializeSketch(day?.latency_sketch as Uint8Array).count).toBe(calls.length);
    expect(day?.latency_avg_ms).toBeCloseTo(all.reduce((s, v) => s + v, 0) / all.length, 2);
  });

  it("keeps gauges as levels: the last snapshot of the window, never a sum", async () => {
    const a = await insertTenant(db);
    await insertUsageEvents(db, [
      {
        tenantId: a,
        metric: "documents_stored",
        quantity: 3,
        occurredAt: new Date("2027-01-14T01:00:00Z"),
      },
      {
        tenantId: a,
        metric: "documents_stored",
        quantity: 5,
        occurredAt: new Date("2027-01-14T01:30:00Z"),
      },
      {
        tenantId: a,
        metric: "documents_stored",
        quantity: 4,
        occurredAt: new Date("2027-01-14T05:00:00Z"),
      },
      {
        tenantId: a,
        metric: "storage_bytes",
        quantity: 1000,
        occurredAt: new Date("2027-01-14T02:00:00Z"),
      },
    ]);
    await rollups.recompute(a, new Date("2027-01-14Z"), new Date("2027-01-15Z"));
    const hours = await rollups.read(a, "hour", new Date("2027-01-14Z"), new Date("2027-01-15Z"));
    expect(hours.map((h) => [h.documents_stored, h.storage_bytes])).toEqual([
      [5, null],
      [null, 1000],
      [4, null],
    ]);
    const [day] = await rollups.read(a, "day", new Date("2027-01-14Z"), new Date("2027-01-15Z"));
    expect([day?.documents_stored, day?.storage_bytes]).toEqual([4, 1000]);
  });

  it("counts ingested and failed versions from the ingestion module", async () => {
    const a = await insertTenant(db);
    const withVersions = createRollups({
      db,
      clock,
      logger: pino({ level: "silent" }),
      documents: {
        async versionCountsByHour(ctx, from) {
          expect(ctx.tenantId).toBe(a);
          return [{ hour: from, ingested: 3, failed: 1 }];
        },
      },
    });
    await withVersions.recompute(
      a,
      new Date("2027-01-16T04:00:00Z"),
      new Date("2027-01-16T05:00:00Z"),
    );
    const [m] = await withVersions.read(
      a,
      "month",
      new Date("2027-01-01Z"),
      new Date("2027-02-01Z"),
    );
    expect([m?.documents_ingested, m?.documents_failed]).toEqual([3, 1]);
  });
});
