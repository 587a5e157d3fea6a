import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AlertView } from "../../src/modules/alerts/index.js";
import {
  createReconciliation,
  type ReconciliationLine,
  type RollupSource,
  type TenantReport,
} from "../../src/modules/usage/index.js";
import { createTestClock } from "../../src/platform/clock.js";
import { kysely } from "../../src/platform/db/index.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { settle } from "../fixtures/ingest.js";
import { insertCalls, insertEvents } from "../fixtures/usage-rows.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Reconciliation over the real pipeline: these tests ingest real documents (the ledger bills them), plant wrong figures into
 * usage_events where a test needs a difference, and recompute the roll-ups before each
 * reconciliation, as the roll-up job would have.
 */
describe.each(backends)("usage reconciliation ($name)", (backend) => {
  let t: TestApp;
  let adminToken: string;
  /** Whole hours around now: the window every test reconciles. */
  let from: string;
  let to: string;

  beforeAll(async () => {
    t = await startApp(backend, {}, { workers: true });
    adminToken = await platformAdminToken(t);
    const h = Math.floor(Date.now() / HOUR) * HOUR;
    from = new Date(h - HOUR).toISOString();
    to = new Date(h + HOUR).toISOString();
  });
  afterAll(() => t.close());

  /** A completed document of `s` and its active version's id and tokens. */
  async function ingested(s: SignedUp, text: string) {
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { title: "Handbook", content: text },
    });
    expect(res.statusCode, res.body).toBe(202);
    const documentId = res.json().documentId as string;
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
    // Setting up what the ledger would have written needs the version's id (no route shows it).
    const v = await kysely(t.ctx.db)
      .selectFrom("document_versions")
      .select(["id", "embedding_tokens"])
      .where("tenant_id", "=", s.tenantId)
      .where("document_id", "=", documentId)
      .executeTakeFirstOrThrow();
    expect(v.embedding_tokens).toBeGreaterThan(0);
    return { documentId, versionId: v.id, tokens: v.embedding_tokens };
  }
  /**
   * Plants a wrong figure in the ledger: the event the ingestion wrote for the version gets
   * `quantity`, or is removed (`null`), as a bug in a writer would leave it.
   */
  const plantVersionEvent = async (d: { versionId: string }, quantity: number | null) => {
    const k = kysely(t.ctx.db);
    const changed =
      quantity === null
        ? (
            await k
              .deleteFrom("usage_events")
              .where("subject_type", "=", "document_version")
              .where("subject_id", "=", d.versionId)
              .executeTakeFirst()
          ).numDeletedRows
        : (
            await k
              .updateTable("usage_events")
              .set({ quantity })
              .where("subject_type", "=", "document_version")
              .where("subject_id", "=", d.versionId)
              .executeTakeFirst()
          ).numUpdatedRows;
    expect(Number(changed)).toBe(1);
  };
  const searches = async (s: SignedUp, billed: number, called: number) => {
    await insertEvents(
      t.ctx.db,
      s.tenantId,
      Array.from({ length: billed }, () => ({
        metric: "search_queries" as const,
        quantity: 1,
        at: new Date(),
      })),
    );
    await insertCalls(
      t.ctx.db,
      s.tenantId,
      Array.from({ length: called }, () => ({
        at: new Date(),
        method: "POST",
        route: "/api/search",
        routeGroup: "search",
      })),
    );
  };
  const reconcile = async (s: SignedUp, query = `?from=${from}&to=${to}`) => {
    // The roll-up job's pass over the window, as it would have run by now.
    await t.ctx.usage.rollups.recompute(s.tenantId, new Date(from), new Date(to));
    const res = await t.app.inject({
      url: `/api/metrics/reconciliation${query}`,
      headers: bearer(s.token),
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as TenantReport;
  };
  const metricOf = (r: { differences: ReconciliationLine[] }) =>
    r.differences.map((d) => d.metric).sort();

  it("reports nothing on consistent data", async () => {
    const a = await signup(t.app);
    const d = await ingested(a, "Opening hours are nine to five on weekdays.");
    await searches(a, 3, 3);
    // A failed search bills nothing and is no search.
    await insertCalls(t.ctx.db, a.tenantId, [
      { at: new Date(), method: "POST", route: "/api/search", status: 500 },
    ]);
    const r = await reconcile(a);
    expect(r.differences).toEqual([]);
    expect(r.consistent).toBe(true);
    expect(r.rollups).toBe(true);
    const byMetric = Object.fromEntries(r.lines.map((l) => [l.metric, l]));
    expect(byMetric.version_embedding_tokens).toMatchObject({
      events: String(d.tokens),
      business: String(d.tokens),
      consistent: true,
    });
    expect(byMetric.search_queries).toMatchObject({ events: "3", business: "3", rollups: "3" });
    expect(byMetric.embedding_tokens).toMatchObject({
      events: String(d.tokens),
      rollups: String(d.tokens),
    });
  });

  it("lists a planted difference: an event whose figure differs from its version's", async () => {
    const a = await signup(t.app);
    const d = await ingested(a, "Refunds within thirty days with a receipt.");
    await plantVersionEvent(d, d.tokens + 7);
    const r = await reconcile(a);
    expect(r.consistent).toBe(false);
    expect(metricOf(r)).toEqual(["document_embedding_tokens", "version_embedding_tokens"]);
    const v = r.differences.find((x) => x.metric === "version_embedding_tokens");
    expect(v).toMatchObject({
      tenantId: a.tenantId,
      from,
      to,
      events: String(d.tokens + 7),
      business: String(d.tokens),
      subjects: [
        {
          subjectType: "document_version",
          subjectId: d.versionId,
          documentId: d.documentId,
          events: String(d.tokens + 7),
          business: String(d.tokens),
        },
      ],
    });
  });

  it("lists an embedded version with no event, and searches billed but not called", async () => {
    const a = await signup(t.app);
    const d = await ingested(a, "Deliveries leave the warehouse at noon.");
    await plantVersionEvent(d, null);
    await searches(a, 3, 2);
    const r = await reconcile(a);
    expect(metricOf(r)).toEqual(["search_queries", "version_embedding_tokens"]);
    const v = r.differences.find((x) => x.metric === "version_embedding_tokens");
    expect(v?.subjects).toEqual([
      expect.objectContaining({ subjectId: d.versionId, events: null, business: String(d.tokens) }),
    ]);
    expect(r.differences.find((x) => x.metric === "search_queries")).toMatchObject({
      events: "3",
      business: "2",
    });
  });

  it("does not count a deleted document's events as differences", async () => {
    const a = await signup(t.app);
    const d = await ingested(a, "The old price list.");
    const del = await t.app.inject({
      method: "DELETE",
      url: `/api/documents/${d.documentId}`,
      headers: bearer(a.token),
    });
    expect(del.statusCode, del.body).toBe(204);
    const r = await reconcile(a);
    expect(r.differences).toEqual([]);
    const v = r.lines.find((x) => x.metric === "version_embedding_tokens");
    expect(v).toMatchObject({ unverifiable: 1, events: "0", business: "0" });
    // The billed tokens stay billed: the events' own total still has them.
    expect(r.lines.find((x) => x.metric === "embedding_tokens")?.events).toBe(String(d.tokens));
  });

  it("compares the roll-ups' totals when they take part", async () => {
    const a = await signup(t.app);
    await insertEvents(t.ctx.db, a.tenantId, [
      { metric: "chat_messages", quantity: 4, at: new Date(), costUsd: "0.25" },
    ]);
    const totals = new Map<string, Awaited<ReturnType<RollupSource["totals"]>>>();
    const rollups: RollupSource = { totals: async (tenantId) => totals.get(tenantId) ?? {} };
    const rec = createReconciliation({
      db: t.ctx.db,
      documents: t.ctx.documents,
      rollups,
      clock: t.ctx.clock,
      logger: pino({ level: "silent" }),
    });
    const ctx = {
      tenantId: a.tenantId,
      actor: {
        kind: "user" as const,
        userId: a.userId,
        tenantId: a.tenantId,
        role: "owner" as const,
        sessionId: a.userId,
      },
      request: null,
    };
    totals.set(a.tenantId, { chat_messages: 4, cost_usd: "0.2500000000" });
    const same = await rec.forTenant(ctx, { from: new Date(from), to: new Date(to) });
    expect(same.rollups).toBe(true);
    expect(same.differences).toEqual([]);
    totals.set(a.tenantId, { chat_messages: 3, cost_usd: "0.25" });
    const r = await rec.forTenant(ctx, { from: new Date(from), to: new Date(to) });
    expect(r.differences).toEqual([
      expect.objectContaining({ metric: "chat_messages", events: "4", rollups: "3" }),
    ]);
  });

  it("runs daily for the previous day and raises one mismatch alert per tenant and day", async () => {
    const a = await signup(t.app);
    const good = await signup(t.app);
    const d = await ingested(a, "Staff meet on Mondays.");
    await plantVersionEvent(d, d.tokens + 1);
    await ingested(good, "Staff meet on Tuesdays.");
    // Tomorrow: the previous UTC day is today.
    const clock = createTestClock(Math.floor(Date.now() / DAY) * DAY + DAY + 30 * 60_000);
    const rec = createReconciliation({
      db: t.ctx.db,
      documents: t.ctx.documents,
      alerts: t.ctx.alerts,
      clock,
      logger: pino({ level: "silent" }),
    });
    const [r1, r2] = await Promise.all([rec.runDaily(), rec.runDaily()]);
    expect(r1.mismatched).toContain(a.tenantId);
    expect(r1.mismatched).not.toContain(good.tenantId);
    expect(r2.mismatched).toContain(a.tenantId);
    const alerts = await t.app.inject({
      url: "/api/alerts?kind=reconciliation_mismatch",
      headers: bearer(a.token),
    });
    const items = alerts.json().items as AlertView[];
    const day = new Date(Math.floor(Date.now() / DAY) * DAY).toISOString().slice(0, 10);
    expect(items.map((x) => x.dedupeKey)).toEqual([`reconciliation_mismatch:${day}`]);
    expect(items[0]?.details.differences).toEqual(
      expect.arrayContaining([expect.objectContaining({ metric: "version_embedding_tokens" })]),
    );
    const none = await t.app.inject({ url: "/api/alerts", headers: bearer(good.token) });
    expect(none.json().items).toEqual([]);
  });

  it("shows a tenant only its own; platform admins see every tenant's", async () => {
    const a = await signup(t.app);
    const b = await signup(t.app);
    const d = await ingested(a, "A's secret recipe.");
    await plantVersionEvent(d, d.tokens + 3);
    const rb = await reconcile(b);
    expect(rb.differences).toEqual([]);
    expect(JSON.stringify(rb)).not.toContain(a.tenantId);
    expect(JSON.stringify(rb)).not.toContain(d.versionId);
    const admin = await t.app.inject({
      url: `/api/admin/usage/reconciliation?from=${from}&to=${to}`,
      headers: bearer(adminToken),
    });
    expect(admin.statusCode, admin.body).toBe(200);
    expect(admin.json().tenants).toBeGreaterThanOrEqual(2);
    expect(admin.json().differences.map((x: ReconciliationLine) => x.tenantId)).toContain(
      a.tenantId,
    );
    const one = await t.app.inject({
      url: `/api/admin/usage/reconciliation?from=${from}&to=${to}&tenantId=${b.tenantId}`,
      headers: bearer(adminToken),
    });
    expect(one.json()).toMatchObject({ tenants: 1, differences: [] });
    expectError(
      await t.app.inject({ url: "/api/admin/usage/reconciliation", headers: bearer(a.token) }),
      403,
      "auth.platform_admin_required",
    );
  });

  it("runs the alert rules as the alerts.evaluate job", async () => {
    const a = await signup(t.app);
    // 25 calls in the last minutes, all failed: over the default error-rate threshold.
    await insertCalls(
      t.ctx.db,
      a.tenantId,
      Array.from({ length: 25 }, (_, i) => ({
        at: new Date(Date.now() - 60_000 - i),
        status: 500,
      })),
    );
    await t.ctx.queue.enqueue("alerts.evaluate", { tenantId: null });
    const deadline = performance.now() + 20_000;
    let kinds: string[] = [];
    while (performance.now() < deadline) {
      const res = await t.app.inject({ url: "/api/alerts", headers: bearer(a.token) });
      kinds = (res.json().items as AlertView[]).map((x) => x.kind);
      if (kinds.length > 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(kinds).toEqual(["error_rate"]);
  });

  it("answers a bad window with 400", async () => {
    const a = await signup(t.app);
    const get = (q: string) =>
      t.app.inject({ url: `/api/metrics/reconciliation${q}`, headers: bearer(a.token) });
    expectError(
      await get(`?from=2026-12-01T00:30:00Z&to=2026-12-02T00:00:00Z`),
      400,
      "reconciliation.invalid_window",
    );
    expectError(
      await get(`?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z`),
      400,
      "reconciliation.invalid_window",
    );
    expectError(
      await get(`?from=2026-10-01T00:00:00Z&to=2026-12-01T00:00:00Z`),
      400,
      "reconciliation.invalid_window",
    );
    expectError(await get("?from=yesterday"), 400, "validation.failed");
    expectError(await get("?window=day"), 400, "validation.failed");
    // A from alone means that day.
    const day = await get("?from=2026-11-30T00:00:00Z");
    expect(day.statusCode, day.body).toBe(200);
    expect(day.json()).toMatchObject({
      from: "2026-11-30T00:00:00.000Z",
      to: "2026-12-01T00:00:00.000Z",
    });
  });
});
