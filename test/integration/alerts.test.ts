import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AlertView,
  createAlertEvaluator,
  type QuotaStatus,
} from "../../src/modules/alerts/index.js";
import { createUsageSignals } from "../../src/modules/usage/index.js";
import { createTestClock, type TestClock } from "../../src/platform/clock.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { callsAt, insertCalls, insertEvents } from "../fixtures/usage-rows.js";

const HOUR = 3_600_000;
/** The evaluator's time: 40 minutes into an hour of the last day of a year. */
const EVAL_START = Date.parse("2026-12-31T22:40:00Z");

/**
 * The quotas service is built elsewhere; the evaluator reads it through `QuotaStatusSource`,
 * so these tests give it a fake one whose figures they set.
 */
function fakeQuotas() {
  const status = new Map<string, QuotaStatus>();
  return { status: async (tenantId: string) => status.get(tenantId) ?? {}, set: status };
}

describe.each(backends)("alerts ($name)", (backend) => {
  let t: TestApp;
  let clock: TestClock;
  let adminToken: string;
  const quotas = fakeQuotas();

  beforeAll(async () => {
    t = await startApp(backend);
    adminToken = await platformAdminToken(t);
  });
  afterAll(() => t.close());

  const evaluator = () =>
    createAlertEvaluator({
      alerts: t.ctx.alerts,
      signals: createUsageSignals({ db: t.ctx.db }),
      quotas,
      clock,
      logger: pino({ level: "silent" }),
    });
  const fresh = async () => {
    clock = createTestClock(EVAL_START);
    const a = await signup(t.app);
    // Active: one call a minute ago (the evaluator looks only at tenants with activity).
    await insertCalls(t.ctx.db, a.tenantId, [{ at: new Date(clock.now() - 60_000) }]);
    return a;
  };
  const list = async (s: SignedUp, query = "") => {
    const res = await t.app.inject({ url: `/api/alerts${query}`, headers: bearer(s.token) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as { items: AlertView[]; nextCursor: string | null };
  };
  const keys = async (s: SignedUp) => (await list(s)).items.map((a) => a.dedupeKey).sort();
  const setThresholds = async (s: SignedUp, body: object) => {
    const res = await t.app.inject({
      method: "PUT",
      url: "/api/alerts/settings",
      headers: bearer(s.token),
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  };
  const quota = (used: number, limit: number, month: string) => ({
    limit,
    used,
    reserved: 0,
    remaining: Math.max(limit - used, 0),
    periodStart: `${month}-01T00:00:00.000Z`,
    resetAt: "2027-01-01T00:00:00.000Z",
  });

  it("raises quota alerts at 80 % and 100 %, once per quota period", async () => {
    const a = await fresh();
    const ev = evaluator();
    quotas.set.set(a.tenantId, { tokens: quota(799, 1000, "2026-12") });
    await ev.evaluate();
    expect(await keys(a)).toEqual([]);
    quotas.set.set(a.tenantId, { tokens: quota(800, 1000, "2026-12") });
    await ev.evaluate();
    await ev.evaluate();
    expect(await keys(a)).toEqual(["quota_80:tokens:2026-12"]);
    quotas.set.set(a.tenantId, { tokens: quota(1200, 1000, "2026-12") });
    await ev.evaluate();
    expect(await keys(a)).toEqual(["quota_100:tokens:2026-12", "quota_80:tokens:2026-12"]);
    // The next period (a new year) warns again.
    clock.set(Date.parse("2027-01-01T00:10:00Z"));
    quotas.set.set(a.tenantId, { tokens: quota(850, 1000, "2027-01") });
    await ev.evaluate();
    const items = (await list(a)).items;
    expect(items.map((x) => x.dedupeKey)).toContain("quota_80:tokens:2027-01");
    expect(items.find((x) => x.kind === "quota_100")).toMatchObject({
      severity: "critical",
      details: { quota: "tokens", limit: 1000, used: 1200 },
      ackedAt: null,
    });
  });

  it("raises error_rate over the threshold with the minimum calls, once per hour", async () => {
    const a = await fresh();
    await setThresholds(a, { errorRate: { threshold: 0.1, minCalls: 30 } });
    const ev = evaluator();
    const from = clock.now() - 50 * 60_000;
    // 29 calls in the hour (28 + the one from `fresh`), 10 failed: under the minimum count.
    await insertCalls(t.ctx.db, a.tenantId, [
      ...callsAt(10, from, 60_000, { status: 500 }),
      ...callsAt(18, from, 60_000),
      // Older than an hour: not counted.
      ...callsAt(40, clock.now() - 2 * HOUR, 60_000, { status: 500 }),
    ]);
    await ev.evaluate();
    expect(await keys(a)).toEqual([]);
    // Rate limited calls count as calls, not as failures: 49 calls, 10 failed (20.4 %).
    await insertCalls(t.ctx.db, a.tenantId, callsAt(20, from, 60_000, { status: 429 }));
    await ev.evaluate();
    await ev.evaluate();
    const items = (await list(a, "?kind=error_rate")).items;
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({
      dedupeKey: "error_rate:2026-12-31T22",
      details: { calls: 49, failed: 10 },
    });
    // The next hour, still failing: a new alert.
    clock.advance(HOUR);
    await insertCalls(
      t.ctx.db,
      a.tenantId,
      callsAt(40, clock.now() - 30 * 60_000, 1000, { status: 503 }),
    );
    await ev.evaluate();
    expect((await list(a, "?kind=error_rate")).items).toHaveLength(2);
  });

  it("raises cost_threshold when the month's cost passes the tenant's threshold", async () => {
    const a = await fresh();
    await setThresholds(a, { costUsdMonthly: 2 });
    const ev = evaluator();
    const monthStart = Date.parse("2026-12-01T00:00:00Z");
    await insertEvents(t.ctx.db, a.tenantId, [
      {
        metric: "embedding_tokens",
        quantity: 100,
        at: new Date(monthStart + HOUR),
        costUsd: "1.5",
      },
      // Last month's cost does not count.
      { metric: "embedding_tokens", quantity: 100, at: new Date(monthStart - HOUR), costUsd: "9" },
    ]);
    await ev.evaluate();
    expect(await keys(a)).toEqual([]);
    await insertEvents(t.ctx.db, a.tenantId, [
      {
        metric: "embedding_tokens",
        quantity: 50,
        at: new Date(clock.now() - 1000),
        costUsd: "0.5000000001",
      },
    ]);
    await ev.evaluate();
    await ev.evaluate();
    const items = (await list(a, "?kind=cost_threshold")).items;
    expect(items.map((x) => [x.dedupeKey, x.details.costUsd])).toEqual([
      ["cost_threshold:2026-12", "2.0000000001"],
    ]);
  });

  it("raises runaway_usage when the last hour is far above the tenant's own baseline", async () => {
    const a = await fresh();
    await setThresholds(a, { runaway: { factor: 10, floor: 50 } });
    const ev = evaluator();
    const h0 = Math.floor(clock.now() / HOUR) * HOUR;
    // 10 calls in each of the 24 complete hours before the current one: median 10, limit 100.
    const baseline = Array.from({ length: 24 }, (_, i) => callsAt(10, h0 - (i + 1) * HOUR, HOUR))
      .flat()
      // Keep the last hour's window (the 60 minutes before now) for the calls placed below.
      .filter((c) => c.at.getTime() < clock.now() - HOUR);
    await insertCalls(t.ctx.db, a.tenantId, baseline);
    // With `fresh`'s call: 100 in the last hour, at the limit itself.
    await insertCalls(t.ctx.db, a.tenantId, callsAt(99, clock.now() - 30 * 60_000, 20 * 60_000));
    await ev.evaluate();
    expect(await keys(a)).toEqual([]);
    await insertCalls(t.ctx.db, a.tenantId, [{ at: new Date(clock.now() - 1000) }]);
    await ev.evaluate();
    await ev.evaluate();
    const items = (await list(a, "?kind=runaway_usage")).items;
    expect(items).toHaveLength(1);
    expect(items[0]?.details).toMatchObject({ lastHourCalls: 101, limit: 100, factor: 10 });
  });

  it("raises one alert per key however many evaluators run at once", async () => {
    const a = await fresh();
    quotas.set.set(a.tenantId, {
      tokens: quota(1000, 1000, "2026-12"),
      searches: quota(900, 1000, "2026-12"),
    });
    const results = await Promise.all(Array.from({ length: 6 }, () => evaluator().evaluate()));
    const raised = results.flatMap((r) => r.raised).filter((x) => x.tenantId === a.tenantId);
    expect(raised.map((x) => x.dedupeKey).sort()).toEqual([
      "quota_100:tokens:2026-12",
      "quota_80:searches:2026-12",
    ]);
    expect(await keys(a)).toEqual(["quota_100:tokens:2026-12", "quota_80:searches:2026-12"]);
  });

  it("acknowledges once (admin and up), lists by acknowledgement, and pages", async () => {
    const a = await fresh();
    const months = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"];
    for (const m of months) {
      await t.ctx.alerts.raise(a.tenantId, {
        kind: "quota_80",
        severity: "warning",
        dedupeKey: `quota_80:tokens:${m}`,
        message: "x",
        details: {},
      });
    }
    const [first] = (await list(a)).items;
    const id = (first as AlertView).id;
    // A member reads alerts but may not acknowledge them.
    const member = await addUser(a, "member");
    expect((await list(member)).items).toHaveLength(5);
    expectError(await ack(member, id), 403, "auth.forbidden");
    const admin = await addUser(a, "admin");
    const r1 = await ack(admin, id);
    expect(r1.statusCode, r1.body).toBe(200);
    expect(r1.json()).toMatchObject({ id, ackedBy: { kind: "user", userId: admin.userId } });
    const r2 = await ack(a, id);
    expect(r2.statusCode).toBe(200);
    expect(r2.json().ackedAt).toBe(r1.json().ackedAt);
    expect(r2.json().ackedBy).toEqual(r1.json().ackedBy);
    expect((await list(a, "?acked=true")).items.map((x) => x.id)).toEqual([id]);
    expect((await list(a, "?acked=false")).items).toHaveLength(4);
    // Pages of two, newest first, each alert once.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const p: { items: AlertView[]; nextCursor: string | null } = await list(
        a,
        `?limit=2${cursor ? `&cursor=${cursor}` : ""}`,
      );
      seen.push(...p.items.map((x) => x.id));
      cursor = p.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
  });

  it("keeps tenants apart; platform admins see every tenant's", async () => {
    const a = await fresh();
    const b = await signup(t.app);
    const raisedA = await t.ctx.alerts.raise(a.tenantId, {
      kind: "runaway_usage",
      severity: "critical",
      dedupeKey: "runaway_usage:2026-12-31T22",
      message: "A's",
      details: {},
    });
    const idA = raisedA.alert?.id as string;
    expect((await list(b)).items).toEqual([]);
    expectError(await ack(b, idA), 404, "not_found");
    expect((await list(a)).items[0]?.ackedAt).toBeNull();
    const admin = await t.app.inject({
      url: `/api/admin/alerts?tenantId=${a.tenantId}`,
      headers: bearer(adminToken),
    });
    expect(admin.statusCode, admin.body).toBe(200);
    expect(admin.json().items.map((x: AlertView) => x.id)).toEqual([idA]);
    const all = await t.app.inject({
      url: "/api/admin/alerts?limit=200",
      headers: bearer(adminToken),
    });
    expect(all.json().items.map((x: AlertView) => x.id)).toContain(idA);
    expectError(
      await t.app.inject({ url: "/api/admin/alerts", headers: bearer(a.token) }),
      403,
      "auth.platform_admin_required",
    );
  });

  it("answers bad input with 400", async () => {
    const a = await fresh();
    const bad = async (method: "GET" | "PUT" | "POST", url: string, payload?: object) =>
      expectError(
        await t.app.inject({
          method,
          url,
          headers: bearer(a.token),
          ...(payload ? { payload } : {}),
        }),
        400,
        "validation.failed",
      );
    await bad("GET", "/api/alerts?kind=nope");
    await bad("GET", "/api/alerts?acked=yes");
    await bad("GET", "/api/alerts?limit=0");
    await bad("GET", "/api/alerts?cursor=zzz");
    await bad("POST", "/api/alerts/not-a-uuid/ack");
    await bad("PUT", "/api/alerts/settings", { errorRate: { threshold: 2, minCalls: 5 } });
    await bad("PUT", "/api/alerts/settings", { runaway: { factor: 10 } });
    await bad("PUT", "/api/alerts/settings", { surprise: 1 });
    const res = await t.app.inject({ url: "/api/alerts/settings", headers: bearer(a.token) });
    expect(res.json()).toMatchObject({ settings: {}, effective: { costUsdMonthly: 100 } });
  });

  async function addUser(owner: SignedUp, role: "admin" | "member") {
    const email = uniqueEmail(role);
    const password = "a-long-enough-password";
    const res = await t.app.inject({
      method: "POST",
      url: "/api/customers/users",
      headers: bearer(owner.token),
      payload: { email, password, role },
    });
    expect(res.statusCode, res.body).toBe(201);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password },
    });
    expect(login.statusCode, login.body).toBe(200);
    return { ...owner, token: login.json().token as string, userId: res.json().id as string };
  }
  function ack(s: SignedUp, id: string) {
    return t.app.inject({ method: "POST", url: `/api/alerts/${id}/ack`, headers: bearer(s.token) });
  }
});
