import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestClock } from "../../src/platform/clock.js";
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
import {
  type ApiCallSpec,
  insertApiCalls,
  insertUsageEvents,
  mixedUsage,
  type UsageEventSpec,
  unitsToUsd,
} from "../fixtures/usage.js";

/** RFC 4180: fields separated by commas, records by CRLF, quoted fields with "" for a quote. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = "";
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      record.push(field);
      field = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      i++;
    } else field += c;
  }
  if (field !== "" || record.length > 0) throw new Error("the CSV does not end with CRLF");
  return records;
}

const NOW = new Date("2027-03-15T12:30:00Z");
const TRICKY_TITLE = 'Menu "2027", soups,\nstarters\r\nand "desserts"';

describe.each(backends)("usage metrics API ($name)", (backend) => {
  let t: TestApp;
  let a: SignedUp;
  let b: SignedUp;
  let adminToken: string;
  let docId: string;
  const clock = createTestClock(NOW);
  let calls: ApiCallSpec[];
  let events: UsageEventSpec[];
  const get = (s: { token: string }, url: string, headers: Record<string, string> = {}) =>
    t.app.inject({ method: "GET", url, headers: { ...bearer(s.token), ...headers } });

  beforeAll(async () => {
    // The figures are of the seeded rows: this test's own requests, recorded at the test clock's
    // NOW, would land in its windows whenever a telemetry flush fell between two of its reads.
    t = await startApp(backend, { TELEMETRY_ENABLED: "false" }, { clock });
    a = await signup(t.app, { companyName: "Metrics A" });
    b = await signup(t.app, { companyName: "Metrics B" });
    adminToken = await platformAdminToken(t);
    const doc = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(a.token),
      payload: { title: TRICKY_TITLE, content: "The soup of the day." },
    });
    expect(doc.statusCode, doc.body).toBeLessThan(300);
    docId = doc.json().documentId;
    // Three days up to NOW for A, a little for B.
    const from = new Date(NOW.getTime() - 3 * 86_400_000);
    const dataA = mixedUsage(a.tenantId, 3000, from, NOW, 21, [docId]);
    const dataB = mixedUsage(b.tenantId, 500, from, NOW, 22);
    calls = dataA.calls;
    events = dataA.events;
    await insertApiCalls(t.ctx.db, [...dataA.calls, ...dataB.calls]);
    await insertUsageEvents(t.ctx.db, [...dataA.events, ...dataB.events]);
    await t.ctx.usage.rollups.run();
  });
  afterAll(() => t?.close());

  it("answers a time series whose hours, days and month add up to the raw rows", async () => {
    for (const period of ["hour", "day", "month"]) {
      const res = await get(
        a,
        `/api/metrics/usage?period=${period}&from=2027-03-01T00:00:00Z&to=2027-03-16T00:00:00Z`,
      );
      expect(res.statusCode, res.body).toBe(200);
      const items = res.json().items as Array<{
        apiCallsTotal: number;
        searches: number;
        costUsd: string;
      }>;
      expect(items.reduce((s, i) => s + i.apiCallsTotal, 0)).toBe(calls.length);
      expect(items.reduce((s, i) => s + i.searches, 0)).toBe(
        events.filter((e) => e.metric === "search_queries").length,
      );
    }
    const month = await get(a, "/api/customers/usage");
    expect(month.statusCode, month.body).toBe(200);
    const cost = events
      .filter((e) => e.metric !== "documents_stored" && e.metric !== "storage_bytes")
      .reduce((s, e) => s + (e.costUnits ?? 0n), 0n);
    expect(month.json().month.costUsd).toBe(unitsToUsd(cost));
    expect(month.json().month.apiCallsTotal).toBe(calls.length);
  });

  it("exports CSV that parses back to the same numbers, titles with quotes, commas and newlines included", async () => {
    const res = await get(
      a,
      "/api/metrics/export?from=2027-03-01T00:00:00Z&to=2027-03-16T00:00:00Z",
      { accept: "text/csv" },
    );
    expect(res.statusCode, res.body.slice(0, 500)).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/csv/);
    const [header, ...rows] = parseCsv(res.body);
    const col = (name: string) => (header as string[]).indexOf(name);
    expect(rows).toHaveLength(events.length);
    const quantity = rows.reduce((s, r) => s + Number(r[col("quantity")]), 0);
    expect(quantity).toBe(events.reduce((s, e) => s + e.quantity, 0));
    const units = (usd: string) => BigInt(usd.replace(".", ""));
    const cost = rows.reduce((s, r) => s + units(r[col("cost_usd")] as string), 0n);
    expect(cost).toBe(events.reduce((s, e) => s + (e.costUnits ?? 0n), 0n));
    const titled = rows.filter((r) => r[col("document_id")] === docId);
    expect(titled.length).toBe(events.filter((e) => e.documentId === docId).length);
    for (const r of titled) expect(r[col("document_title")]).toBe(TRICKY_TITLE);
    // Ordered by time, and nothing of B's.
    const times = rows.map((r) => r[col("occurred_at")] as string);
    expect([...times].sort()).toEqual(times);
    expect(res.body).not.toContain(b.tenantId);
  });

  it("exports JSON Lines and roll-up rows on request", async () => {
    const res = await get(
      a,
      "/api/metrics/export?format=jsonl&from=2027-03-01T00:00:00Z&to=2027-03-16T00:00:00Z",
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/x-ndjson/);
    const lines = res.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(events.length);
    const usage = await get(
      a,
      "/api/metrics/export?kind=usage&period=day&from=2027-03-01T00:00:00Z&to=2027-03-16T00:00:00Z",
    );
    expect(usage.statusCode).toBe(200);
    const [header, ...days] = parseCsv(usage.body);
    const total = (header as string[]).indexOf("apiCallsTotal");
    expect(days.reduce((s, d) => s + Number(d[total]), 0)).toBe(calls.length);
  });

  it("reports tokens per document, costs by payer, the overview and the day report with its trend", async () => {
    const tokens = await get(
      a,
      "/api/metrics/tokens?from=2027-03-01T00:00:00Z&to=2027-03-16T00:00:00Z",
    );
    expect(tokens.statusCode, tokens.body).toBe(200);
    const [top] = tokens.json().items;
    expect(top.documentId).toBe(docId);
    expect(top.title).toBe(TRICKY_TITLE);
    expect(top.embeddingTokens).toBe(
      events.filter((e) => e.documentId === docId).reduce((s, e) => s + e.quantity, 0),
    );
    const costs = await get(
      a,
      "/api/metrics/costs?period=month&from=2027-03-01T00:00:00Z&to=2027-04-01T00:00:00Z",
    );
    expect(costs.statusCode, costs.body).toBe(200);
    const byPayer = (p: string) =>
      events
        .filter(
          (e) =>
            (e.payer ?? "platform") === p &&
            e.metric !== "documents_stored" &&
            e.metric !== "storage_bytes",
        )
        .reduce((s, e) => s + (e.costUnits ?? 0n), 0n);
    expect(costs.json().totals).toEqual({
      costUsd: unitsToUsd(byPayer("platform") + byPayer("tenant")),
      costPlatformUsd: unitsToUsd(byPayer("platform")),
      costTenantUsd: unitsToUsd(byPayer("tenant")),
    });
    const overview = await get(a, "/api/metrics/overview");
    expect(overview.statusCode, overview.body).toBe(200);
    const dayFrom = NOW.getTime() + 30 * 60_000 - 86_400_000;
    expect(overview.json().last24h.apiCalls).toBe(
      calls.filter((c) => c.occurredAt.getTime() >= dayFrom).length,
    );
    const report = await get(a, "/api/metrics/report?period=day");
    expect(report.statusCode, report.body).toBe(200);
    const r = report.json();
    expect(r.summary.totalApiCalls).toBe(overview.json().last24h.apiCalls);
    const prevCalls = calls.filter(
      (c) => c.occurredAt.getTime() >= dayFrom - 86_400_000 && c.occurredAt.getTime() < dayFrom,
    ).length;
    expect(r.previous.totalApiCalls).toBe(prevCalls);
    expect(r.trend.apiCalls).toBeCloseTo((r.summary.totalApiCalls - prevCalls) / prevCalls, 10);
    expect(r.summary.successRate).toBeGreaterThan(0.5);
    const docs = await get(a, "/api/metrics/documents");
    expect(docs.statusCode, docs.body).toBe(200);
    expect(docs.json().total).toBe(1);
  });

  it("lets members read metrics, and only platform admins the global and per-customer views", async () => {
    const email = uniqueEmail("member");
    const add = await t.app.inject({
      method: "POST",
      url: "/api/customers/users",
      headers: bearer(a.token),
      payload: { email, password: "pw-member-123456", role: "member" },
    });
    expect(add.statusCode, add.body).toBe(201);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password: "pw-member-123456" },
    });
    const member = { token: login.json().token as string };
    expect((await get(member, "/api/metrics/usage")).statusCode).toBe(200);
    expectError(await get(a, "/api/admin/metrics/global"), 403, "auth.platform_admin_required");
    expectError(
      await get(member, `/api/admin/customers/${a.tenantId}/usage`),
      403,
      "auth.platform_admin_required",
    );
    const admin = { token: adminToken };
    const global = await get(admin, "/api/admin/metrics/global");
    expect(global.statusCode, global.body).toBe(200);
    const g = global.json();
    const mine = g.customers.find((c: { tenantId: string }) => c.tenantId === a.tenantId);
    expect(mine?.name).toBe("Metrics A");
    expect(mine?.apiCalls).toBe(calls.length);
    expect(g.topUsers[0]?.documentId).toBe(docId);
    const one = await get(
      admin,
      `/api/admin/customers/${a.tenantId}/usage?period=month&from=2027-03-01T00:00:00Z&to=2027-04-01T00:00:00Z`,
    );
    expect(one.statusCode, one.body).toBe(200);
    expect(one.json().totals.apiCalls).toBe(calls.length);
    expectError(
      await get(admin, "/api/admin/customers/00000000-0000-4000-8000-000000000000/usage"),
      404,
      "not_found",
    );
  });

  it("refuses bad windows and periods with 400", async () => {
    for (const url of [
      "/api/metrics/usage?from=2027-03-02T00:00:00Z&to=2027-03-01T00:00:00Z",
      "/api/metrics/usage?period=hour&from=2027-01-01T00:00:00Z&to=2027-03-01T00:00:00Z",
      "/api/metrics/usage?period=week",
      "/api/metrics/usage?from=yesterday",
      "/api/metrics/usage?from=2027-03-01T00:00:00",
      "/api/metrics/usage?from=2027-03-01T00:00:00Z%00",
      "/api/metrics/export?format=xml",
      "/api/metrics/export?from=2020-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
      "/api/metrics/report?period=year",
      "/api/metrics/tokens?limit=0",
      "/api/metrics/costs?unknown=1",
    ]) {
      const res = await get(a, url);
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
      expect(res.json().error.code).toBe("validation.failed");
    }
  });
});
