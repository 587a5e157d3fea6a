import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EventInput } from "../../src/modules/events/index.js";
import { createTestClock, type TestClock } from "../../src/platform/clock.js";
import {
  bearer,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { userContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";

const DAY = 86_400_000;
/** The tests' now: midday of a mid-month day, so that a few days back stay in the month. */
const NOW = Date.UTC(2027, 5, 15, 12, 0, 0);
const TODAY = "2027-06-15T00:00:00.000Z";
const DOC = "5f0c9a3e-1b2d-4e6f-8a9b-0c1d2e3f4a5b";

/**
 * The analytics routes' numbers, checked against events written through `events.log` as the
 * features will write them (chat, escalations and billing do not exist yet: their events are
 * written here exactly as their issues will emit them).
 */
describe.each(backends)("analytics ($name)", (backend) => {
  let t: TestApp;
  let clock: TestClock;
  let a: SignedUp;
  let b: SignedUp;
  let admin: Record<string, string>;

  /** Writes `events` for `s` as happened `daysAgo` days before NOW, in one transaction. */
  async function emit(s: SignedUp, daysAgo: number, events: EventInput[]) {
    clock.set(NOW - daysAgo * DAY);
    try {
      await t.ctx.db.transaction((tx) =>
        t.ctx.events.logMany(userContext(s.tenantId, s.userId), events, { tx }),
      );
    } finally {
      clock.set(NOW);
    }
  }
  const times = <T>(n: number, f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));
  const conversation = (i: number): EventInput => ({
    name: "conversation_started",
    data: { sessionId: `s-${i}`, conversationId: `c-${i}` },
  });
  const escalation = (i: number): EventInput => ({
    name: "escalation_triggered",
    data: { conversationId: `c-${i}`, reason: "low_confidence" },
  });
  const ingestEvent = (
    name: "ingest_started" | "ingest_completed" | "ingest_failed",
    extra: Record<string, unknown> = {},
  ) =>
    ({
      name,
      data: {
        sourceType: "url",
        url: "https://example.test/p",
        documentId: DOC,
        version: 1,
        ...extra,
      },
    }) as EventInput;

  beforeAll(async () => {
    clock = createTestClock(NOW);
    t = await startApp(backend, {}, { clock });
    a = await signup(t.app);
    b = await signup(t.app);
    admin = bearer(await platformAdminToken(t));

    // A: 3 conversations today, 2 two days ago, 1 forty days ago; escalations 1 today, 1 two
    // days ago, 1 forty days ago.
    await emit(a, 0, [...times(3, conversation), escalation(0)]);
    await emit(a, 2, [...times(2, (i) => conversation(10 + i)), escalation(10)]);
    await emit(a, 40, [conversation(20), escalation(20)]);
    // A's ingestion: 2 started, 1 completed (4 chunks) yesterday; 2 started, 1 completed
    // (6 chunks), 1 failed today.
    await emit(a, 1, [
      ingestEvent("ingest_started"),
      ingestEvent("ingest_started"),
      ingestEvent("ingest_completed", { docs: 1, chunks: 4 }),
    ]);
    await emit(a, 0, [
      ingestEvent("ingest_started"),
      ingestEvent("ingest_started"),
      ingestEvent("ingest_completed", { docs: 1, chunks: 6 }),
      ingestEvent("ingest_failed", { errorCode: "ingestion.url_http_error" }),
    ]);
    // A's quota friction: documents twice, searches once.
    const refusal = (quotaType: string): EventInput => ({
      name: "quota_exceeded",
      data: { quotaType, limit: 10, attempted: 1 },
    });
    await emit(a, 3, [refusal("documents"), refusal("documents"), refusal("searches")]);
    // A's plan funnel: a trial, a checkout, two plan changes.
    await emit(a, 20, [
      { name: "trial_started", data: { plan: "trial", trialEndsAt: "2027-06-09T00:00:00Z" } },
    ]);
    await emit(a, 10, [
      { name: "checkout_completed", data: { plan: "pro", stripeSessionId: "cs_1" } },
      { name: "plan_updated", data: { previousPlan: "trial", newPlan: "pro", status: "active" } },
    ]);
    await emit(a, 5, [
      {
        name: "plan_updated",
        data: { previousPlan: "pro", newPlan: "business", status: "active" },
      },
    ]);
    // B: one conversation, one escalation today; a trial; one failed ingestion.
    await emit(b, 0, [
      conversation(0),
      escalation(0),
      ingestEvent("ingest_failed", { errorCode: "ingestion.url_timeout" }),
      { name: "trial_started", data: { plan: "trial", trialEndsAt: "2027-06-29T00:00:00Z" } },
    ]);
  });
  afterAll(() => t.close());

  const get = async (s: SignedUp | null, url: string) => {
    const res = await t.app.inject({ url, headers: s ? bearer(s.token) : admin });
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  };

  it("counts conversations per day, week and month (UTC), oldest first", async () => {
    expect(await get(a, "/api/analytics/conversations?period=day")).toEqual({
      period: "day",
      series: [
        { start: "2027-05-06T00:00:00.000Z", count: 1 },
        { start: "2027-06-13T00:00:00.000Z", count: 2 },
        { start: TODAY, count: 3 },
      ],
    });
    // 2027-06-15 is a Tuesday: the 13th is in the week of Monday the 7th.
    expect((await get(a, "/api/analytics/conversations?period=week")).series).toEqual([
      { start: "2027-05-03T00:00:00.000Z", count: 1 },
      { start: "2027-06-07T00:00:00.000Z", count: 2 },
      { start: "2027-06-14T00:00:00.000Z", count: 3 },
    ]);
    expect((await get(a, "/api/analytics/conversations?period=month")).series).toEqual([
      { start: "2027-05-01T00:00:00.000Z", count: 1 },
      { start: "2027-06-01T00:00:00.000Z", count: 5 },
    ]);
    // The latest buckets only.
    expect((await get(a, "/api/analytics/conversations?buckets=1")).series).toEqual([
      { start: TODAY, count: 3 },
    ]);
  });

  it("gives the escalation rate over the window asked for", async () => {
    expect(await get(a, "/api/analytics/escalation-rate?days=30")).toEqual({
      days: 30,
      conversations: 5,
      escalations: 2,
      rate: 0.4,
    });
    expect(await get(a, "/api/analytics/escalation-rate")).toMatchObject({ days: 30, rate: 0.4 });
    expect(await get(a, "/api/analytics/escalation-rate?days=60")).toMatchObject({
      conversations: 6,
      escalations: 3,
      rate: 0.5,
    });
  });

  it("answers empty series and zeroes for a tenant without events", async () => {
    const c = await signup(t.app);
    expect(await get(c, "/api/analytics/conversations")).toEqual({ period: "day", series: [] });
    expect(await get(c, "/api/analytics/escalation-rate")).toEqual({
      days: 30,
      conversations: 0,
      escalations: 0,
      rate: null,
    });
    expect(await get(c, "/api/analytics/ingestion")).toEqual({
      days: 30,
      started: 0,
      completed: 0,
      failed: 0,
      chunks: 0,
      failureRate: null,
      series: [],
      failuresByCode: [],
    });
    expect(await get(c, "/api/analytics/quota-friction")).toEqual({
      days: 30,
      total: 0,
      byQuota: [],
    });
    const funnel = await get(c, "/api/analytics/plan-funnel");
    expect(funnel.steps.every((s: { events: number }) => s.events === 0)).toBe(true);
    expect(funnel.transitions).toEqual([]);
  });

  it("gives ingestion throughput per day and the failure rate", async () => {
    expect(await get(a, "/api/analytics/ingestion?days=7")).toEqual({
      days: 7,
      started: 4,
      completed: 2,
      failed: 1,
      chunks: 10,
      failureRate: 1 / 3,
      series: [
        { day: "2027-06-14T00:00:00.000Z", started: 2, completed: 1, failed: 0, chunks: 4 },
        { day: TODAY, started: 2, completed: 1, failed: 1, chunks: 6 },
      ],
      failuresByCode: [{ errorCode: "ingestion.url_http_error", count: 1 }],
    });
  });

  it("gives quota friction by quota", async () => {
    expect(await get(a, "/api/analytics/quota-friction")).toEqual({
      days: 30,
      total: 3,
      byQuota: [
        { quotaType: "documents", count: 2, tenants: 1 },
        { quotaType: "searches", count: 1, tenants: 1 },
      ],
    });
    expect((await get(a, "/api/analytics/quota-friction?days=2")).total).toBe(0);
  });

  it("gives the plan funnel and its transitions", async () => {
    expect(await get(a, "/api/analytics/plan-funnel")).toEqual({
      days: 90,
      steps: [
        { name: "trial_started", events: 1, tenants: 1 },
        { name: "checkout_completed", events: 1, tenants: 1 },
        { name: "plan_updated", events: 2, tenants: 1 },
        { name: "subscription_canceled", events: 0, tenants: 0 },
      ],
      transitions: [
        { from: "pro", to: "business", count: 1 },
        { from: "trial", to: "pro", count: 1 },
      ],
    });
    expect((await get(a, "/api/analytics/plan-funnel?days=7")).steps[2]).toEqual({
      name: "plan_updated",
      events: 1,
      tenants: 1,
    });
  });

  it("lets platform admins read one tenant's figures or every tenant's", async () => {
    expect(await get(null, `/api/admin/analytics/escalation-rate?tenantId=${a.tenantId}`)).toEqual(
      await get(a, "/api/analytics/escalation-rate"),
    );
    expect(await get(null, "/api/admin/analytics/escalation-rate")).toEqual({
      days: 30,
      conversations: 6,
      escalations: 3,
      rate: 0.5,
    });
    expect((await get(null, "/api/admin/analytics/conversations")).series.at(-1)).toEqual({
      start: TODAY,
      count: 4,
    });
    const ingestion = await get(null, "/api/admin/analytics/ingestion");
    expect(ingestion).toMatchObject({ started: 4, completed: 2, failed: 2, failureRate: 0.5 });
    expect(ingestion.failuresByCode).toEqual([
      { errorCode: "ingestion.url_http_error", count: 1 },
      { errorCode: "ingestion.url_timeout", count: 1 },
    ]);
    const funnel = await get(null, "/api/admin/analytics/plan-funnel");
    expect(funnel.steps[0]).toEqual({ name: "trial_started", events: 2, tenants: 2 });
    expect((await get(null, "/api/admin/analytics/quota-friction")).total).toBe(3);
    // B sees only its own.
    expect(await get(b, "/api/analytics/escalation-rate")).toMatchObject({
      conversations: 1,
      escalations: 1,
      rate: 1,
    });
  });
});
