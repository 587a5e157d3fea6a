import { randomUUID } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiCallsStore, createRetention } from "../../src/modules/usage/index.js";
import { createTestClock } from "../../src/platform/clock.js";
import { backends, type TestDb } from "../fixtures/db.js";
import { faultyDb } from "../fixtures/faulty-db.js";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 2, 12, 0, 0);

describe.each(backends)("retention ($name)", (backend) => {
  let t: TestDb;
  let tenantId: string;
  beforeAll(async () => {
    t = await backend.open();
    const [row] = await t.db.query<{ id: string }>(
      "insert into tenants (name, plan_id) values ('Retention', (select id from plans limit 1)) returning id",
    );
    tenantId = (row as { id: string }).id;
  });
  afterAll(() => t.dispose());

  async function seedCalls(ageDays: number[]) {
    await apiCallsStore.insertMany(
      t.db,
      ageDays.map((age, i) => ({
        id: randomUUID(),
        tenantId,
        occurredAt: new Date(NOW - age * DAY),
        requestId: `r-${age}-${i}`,
        method: "GET",
        route: "/api/documents",
        routeGroup: "management",
        status: 200,
        errorCode: null,
        latencyMs: 1,
        bytesIn: 0,
        bytesOut: 10,
        actorType: "user",
        actorId: null,
      })),
    );
  }
  async function seedEvents(ageDays: number[]) {
    for (const age of ageDays) {
      await t.db.query(
        `insert into usage_events (id, tenant_id, metric, quantity, unit, provider, model, payer,
           subject_type, subject_id, actor_type, occurred_at)
         values ($1, $2, 'search_queries', 1, 'call', 'tenantrag', 'search', 'platform',
           'search', $3, 'user', $4)`,
        [randomUUID(), tenantId, randomUUID(), new Date(NOW - age * DAY)],
      );
    }
  }
  const ages = async (table: "api_calls" | "usage_events") =>
    (
      await t.db.query<{ at: Date }>(
        `select occurred_at as at from ${table} where tenant_id = $1 order by occurred_at`,
        [tenantId],
      )
    ).map((r) => Math.round((NOW - r.at.getTime()) / DAY));

  it("deletes only rows past each table's retention, in bounded statements", async () => {
    // 11 calls past 30 days, 4 within; 5 events past 400 days, 3 within (one older than 30).
    await seedCalls([31, 32, 40, 45, 50, 60, 70, 90, 120, 200, 365, 0, 1, 29, 30 - 0.01]);
    await seedEvents([401, 402, 450, 500, 1000, 399, 31, 0]);
    const deletes = faultyDb(t.db, /^delete from/i);
    const retention = createRetention({
      db: deletes.db,
      clock: createTestClock(NOW),
      logger: pino({ level: "silent" }),
      policy: { apiCallsDays: 30, usageEventsDays: 400, batchSize: 3 },
    });
    const result = await retention.run();
    expect(result).toEqual({ apiCalls: 11, usageEvents: 5, statements: 4 + 2 });
    // Each batch its own statement: ceil(11/3) = 4 for the calls, ceil(5/3) = 2 for the events.
    expect(deletes.attempts()).toBe(6);
    expect(await ages("api_calls")).toEqual([30, 29, 1, 0]);
    expect(await ages("usage_events")).toEqual([399, 31, 0]);
    // A second pass finds nothing more and ends after one statement per table.
    expect(await retention.run()).toEqual({ apiCalls: 0, usageEvents: 0, statements: 2 });
  });

  it("follows configured retention periods", async () => {
    const retention = createRetention({
      db: t.db,
      clock: createTestClock(NOW),
      logger: pino({ level: "silent" }),
      policy: { apiCallsDays: 1, usageEventsDays: 30, batchSize: 10_000 },
    });
    const result = await retention.run();
    expect(result.apiCalls).toBe(2);
    expect(result.usageEvents).toBe(2);
    // A row exactly at the cutoff is kept: retention removes what is older than it.
    expect(await ages("api_calls")).toEqual([1, 0]);
    expect(await ages("usage_events")).toEqual([0]);
  });
});
