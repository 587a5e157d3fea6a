import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { QuotaType } from "../../src/modules/quotas/index.js";
import { createQuotasService } from "../../src/modules/quotas/index.js";
import { createTestClock } from "../../src/platform/clock.js";
import type { Db } from "../../src/platform/db/index.js";
import type { Embedder } from "../../src/platform/embeddings/embedder.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";
import { settle } from "../fixtures/ingest.js";

const DAY_MS = 86_400_000;

describe.each(backends)("quotas ($name)", (backend) => {
  let t: TestApp;
  const clock = createTestClock(Date.now());
  /** Embedding calls per tenant (the local embedder, counted). */
  const embedCalls = new Map<string, number>();

  beforeAll(async () => {
    t = await startApp(backend, {}, { workers: true, clock });
    const local = t.ctx.embedders.local;
    const counting: Embedder = {
      ...local,
      async embed(req) {
        const tenant = currentTenant;
        if (tenant) embedCalls.set(tenant, (embedCalls.get(tenant) ?? 0) + 1);
        return local.embed(req);
      },
    };
    t.ctx.embedders.local = counting;
  });
  afterAll(() => t.close());

  /** The tenant whose work the counting embedder attributes calls to (one at a time here). */
  let currentTenant: string | undefined;

  const key = (s: SignedUp) => ({ "x-api-key": s.apiKey });

  async function setOverrides(
    tenantId: string,
    overrides: Partial<Record<QuotaType, number | null>>,
  ) {
    const admin = await platformAdminToken(t);
    const res = await t.app.inject({
      method: "PUT",
      url: `/api/admin/customers/${tenantId}/quotas`,
      headers: bearer(admin),
      payload: { overrides },
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  }

  const searchAs = (s: SignedUp, mode = "text") =>
    t.app.inject({
      method: "POST",
      url: "/api/search",
      headers: key(s),
      payload: { query: "opening hours", mode },
    });

  const quotasOf = async (s: SignedUp) => {
    const res = await t.app.inject({ url: "/api/customers/quotas", headers: key(s) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  };

  it("50 concurrent searches against a quota with room for 10: exactly 10 pass", async () => {
    const s = await signup(t.app);
    await setOverrides(s.tenantId, { searches: 10 });
    const answers = await Promise.all(Array.from({ length: 50 }, () => searchAs(s)));
    const ok = answers.filter((r) => r.statusCode === 200);
    const refused = answers.filter((r) => r.statusCode === 429);
    expect(ok.length).toBeLessThanOrEqual(11);
    expect(ok.length).toBe(10);
    expect(refused.length).toBe(40);
    for (const r of refused) {
      const body = expectError(r, 429, "quota.exceeded");
      expect(body.error.details).toMatchObject({ quota: "searches", limit: 10 });
      expect(typeof body.error.details.resetAt).toBe("string");
    }
    const q = await quotasOf(s);
    expect(q.quotas.searches).toMatchObject({ limit: 10, used: 10, reserved: 0, remaining: 0 });
  });

  it("50 concurrent token reservations of 100 against 1000: 10 reserved, the rest refused", async () => {
    const s = await signup(t.app);
    await setOverrides(s.tenantId, { tokens: 1000 });
    const ctx = apiKeyContext(s.tenantId);
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => t.ctx.quotas.reserve(ctx, "tokens", 100)),
    );
    const made = results.filter((r) => r.status === "fulfilled");
    expect(made.length).toBe(10);
    for (const r of results) {
      if (r.status === "rejected")
        expect((r.reason as { code: string }).code).toBe("quota.exceeded");
    }
    const status = await t.ctx.quotas.status(s.tenantId);
    expect(status.tokens).toMatchObject({ used: 0, reserved: 1000, remaining: 0 });
    // Settled with less than reserved: what was not used comes back.
    for (const r of made) {
      if (r.status === "fulfilled") await t.ctx.quotas.settle(ctx, r.value, 60);
    }
    const after = await t.ctx.quotas.status(s.tenantId);
    expect(after.tokens).toMatchObject({ used: 600, reserved: 0, remaining: 400 });
    // A second settle of the same reservation changes nothing.
    const first = made[0];
    if (first?.status === "fulfilled") await t.ctx.quotas.settle(ctx, first.value, 60);
    expect((await t.ctx.quotas.status(s.tenantId)).tokens.used).toBe(600);
  });

  it("answers with X-Quota-* headers for the most constrained quota touched", async () => {
    const s = await signup(t.app);
    await setOverrides(s.tenantId, { searches: 3, tokens: 1_000_000 });
    const first = await searchAs(s, "hybrid");
    expect(first.statusCode, first.body).toBe(200);
    const now = new Date(clock.now());
    const reset = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString();
    expect(first.headers["x-quota-type"]).toBe("searches");
    expect(first.headers["x-quota-limit"]).toBe("3");
    expect(first.headers["x-quota-remaining"]).toBe("2");
    expect(first.headers["x-quota-reset"]).toBe(reset);
    await searchAs(s);
    await searchAs(s);
    const refused = await searchAs(s);
    expectError(refused, 429, "quota.exceeded");
    expect(refused.headers["x-quota-remaining"]).toBe("0");
    expect(refused.headers["x-quota-limit"]).toBe("3");
    // A route that touches no quota carries none.
    const profile = await t.app.inject({ url: "/api/customers/profile", headers: key(s) });
    expect(profile.headers["x-quota-limit"]).toBeUndefined();
  });

  it("a monthly quota starts again at the UTC month boundary", async () => {
    const saved = clock.now();
    try {
      clock.set(Date.UTC(2027, 0, 31, 23, 58));
      const s = await signup(t.app);
      await setOverrides(s.tenantId, { searches: 2 });
      expect((await searchAs(s)).statusCode).toBe(200);
      expect((await searchAs(s)).statusCode).toBe(200);
      const refused = expectError(await searchAs(s), 429, "quota.exceeded");
      expect(refused.error.details.resetAt).toBe("2027-02-01T00:00:00.000Z");
      clock.set(Date.UTC(2027, 1, 1, 0, 0, 1));
      const next = await searchAs(s);
      expect(next.statusCode, next.body).toBe(200);
      const q = await quotasOf(s);
      expect(q.quotas.searches).toMatchObject({
        used: 1,
        periodStart: "2027-02-01T00:00:00.000Z",
        resetAt: "2027-03-01T00:00:00.000Z",
      });
    } finally {
      clock.set(saved);
    }
  });

  it("after the trial ends, ingest and search answer 402 plan.trial_expired", async () => {
    const saved = clock.now();
    const s = await signup(t.app);
    try {
      clock.advance(15 * DAY_MS);
      expectError(await searchAs(s), 402, "plan.trial_expired");
      const ingest = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: key(s),
        payload: { title: "Late", content: "Too late for the trial." },
      });
      expectError(ingest, 402, "plan.trial_expired");
      const q = await quotasOf(s);
      expect(q).toMatchObject({ plan: "trial", trialExpired: true });
      expect((await t.app.inject({ url: "/api/documents", headers: key(s) })).json().items).toEqual(
        [],
      );
    } finally {
      clock.set(saved);
    }
    expect((await searchAs(s)).statusCode).toBe(200);
  });

  it("the worker refuses a version whose tokens do not fit before calling the embedder", async () => {
    const s = await signup(t.app);
    await setOverrides(s.tenantId, { tokens: 5 });
    currentTenant = s.tenantId;
    try {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: key(s),
        payload: {
          title: "Long",
          content: "A document with far more than five tokens in it, to be refused. ".repeat(20),
        },
      });
      expect(res.statusCode, res.body).toBe(202);
      const done = await settle(t.app, s.token, res.json().documentId);
      expect(done.status).toBe("failed");
      expect(done.error?.code).toBe("quota.exceeded");
      // Not retried: one attempt.
      expect(done.job?.attempts).toBe(1);
      expect(embedCalls.get(s.tenantId) ?? 0).toBe(0);
      const q = await quotasOf(s);
      expect(q.quotas.tokens).toMatchObject({ used: 0, reserved: 0 });
    } finally {
      currentTenant = undefined;
    }
  });

  it("the worker settles the embedded tokens; the submit path refuses once they are used up", async () => {
    const s = await signup(t.app);
    currentTenant = s.tenantId;
    try {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: key(s),
        payload: { title: "Hours", content: "We open at nine and close at five on weekdays." },
      });
      expect(res.statusCode, res.body).toBe(202);
      const id = res.json().documentId;
      expect((await settle(t.app, s.token, id)).status).toBe("completed");
      expect(embedCalls.get(s.tenantId)).toBe(1);
      const doc = (await t.app.inject({ url: `/api/documents/${id}`, headers: key(s) })).json();
      const q = await quotasOf(s);
      expect(doc.embeddingTokens).toBeGreaterThan(0);
      expect(q.quotas.tokens).toMatchObject({ used: doc.embeddingTokens, reserved: 0 });
      expect(q.quotas.documents.used).toBe(1);
      expect(q.quotas.storage_bytes.used).toBe(doc.fileSizeBytes);

      // Exactly used up: the next submission is refused at once (no version, no job).
      await setOverrides(s.tenantId, { tokens: doc.embeddingTokens });
      const refused = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: key(s),
        payload: { title: "More", content: "Another one." },
      });
      const body = expectError(refused, 429, "quota.exceeded");
      expect(body.error.details).toMatchObject({ quota: "tokens", limit: doc.embeddingTokens });
      expect(refused.headers["x-quota-remaining"]).toBe("0");
      // The documents quota, at submit.
      await setOverrides(s.tenantId, { documents: 1 });
      const second = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: key(s),
        payload: { title: "Second", content: "A second document." },
      });
      expect(expectError(second, 429, "quota.exceeded").error.details.quota).toBe("documents");
    } finally {
      currentTenant = undefined;
    }
  });

  it("reservations a crash left behind expire and the sweep gives them back", async () => {
    const s = await signup(t.app);
    await setOverrides(s.tenantId, { tokens: 1000 });
    const ctx = apiKeyContext(s.tenantId);
    const lost = await t.ctx.quotas.reserve(ctx, "tokens", 700);
    await expect(t.ctx.quotas.reserve(ctx, "tokens", 400)).rejects.toMatchObject({
      code: "quota.exceeded",
    });
    const saved = clock.now();
    try {
      clock.advance(29 * 60_000);
      await t.ctx.quotas.sweep();
      expect((await t.ctx.quotas.status(s.tenantId)).tokens.reserved).toBe(700);
      clock.advance(2 * 60_000);
      await t.ctx.quotas.sweep();
      expect((await t.ctx.quotas.status(s.tenantId)).tokens).toMatchObject({
        reserved: 0,
        used: 0,
      });
      // The work was done after all: a late settle still counts it, once.
      await t.ctx.quotas.settle(ctx, lost, 650);
      await t.ctx.quotas.settle(ctx, lost, 650);
      expect((await t.ctx.quotas.status(s.tenantId)).tokens).toMatchObject({
        reserved: 0,
        used: 650,
      });
    } finally {
      clock.set(saved);
    }
  });

  it("the quotas.sweep job of the job catalog gives back what expired", async () => {
    const s = await signup(t.app);
    const ctx = apiKeyContext(s.tenantId);
    await t.ctx.quotas.reserve(ctx, "searches", 3);
    const saved = clock.now();
    try {
      clock.advance(31 * 60_000);
      await t.ctx.queue.enqueue("quotas.sweep", { tenantId: null });
      const deadline = Date.now() + 20_000;
      while ((await t.ctx.quotas.status(s.tenantId)).searches.reserved !== 0) {
        if (Date.now() > deadline) expect.fail("the sweep job did not give the reservation back");
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      clock.set(saved);
    }
  });

  it("a released reservation gives its amount back", async () => {
    const s = await signup(t.app);
    await setOverrides(s.tenantId, { tokens: 100 });
    const ctx = apiKeyContext(s.tenantId);
    const r = await t.ctx.quotas.reserve(ctx, "tokens", 100);
    await t.ctx.quotas.release(r);
    await t.ctx.quotas.release(r);
    expect((await t.ctx.quotas.status(s.tenantId)).tokens).toMatchObject({
      reserved: 0,
      used: 0,
      remaining: 100,
    });
  });

  it("fails closed: when the quota store errors, search and ingest answer 503 and do nothing", async () => {
    const s = await signup(t.app);
    currentTenant = s.tenantId;
    await t.ctx.db.exec("alter table quota_counters rename to quota_counters_gone");
    try {
      const searched = await searchAs(s, "hybrid");
      expectError(searched, 503, "quota.unavailable");
      const ingest = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: key(s),
        payload: { title: "Unmetered?", content: "Never done unmetered." },
      });
      expectError(ingest, 503, "quota.unavailable");
    } finally {
      await t.ctx.db.exec("alter table quota_counters_gone rename to quota_counters");
      currentTenant = undefined;
    }
    expect(embedCalls.get(s.tenantId) ?? 0).toBe(0);
    const docs = await t.app.inject({ url: "/api/documents", headers: key(s) });
    expect(docs.json().items).toEqual([]);
    expect((await t.ctx.quotas.status(s.tenantId)).searches.used).toBe(0);
  });

  it("fails closed on a database that errors: 503 quota.unavailable, no reservation", async () => {
    const s = await signup(t.app);
    const broken: Db = {
      ...t.ctx.db,
      kind: t.ctx.db.kind,
      query: async () => {
        throw new Error("connection refused");
      },
      run: async () => {
        throw new Error("connection refused");
      },
      transaction: async () => {
        throw new Error("connection refused");
      },
    };
    const quotas = createQuotasService({
      db: broken,
      tenants: t.ctx.tenants,
      clock,
      logger: t.ctx.logger,
      levels: async () => ({ documents: 0, storageBytes: 0 }),
      audit: t.ctx.audit,
      events: t.ctx.events,
    });
    const ctx = apiKeyContext(s.tenantId);
    await expect(quotas.reserve(ctx, "searches", 1)).rejects.toMatchObject({
      code: "quota.unavailable",
    });
    await expect(quotas.assertAvailable(ctx, ["tokens"])).rejects.toMatchObject({
      code: "quota.unavailable",
    });
    expect((await t.ctx.quotas.status(s.tenantId)).searches.reserved).toBe(0);
  });

  describe("plans and overrides", () => {
    it("platform admins read and change plans; tenants may not", async () => {
      const s = await signup(t.app);
      const admin = await platformAdminToken(t);
      const list = await t.app.inject({ url: "/api/admin/plans", headers: bearer(admin) });
      expect(list.statusCode, list.body).toBe(200);
      const ids = list.json().plans.map((p: { id: string }) => p.id);
      expect(ids).toEqual(expect.arrayContaining(["trial", "free", "pro", "enterprise"]));
      const trial = list.json().plans.find((p: { id: string }) => p.id === "trial");
      expect(trial.quotas).toMatchObject({ tokens: 1_000_000, searches: 5000, documents: 1000 });

      for (const headers of [bearer(s.token), key(s)]) {
        expectError(
          await t.app.inject({ url: "/api/admin/plans", headers }),
          403,
          "auth.platform_admin_required",
        );
        expectError(
          await t.app.inject({
            method: "PUT",
            url: "/api/admin/plans/free",
            headers,
            payload: { quotas: { searches: 1 } },
          }),
          403,
          "auth.platform_admin_required",
        );
        expectError(
          await t.app.inject({
            method: "PUT",
            url: `/api/admin/customers/${s.tenantId}/quotas`,
            headers,
            payload: { overrides: { searches: 1_000_000 } },
          }),
          403,
          "auth.platform_admin_required",
        );
      }
      // A platform admin is no tenant.
      expectError(
        await t.app.inject({ url: "/api/customers/quotas", headers: bearer(admin) }),
        403,
        "auth.tenant_required",
      );

      const changed = await t.app.inject({
        method: "PUT",
        url: "/api/admin/plans/free",
        headers: bearer(admin),
        payload: { quotas: { searches: 1234, chat_messages: null } },
      });
      expect(changed.statusCode, changed.body).toBe(200);
      expect(changed.json().quotas).toMatchObject({
        searches: 1234,
        chat_messages: null,
        tokens: 200_000,
      });
      const back = await t.app.inject({
        method: "PUT",
        url: "/api/admin/plans/free",
        headers: bearer(admin),
        payload: { quotas: { searches: 1000, chat_messages: 200 } },
      });
      expect(back.statusCode, back.body).toBe(200);
    });

    it("a tenant's overrides replace its plan's limits, and go back to them", async () => {
      const s = await signup(t.app);
      const set = await setOverrides(s.tenantId, { searches: 7, tokens: null });
      expect(set.quotas.searches).toMatchObject({ limit: 7, source: "override" });
      expect(set.quotas.tokens).toMatchObject({ limit: null, remaining: null, source: "override" });
      expect(set.quotas.documents).toMatchObject({ limit: 1000, source: "plan" });
      const mine = await quotasOf(s);
      expect(mine.quotas.searches.limit).toBe(7);
      const reset = await setOverrides(s.tenantId, {});
      expect(reset.quotas.searches).toMatchObject({ limit: 5000, source: "plan" });
      expect(reset.quotas.tokens).toMatchObject({ limit: 1_000_000, source: "plan" });
    });

    it("bad input is a 4xx with a code", async () => {
      const s = await signup(t.app);
      const admin = await platformAdminToken(t);
      const put = (url: string, payload: unknown) =>
        t.app.inject({ method: "PUT", url, headers: bearer(admin), payload: payload as object });
      expectError(
        await put("/api/admin/plans/free", { quotas: { tokens: -1 } }),
        400,
        "validation.failed",
      );
      expectError(
        await put("/api/admin/plans/free", { quotas: { tokens: 1.5 } }),
        400,
        "validation.failed",
      );
      expectError(
        await put("/api/admin/plans/free", { quotas: { bogus: 1 } }),
        400,
        "validation.failed",
      );
      expectError(await put("/api/admin/plans/free", {}), 400, "validation.failed");
      expectError(
        await put("/api/admin/plans/Not%20A%20Plan", { quotas: {} }),
        400,
        "validation.failed",
      );
      expectError(
        await put("/api/admin/plans/nosuch", { quotas: { tokens: 1 } }),
        404,
        "plan.not_found",
      );
      expectError(
        await put("/api/admin/customers/not-a-uuid/quotas", { overrides: {} }),
        400,
        "validation.failed",
      );
      expectError(
        await put("/api/admin/customers/00000000-0000-4000-8000-000000000000/quotas", {
          overrides: {},
        }),
        404,
        "not_found",
      );
      expectError(
        await put(`/api/admin/customers/${s.tenantId}/quotas`, { overrides: { tokens: "lots" } }),
        400,
        "validation.failed",
      );
      expectError(
        await t.app.inject({
          url: "/api/admin/customers/00000000-0000-4000-8000-000000000000/quotas",
          headers: bearer(admin),
        }),
        404,
        "not_found",
      );
    });
  });
});
