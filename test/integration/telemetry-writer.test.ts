import { randomUUID } from "node:crypto";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiCall, createTelemetry, type Telemetry } from "../../src/modules/usage/index.js";
import type { Db } from "../../src/platform/db/index.js";
import { backends, type TestDb } from "../fixtures/db.js";
import { faultyDb } from "../fixtures/faulty-db.js";

const INSERTS = /insert into "?api_calls/i;

function call(tenantId: string, i = 0): ApiCall {
  return {
    tenantId,
    occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i % 60)),
    requestId: `req-${i}`,
    method: "GET",
    route: "/api/documents/:id",
    routeGroup: "management",
    status: 200,
    errorCode: null,
    latencyMs: 1.5,
    bytesIn: 0,
    bytesOut: 42,
    actorType: "api_key",
    actorId: randomUUID(),
  };
}

function memoryLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "info" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  return { logger, lines };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((sum, v) => sum + v.value, 0);
}

describe.each(backends)("API-call telemetry writer ($name)", (backend) => {
  let t: TestDb;
  beforeAll(async () => {
    t = await backend.open();
  });
  afterAll(() => t.dispose());

  const rows = async (tenantId: string) => {
    const [r] = await t.db.query<{ n: number; ids: number }>(
      "select count(*)::int as n, count(distinct id)::int as ids from api_calls where tenant_id = $1",
      [tenantId],
    );
    return r as { n: number; ids: number };
  };

  function writer(db = t.db, over: Partial<Parameters<typeof createTelemetry>[0]> = {}) {
    const registry = new Registry();
    const log = memoryLogger();
    const telemetry: Telemetry = createTelemetry({
      db,
      logger: log.logger,
      registry,
      batchSize: 50,
      flushIntervalMs: 20,
      maxBuffered: 10_000,
      retryBaseMs: 5,
      retryMaxMs: 50,
      ...over,
    });
    return { telemetry, registry, log };
  }

  it("writes every call in batches, flushed by size and by interval", async () => {
    const tenant = randomUUID();
    const { telemetry, registry } = writer();
    for (let i = 0; i < 1234; i++) expect(telemetry.record(call(tenant, i))).toBe(true);
    await telemetry.flush();
    expect(await rows(tenant)).toEqual({ n: 1234, ids: 1234 });
    // One more, below the batch size: the interval writes it.
    telemetry.record(call(tenant));
    await expect.poll(async () => (await rows(tenant)).n, { timeout: 2000 }).toBe(1235);
    expect(await metric(registry, "tenantrag_telemetry_flushed_total")).toBe(1235);
    expect(await metric(registry, "tenantrag_telemetry_buffered")).toBe(0);
    await telemetry.close();
  });

  it("with two writers, flush waits for every earlier batch, also one that finishes last", async () => {
    const tenant = randomUUID();
    // The first batch's insert waits until released; the second goes straight through.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let inserts = 0;
    const around = async <T>(sql: string, run: () => Promise<T>): Promise<T> => {
      if (INSERTS.test(sql) && ++inserts === 1) await gate;
      return run();
    };
    const slowFirst: Db = {
      query: (sql, params) => around(sql, () => t.db.query(sql, params)),
      run: (sql, params) => around(sql, () => t.db.run(sql, params)),
      exec: (sql) => around(sql, () => t.db.exec(sql)),
      kind: t.db.kind,
      transaction: (fn) => t.db.transaction(fn),
      ping: () => t.db.ping(),
      close: async () => {},
    };
    const { telemetry } = writer(slowFirst, { writers: 2, flushIntervalMs: 10_000 });
    for (let i = 0; i < 100; i++) telemetry.record(call(tenant, i));
    let flushed = false;
    const flushing = telemetry.flush().then(() => {
      flushed = true;
    });
    // The second batch is in while the first is still held: the flush must not be over.
    await expect.poll(async () => (await rows(tenant)).n, { timeout: 5000 }).toBe(50);
    expect(inserts).toBe(2);
    await new Promise((r) => setTimeout(r, 50));
    expect(flushed).toBe(false);
    release();
    await flushing;
    expect(await rows(tenant)).toEqual({ n: 100, ids: 100 });
    expect(telemetry.held()).toBe(0);
    await telemetry.close();
  });

  it("retries a failing database with backoff, then writes each call once", async () => {
    const tenant = randomUUID();
    const faulty = faultyDb(t.db, INSERTS);
    faulty.failNext(4);
    const { telemetry, registry, log } = writer(faulty.db);
    for (let i = 0; i < 120; i++) telemetry.record(call(tenant, i));
    await telemetry.flush();
    expect(await rows(tenant)).toEqual({ n: 120, ids: 120 });
    expect(await metric(registry, "tenantrag_telemetry_flush_failures_total")).toBe(4);
    expect(
      log.lines.filter((l) => l.msg === "API-call telemetry write failed; retrying"),
    ).toHaveLength(4);
    expect(await metric(registry, "tenantrag_telemetry_dropped_total")).toBe(0);
    await telemetry.close();
  });

  it("a batch retried after a commit whose answer was lost is inserted once", async () => {
    const tenant = randomUUID();
    const faulty = faultyDb(t.db, INSERTS);
    faulty.failNextAfterCommit(2);
    const { telemetry } = writer(faulty.db, { batchSize: 40 });
    for (let i = 0; i < 100; i++) telemetry.record(call(tenant, i));
    await telemetry.flush();
    expect(await rows(tenant)).toEqual({ n: 100, ids: 100 });
    await telemetry.close();
  });

  it("the multi-row VALUES form dedupes the same way", async () => {
    const tenant = randomUUID();
    const faulty = faultyDb(t.db, INSERTS);
    faulty.failNextAfterCommit(1);
    const { telemetry } = writer(faulty.db, { insertMethod: "values" });
    for (let i = 0; i < 75; i++) telemetry.record(call(tenant, i));
    await telemetry.flush();
    expect(await rows(tenant)).toEqual({ n: 75, ids: 75 });
    await telemetry.close();
  });

  it("keeps accepting calls up to the bound while the database is down; beyond it drops, counts and logs", async () => {
    const tenant = randomUUID();
    const faulty = faultyDb(t.db, INSERTS);
    faulty.hold();
    const { telemetry, registry, log } = writer(faulty.db, {
      batchSize: 10,
      maxBuffered: 30,
      dropLogIntervalMs: 60_000,
    });
    const accepted = Array.from({ length: 100 }, (_, i) => telemetry.record(call(tenant, i)));
    expect(accepted.filter(Boolean)).toHaveLength(30);
    expect(
      await metric(registry, "tenantrag_telemetry_dropped_total", { reason: "buffer_full" }),
    ).toBe(70);
    expect(await metric(registry, "tenantrag_telemetry_buffered")).toBe(30);
    // Rate-limited: the first drop is logged at once, the rest are summed into a later line.
    const dropLines = () => log.lines.filter((l) => l.msg === "API-call telemetry dropped calls");
    expect(dropLines()).toHaveLength(1);
    expect(dropLines()[0]).toMatchObject({ dropped: 1, reason: "buffer_full", level: 50 });
    faulty.release();
    await telemetry.flush();
    expect(await rows(tenant)).toEqual({ n: 30, ids: 30 });
    await telemetry.close();
    // Close reports the drops not yet logged, with their count: 70 in all.
    const total = dropLines().reduce((s, l) => s + Number(l.dropped), 0);
    expect(total).toBe(70);
  });

  it("close writes everything held, waiting out a database that recovers", async () => {
    const tenant = randomUUID();
    const faulty = faultyDb(t.db, INSERTS);
    faulty.failNext(3);
    const { telemetry } = writer(faulty.db, { batchSize: 1000, flushIntervalMs: 60_000 });
    for (let i = 0; i < 500; i++) telemetry.record(call(tenant, i));
    await telemetry.close();
    expect(await rows(tenant)).toEqual({ n: 500, ids: 500 });
    // After close nothing is taken, and that is counted too.
    expect(telemetry.record(call(tenant))).toBe(false);
  });

  it("close gives up on a database that stays down, counting and logging what it lost", async () => {
    const tenant = randomUUID();
    const faulty = faultyDb(t.db, INSERTS);
    faulty.failNext(1_000_000);
    const { telemetry, registry, log } = writer(faulty.db, { closeTimeoutMs: 200 });
    for (let i = 0; i < 20; i++) telemetry.record(call(tenant, i));
    await telemetry.close();
    expect(await rows(tenant)).toEqual({ n: 0, ids: 0 });
    expect(
      await metric(registry, "tenantrag_telemetry_dropped_total", { reason: "shutdown_timeout" }),
    ).toBe(20);
    expect(
      log.lines.some((l) => l.msg === "API-call telemetry dropped calls" && l.dropped === 20),
    ).toBe(true);
  });
});
