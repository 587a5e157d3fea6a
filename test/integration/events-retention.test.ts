import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import {
  createEventsRetention,
  EventsRetentionConfigError,
  eventsSchedules,
} from "../../src/modules/events/index.js";
import { createTestClock } from "../../src/platform/clock.js";
import { kysely } from "../../src/platform/db/index.js";
import { type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";

const DAY = 86_400_000;
const silent = pino({ level: "silent" });

describe.each(backends)("events retention ($name)", (backend) => {
  let t: TestApp;
  let a: SignedUp;
  beforeAll(async () => {
    t = await startApp(backend, { EVENTS_RETENTION: "message_sent:30" }, { workers: true });
    a = await signup(t.app);
  });
  afterAll(() => t.close());

  /** Inserts events of `name` aged `days` days (behind the writer's back, as time would). */
  async function aged(name: string, days: number, n = 1) {
    const now = t.ctx.clock.now();
    await kysely(t.ctx.db)
      .insertInto("events")
      .values(
        Array.from({ length: n }, () => ({
          id: randomUUID(),
          tenant_id: a.tenantId,
          name,
          data: JSON.stringify({}),
          created_at: new Date(now - days * DAY),
        })),
      )
      .execute();
  }
  const countOf = async (name: string) =>
    (
      await kysely(t.ctx.db)
        .selectFrom("events")
        .select((e) => e.fn.countAll<number>().as("n"))
        .where("tenant_id", "=", a.tenantId)
        .where("name", "=", name as never)
        .executeTakeFirstOrThrow()
    ).n;

  it("deletes past the default and the per-name days, in batches, keeping the rest", async () => {
    await aged("document_deleted", 401, 5);
    await aged("document_deleted", 399, 2);
    await aged("message_sent", 31, 3);
    await aged("message_sent", 29, 1);
    // message_sent's own 30 days, not the default, decide for it.
    await aged("message_sent", 401, 1);
    const retention = createEventsRetention({
      db: t.ctx.db,
      clock: createTestClock(t.ctx.clock.now()),
      logger: silent,
      policy: { defaultDays: 400, byName: { message_sent: 30 }, batchSize: 2 },
    });
    const r = await retention.run();
    expect(r.deleted).toEqual({ message_sent: 4, "*": 5 });
    // Batches of 2: 4 rows take 3 statements (the last finds fewer than a batch), 5 take 3.
    expect(r.statements).toBe(6);
    expect(Number(await countOf("document_deleted"))).toBe(2);
    expect(Number(await countOf("message_sent"))).toBe(1);
    expect((await retention.run()).deleted).toEqual({ message_sent: 0, "*": 0 });
  });

  it("runs as the scheduled events.retention job with the configured days", async () => {
    expect(eventsSchedules).toEqual([
      expect.objectContaining({ key: "events.retention", timing: { cron: "17 4 * * *" } }),
    ]);
    await aged("message_sent", 45, 2);
    await aged("ingest_started", 45, 1);
    await t.ctx.queue.enqueue("events.retention", { tenantId: null });
    const deadline = Date.now() + 15_000;
    while (Number(await countOf("message_sent")) > 1) {
      if (Date.now() > deadline) expect.fail("events.retention did not run");
      await new Promise((r) => setTimeout(r, 50));
    }
    // EVENTS_RETENTION=message_sent:30 applies to message_sent only; the rest keeps 400 days.
    expect(Number(await countOf("ingest_started"))).toBe(1);
  });

  it("refuses a configuration that names no event, or is not name:days", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tenantrag-events-config-"));
    const env = (v: string) => ({ DATA_DIR: dir, EVENTS_RETENTION: v });
    expect(() =>
      createEventsRetention({
        db: t.ctx.db,
        clock: t.ctx.clock,
        logger: silent,
        policy: { defaultDays: 400, byName: { messages_sent: 30 }, batchSize: 10 },
      }),
    ).toThrow(EventsRetentionConfigError);
    for (const bad of ["message_sent", "message_sent:x", "message_sent:0", "a:1,a:2"]) {
      expect(() => loadConfig(env(bad)), bad).toThrow(ConfigError);
    }
    const ok = loadConfig(env("message_sent:30, ingest_started : 7"));
    expect(ok.events.retentionByName).toEqual({ message_sent: 30, ingest_started: 7 });
    expect(ok.events.retentionDays).toBe(400);
    rmSync(dir, { recursive: true, force: true });
  });
});
