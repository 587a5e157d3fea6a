import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kysely, sql } from "../../src/platform/db/index.js";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { settle } from "../fixtures/ingest.js";
import { prng, usageEvents } from "../fixtures/usage.js";

const HOUR = 3_600_000;

/**
 * The whole metering path at once, through the API: telemetry buffer → api_calls, the ledger
 * written by ingestion and search, the roll-ups, the usage route and reconciliation. After
 * 10 000 concurrent mixed requests from two tenants, each tenant's roll-up equals what its
 * clients saw, the raw rows, the ledger and the business rows, and nothing of one tenant is
 * in the other's figures.
 */
describe.each(backends)("metering totals under mixed load ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, {}, { workers: true });
  });
  afterAll(() => t.close());

  const now = () => new Date();
  const monthOf = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
  const nextMonth = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));

  async function ingest(s: SignedUp, title: string, content: string): Promise<void> {
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { title, content },
    });
    expect(res.statusCode, res.body).toBe(202);
    expect((await settle(t.app, s.token, res.json().documentId)).status).toBe("completed");
  }

  /** The tenant's month as the usage route shows it, once the buffer and roll-ups caught up. */
  async function month(s: SignedUp) {
    // The last responses' telemetry is recorded as they finish: give the hooks a turn.
    await new Promise((r) => setTimeout(r, 100));
    await t.ctx.telemetry.flush();
    const from = monthOf(now());
    const to = nextMonth(now());
    await t.ctx.usage.rollups.recompute(s.tenantId, from, to);
    // The raw rows the roll-up was made from (nothing is in flight between the two).
    const raw = await kysely(t.ctx.db)
      .selectFrom("api_calls")
      .select(sql<string>`count(*)::text`.as("n"))
      .where("tenant_id", "=", s.tenantId)
      .executeTakeFirstOrThrow();
    const res = await t.app.inject({
      url: `/api/metrics/usage?period=month&from=${from.toISOString()}&to=${to.toISOString()}`,
      headers: bearer(s.token),
    });
    expect(res.statusCode, res.body).toBe(200);
    const [row] = res.json().items;
    expect(row).toBeDefined();
    // Roll-ups = raw rows.
    expect(row.apiCallsTotal).toBe(Number(raw.n));
    return row as {
      apiCallsTotal: number;
      apiCallsSuccessful: number;
      apiCallsFailed: number;
      searches: number;
      embeddingTokens: number;
    };
  }

  it("10 000 mixed requests: roll-ups = what clients saw = raw rows = ledger = business rows", {
    timeout: 600_000,
  }, async () => {
    const startedAt = now();
    const a = await signup(t.app, { companyName: "Tenant A" });
    const b = await signup(t.app, { companyName: "Tenant B" });
    for (const [s, name] of [
      [a, "A"],
      [b, "B"],
    ] as const) {
      await ingest(s, `${name} hours`, `${name} opens at nine and closes at five on weekdays.`);
      await ingest(s, `${name} refunds`, `${name} refunds purchases within thirty days.`);
    }
    const before = { a: await month(a), b: await month(b) };

    const seen = new Map<string, { total: number; ok: number; failed: number; searches: number }>(
      [a, b].map((s) => [s.tenantId, { total: 0, ok: 0, failed: 0, searches: 0 }]),
    );
    const random = prng(20261202);
    const request = async (i: number) => {
      const s = i % 2 === 0 ? a : b;
      // JWT and API key both: the actor differs, the tenant does not.
      const headers = bearer(random() < 0.5 ? s.token : s.apiKey);
      // 10 % searches (billable, the costly kind), 40 % lists, 30 % 404s, 20 % 400s.
      const r = random();
      const kind = r < 0.1 ? 1 : r < 0.5 ? 0 : r < 0.8 ? 2 : 3;
      const res =
        kind === 0
          ? await t.app.inject({ url: "/api/documents?limit=5", headers })
          : kind === 1
            ? await t.app.inject({
                method: "POST",
                url: "/api/search",
                headers,
                payload: { query: random() < 0.5 ? "opening hours" : "refunds", limit: 3 },
              })
            : kind === 2
              ? await t.app.inject({
                  url: "/api/documents/00000000-0000-4000-8000-000000000000",
                  headers,
                })
              : await t.app.inject({
                  method: "POST",
                  url: "/api/search",
                  headers,
                  payload: { query: "", limit: 3 },
                });
      const c = seen.get(s.tenantId) as {
        total: number;
        ok: number;
        failed: number;
        searches: number;
      };
      c.total++;
      if (res.statusCode < 400) c.ok++;
      else c.failed++;
      if (kind === 1 && res.statusCode === 200) c.searches++;
      // Every kind answers as designed; a 5xx would be a bug whatever the figures say.
      expect(res.statusCode, res.body).toBeLessThan(500);
    };
    const total = 10_000;
    const concurrency = 100;
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) await request(next++);
      }),
    );
    expect([...seen.values()].reduce((n, c) => n + c.total, 0)).toBe(total);

    const after = { a: await month(a), b: await month(b) };
    for (const [s, key] of [
      [a, "a"],
      [b, "b"],
    ] as const) {
      const c = seen.get(s.tenantId) as {
        total: number;
        ok: number;
        failed: number;
        searches: number;
      };
      expect(c.searches).toBeGreaterThan(0);
      const d = (k: "apiCallsTotal" | "apiCallsSuccessful" | "apiCallsFailed" | "searches") =>
        after[key][k] - before[key][k];
      // What the clients saw, plus the read of `before` itself (recorded after it answered).
      expect(d("apiCallsTotal")).toBe(c.total + 1);
      expect(d("apiCallsSuccessful")).toBe(c.ok + 1);
      expect(d("apiCallsFailed")).toBe(c.failed);
      expect(d("searches")).toBe(c.searches);

      // Roll-ups = ledger = business rows: the documents' tokens and the searches' query tokens.
      const docs = await t.app.inject({
        url: "/api/documents?limit=100",
        headers: bearer(s.token),
      });
      const docTokens = (docs.json().items as Array<{ embeddingTokens: number }>).reduce(
        (n, x) => n + x.embeddingTokens,
        0,
      );
      const queryTokens = (
        await usageEvents(t.ctx, {
          tenantId: s.tenantId,
          metric: "embedding_tokens",
          subjectType: "search",
        })
      ).reduce((n, e) => n + Number(e.quantity), 0);
      const searchEvents = await usageEvents(t.ctx, {
        tenantId: s.tenantId,
        metric: "search_queries",
      });
      expect(searchEvents.length).toBe(after[key].searches);
      expect(after[key].embeddingTokens).toBe(docTokens + queryTokens);

      // And reconciliation, over the hours of the test, finds nothing to report.
      const from = new Date(Math.floor(startedAt.getTime() / HOUR) * HOUR).toISOString();
      const to = new Date(Math.ceil((Date.now() + 1) / HOUR) * HOUR).toISOString();
      await t.ctx.usage.rollups.recompute(s.tenantId, new Date(from), new Date(to));
      const rec = await t.app.inject({
        url: `/api/metrics/reconciliation?from=${from}&to=${to}`,
        headers: bearer(s.token),
      });
      expect(rec.statusCode, rec.body).toBe(200);
      expect(rec.json().differences).toEqual([]);
      expect(rec.json().rollups).toBe(true);
    }
    // Nothing of one tenant in the other's figures: each matched its own clients exactly above.
  });
});
