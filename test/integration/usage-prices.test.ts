import { randomBytes, randomUUID } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BillableFact, createUsageService } from "../../src/modules/usage/index.js";
import { createTestClock } from "../../src/platform/clock.js";
import { jobContext, type PlatformContext } from "../../src/tenancy.js";
import {
  apiKeyWithScopes,
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";
import { settle } from "../fixtures/ingest.js";
import { costUnits, units, usageEvents } from "../fixtures/usage.js";

const KEY = `sk-platform-${randomBytes(8).toString("hex")}`;
const HOUR = 3_600_000;
const at = (iso: string, plusMs = 0) => new Date(new Date(iso).getTime() + plusMs);

describe.each(backends)("price book and re-rating ($name)", (backend) => {
  let t: TestApp;
  let fake: FakeOpenAI;
  const clock = createTestClock(new Date("2030-01-01T00:00:00Z"));
  let admin: { token: string; userId: string; email: string; password: string };
  let owner: SignedUp;

  beforeAll(async () => {
    fake = await startFakeOpenAI({ keys: [KEY] });
    t = await startApp(
      backend,
      { OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: KEY },
      { workers: true, clock },
    );
    const email = uniqueEmail("platform");
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const user = await t.ctx.auth.createPlatformAdmin({ email, password });
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password },
    });
    admin = { token: login.json().token, userId: user.id, email, password };
    owner = await signup(t.app);
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  const asAdmin = (method: "GET" | "POST", url: string, payload?: unknown) =>
    t.app.inject({
      method,
      url,
      headers: bearer(admin.token),
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });

  async function addPrice(body: Record<string, unknown>) {
    const res = await asAdmin("POST", "/api/admin/prices", body);
    expect(res.statusCode, res.body).toBe(201);
    return res.json();
  }

  function adminContext(): PlatformContext {
    return {
      actor: { kind: "platform_admin", userId: admin.userId, sessionId: randomUUID() },
      request: { id: randomUUID(), ip: "127.0.0.1", userAgent: null },
    };
  }

  /** Records facts for a tenant as a job would, at the given times. */
  function record(tenantId: string, facts: BillableFact[]) {
    const ctx = jobContext({ tenantId, job: { id: randomUUID(), name: "test" }, causedBy: null });
    return t.ctx.usage.record(ctx, facts);
  }

  const fact = (
    provider: string,
    model: string,
    quantity: number,
    occurredAt: Date,
  ): BillableFact => ({
    metric: "embedding_tokens",
    quantity,
    provider,
    model,
    payer: "platform",
    subject: { type: "document_version", id: randomUUID() },
    occurredAt,
  });

  it("closes every route to tenants, their owners and keys included", async () => {
    const adminKey = await apiKeyWithScopes(t.app, owner, ["admin"]);
    const routes: Array<["GET" | "POST", string, unknown]> = [
      ["GET", "/api/admin/prices", undefined],
      [
        "POST",
        "/api/admin/prices",
        {
          provider: "x",
          model: "y",
          unit: "call",
          usdPerUnit: "1",
          effectiveFrom: "2030-01-01T00:00:00Z",
        },
      ],
      [
        "POST",
        "/api/admin/usage/rerate",
        { from: "2020-01-01T00:00:00Z", to: "2040-01-01T00:00:00Z" },
      ],
      ["GET", "/api/admin/usage/rerates", undefined],
    ];
    for (const [method, url, payload] of routes) {
      for (const headers of [bearer(owner.token), { "x-api-key": adminKey }]) {
        const res = await t.app.inject({
          method,
          url,
          headers,
          ...(payload ? { payload: payload as object } : {}),
        });
        expectError(res, 403, "auth.platform_admin_required");
      }
    }
    // Nothing was added or run by those attempts.
    const prices = (await asAdmin("GET", "/api/admin/prices?provider=x")).json();
    expect(prices.items).toEqual([]);
    expect((await asAdmin("GET", "/api/admin/usage/rerates")).json().items).toEqual([]);
  });

  it("adds prices, lists them by provider and model, and refuses a duplicate with 409", async () => {
    const provider = `acme-${randomBytes(4).toString("hex")}`;
    const p = await addPrice({
      provider,
      model: "embed-1",
      unit: "input_token",
      usdPerUnit: 2e-8, // a JSON number in exponent form is taken exactly
      effectiveFrom: "2029-06-01T00:00:00+02:00",
      note: "launch price",
    });
    expect(p).toMatchObject({
      provider,
      model: "embed-1",
      unit: "input_token",
      effectiveFrom: "2029-05-31T22:00:00.000Z",
      note: "launch price",
      createdBy: admin.userId,
    });
    expect(units(p.usdPerUnit, 15)).toBe(units("0.00000002", 15));
    await addPrice({
      provider,
      model: "*",
      unit: "input_token",
      usdPerUnit: "0",
      effectiveFrom: "2029-01-01T00:00:00Z",
    });
    const dup = await asAdmin("POST", "/api/admin/prices", {
      provider,
      model: "embed-1",
      unit: "input_token",
      usdPerUnit: "0.5",
      effectiveFrom: "2029-05-31T22:00:00Z",
    });
    expectError(dup, 409, "price.duplicate");

    const all = (await asAdmin("GET", `/api/admin/prices?provider=${provider}`)).json();
    expect(all.items.map((i: { model: string }) => i.model).sort()).toEqual(["*", "embed-1"]);
    const one = (
      await asAdmin("GET", `/api/admin/prices?provider=${provider}&model=embed-1`)
    ).json();
    expect(one.items.map((i: { id: string }) => i.id)).toEqual([p.id]);
    // Cursor pages walk the whole book once.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await asAdmin(
        "GET",
        `/api/admin/prices?provider=${provider}&limit=1${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(res.statusCode, res.body).toBe(200);
      seen.push(...res.json().items.map((i: { id: string }) => i.id));
      cursor = res.json().nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(2);
    // The seeded public prices are there.
    const openai = (
      await asAdmin("GET", "/api/admin/prices?provider=openai&model=text-embedding-3-small")
    ).json();
    expect(openai.items[0]).toMatchObject({ unit: "input_token" });
    expect(units(openai.items[0].usdPerUnit, 15)).toBe(units("0.00000002", 15));
  });

  it.each([
    ["a negative number", { usdPerUnit: -1 }],
    ["a negative string", { usdPerUnit: "-0.1" }],
    ["a word", { usdPerUnit: "cheap" }],
    ["too many decimals", { usdPerUnit: "0.0000000000000001" }],
    ["too large", { usdPerUnit: "10000000000" }],
    ["infinite-looking", { usdPerUnit: "1e400" }],
    ["an impossible date", { effectiveFrom: "2030-13-01T00:00:00Z" }],
    ["a date without offset", { effectiveFrom: "2030-01-01T00:00:00" }],
    ["a date only", { effectiveFrom: "2030-01-01" }],
    ["NUL in the provider", { provider: "open\u0000ai" }],
    ["a control character in the model", { model: "m\u0007" }],
    ["an empty model", { model: "  " }],
    ["an unknown unit", { unit: "token" }],
    ["an unknown field", { currency: "EUR" }],
  ])("refuses a price with %s (400)", async (_label, patch) => {
    const res = await asAdmin("POST", "/api/admin/prices", {
      provider: "acme",
      model: "m",
      unit: "call",
      usdPerUnit: "0.01",
      effectiveFrom: "2030-01-01T00:00:00Z",
      ...patch,
    });
    expectError(res, 400, "validation.failed");
  });

  it.each([
    [
      "from after to",
      { from: "2030-02-01T00:00:00Z", to: "2030-01-01T00:00:00Z" },
      "usage.invalid_window",
    ],
    [
      "an empty window",
      { from: "2030-01-01T00:00:00Z", to: "2030-01-01T00:00:00Z" },
      "usage.invalid_window",
    ],
    ["a bad date", { from: "yesterday", to: "2030-01-01T00:00:00Z" }, "validation.failed"],
    ["no to", { from: "2030-01-01T00:00:00Z" }, "validation.failed"],
    [
      "NUL in the model",
      { from: "2030-01-01T00:00:00Z", to: "2030-02-01T00:00:00Z", model: "a\u0000" },
      "validation.failed",
    ],
  ])("refuses a re-rating with %s (400)", async (_label, body, code) => {
    expectError(await asAdmin("POST", "/api/admin/usage/rerate", body), 400, code);
  });

  it("refuses bad list parameters with 400", async () => {
    expectError(await asAdmin("GET", "/api/admin/prices?cursor=nope"), 400, "validation.failed");
    expectError(await asAdmin("GET", "/api/admin/prices?limit=0"), 400, "validation.failed");
    expectError(await asAdmin("GET", "/api/admin/usage/rerates?limit=x"), 400, "validation.failed");
    expectError(await asAdmin("GET", "/api/admin/prices?provider=%00"), 400, "validation.failed");
  });

  it("costs an event at the price in force at its time: exact model, else the provider's '*', else none", async () => {
    const provider = `acme-${randomBytes(4).toString("hex")}`;
    const T0 = "2030-03-01T00:00:00Z";
    const T1 = "2030-03-02T00:00:00Z";
    await addPrice({
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.001",
      effectiveFrom: T0,
    });
    await addPrice({
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.002",
      effectiveFrom: T1,
    });
    await addPrice({
      provider,
      model: "*",
      unit: "input_token",
      usdPerUnit: "0.0005",
      effectiveFrom: T0,
    });
    const s = await signup(t.app);
    const facts = [
      fact(provider, "m", 1000, at(T0, -1)), // before any price: none, 0
      fact(provider, "m", 1000, at(T0, HOUR)), // 0.001
      fact(provider, "m", 1000, at(T1)), // the new price is in force from its instant: 0.002
      fact(provider, "m", 333, at(T1, HOUR)), // 0.002
      fact(provider, "other", 1000, at(T0, HOUR)), // the provider's '*': 0.0005
    ];
    const recorded = await record(s.tenantId, facts);
    expect(recorded.map((r) => r.recorded)).toEqual([true, true, true, true, true]);
    expect(recorded.map((r) => units(r.costUsd))).toEqual([
      0n,
      costUnits(1000, "0.001"),
      costUnits(1000, "0.002"),
      costUnits(333, "0.002"),
      costUnits(1000, "0.0005"),
    ]);
    const events = await usageEvents(t.ctx, { tenantId: s.tenantId });
    expect(
      events.find((e) => e.occurred_at.getTime() === at(T0, -1).getTime())?.price_id,
    ).toBeNull();

    // The same facts again: nothing new, and each answers its stored cost, even after a price
    // change that would cost them differently now.
    await addPrice({
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.009",
      effectiveFrom: "2030-03-01T12:00:00Z",
    });
    const again = await record(s.tenantId, facts);
    expect(again.map((r) => r.recorded)).toEqual([false, false, false, false, false]);
    expect(again.map((r) => r.costUsd)).toEqual(recorded.map((r) => r.costUsd));
    expect(await usageEvents(t.ctx, { tenantId: s.tenantId })).toHaveLength(5);
  });

  it("the same fact recorded concurrently is one event, and the same price added concurrently is one row", async () => {
    const provider = `acme-${randomBytes(4).toString("hex")}`;
    const body = {
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.001",
      effectiveFrom: "2030-04-01T00:00:00Z",
    };
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => asAdmin("POST", "/api/admin/prices", body)),
    );
    expect(answers.map((r) => r.statusCode).sort()).toEqual([
      201, 409, 409, 409, 409, 409, 409, 409,
    ]);
    for (const r of answers.filter((x) => x.statusCode === 409))
      expect(r.json().error.code).toBe("price.duplicate");

    const s = await signup(t.app);
    const one = fact(provider, "m", 1234, at("2030-04-02T00:00:00Z"));
    const results = (
      await Promise.all(Array.from({ length: 8 }, () => record(s.tenantId, [one])))
    ).flat();
    expect(results.filter((r) => r.recorded)).toHaveLength(1);
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect(new Set(results.map((r) => units(r.costUsd)))).toEqual(
      new Set([costUnits(1234, "0.001")]),
    );
    expect(await usageEvents(t.ctx, { tenantId: s.tenantId })).toHaveLength(1);
  });

  it("concurrent re-ratings take turns and each records its run", async () => {
    const runs = await Promise.all(
      Array.from({ length: 3 }, () =>
        asAdmin("POST", "/api/admin/usage/rerate", {
          from: "2030-04-01T00:00:00Z",
          to: "2030-04-03T00:00:00Z",
        }),
      ),
    );
    expect(runs.map((r) => r.statusCode)).toEqual([200, 200, 200]);
    // Nothing changed prices in that window since recording: no run changes anything.
    expect(runs.map((r) => r.json().eventsChanged)).toEqual([0, 0, 0]);
    const listed = (await asAdmin("GET", "/api/admin/usage/rerates?limit=3")).json();
    expect(new Set(listed.items.map((r: { id: string }) => r.id))).toEqual(
      new Set(runs.map((r) => r.json().id)),
    );
  });

  it("re-rating changes exactly the events inside its window and filters, and records the run", async () => {
    const provider = `acme-${randomBytes(4).toString("hex")}`;
    const other = `acme-${randomBytes(4).toString("hex")}`;
    const T0 = "2030-05-01T00:00:00Z";
    for (const p of [provider, other])
      await addPrice({
        provider: p,
        model: "m",
        unit: "input_token",
        usdPerUnit: "0.001",
        effectiveFrom: T0,
      });
    await addPrice({
      provider,
      model: "n",
      unit: "input_token",
      usdPerUnit: "0.001",
      effectiveFrom: T0,
    });
    const a = await signup(t.app);
    const b = await signup(t.app);
    // Tenant A: m at +1h, +2h (in the window), +30h (after it); n at +1h (other model).
    // Tenant B: m at +1h; the other provider's m at +1h.
    const aFacts = [
      fact(provider, "m", 1000, at(T0, HOUR)),
      fact(provider, "m", 2000, at(T0, 2 * HOUR + 5)),
      fact(provider, "m", 4000, at(T0, 30 * HOUR)),
      fact(provider, "n", 1000, at(T0, HOUR)),
    ];
    const bFacts = [fact(provider, "m", 500, at(T0, HOUR)), fact(other, "m", 500, at(T0, HOUR))];
    await record(a.tenantId, aFacts);
    await record(b.tenantId, bFacts);
    const costs = async (tenantId: string) =>
      Object.fromEntries(
        (await usageEvents(t.ctx, { tenantId })).map((e) => [
          e.subject_id,
          [e.cost_usd, e.price_id],
        ]),
      );
    const aBefore = await costs(a.tenantId);
    const bBefore = await costs(b.tenantId);

    // The correction: m cost 0.003 from T0, for this provider only.
    const corrected = await addPrice({
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.003",
      effectiveFrom: "2030-05-01T00:00:00.001Z",
    });
    const res = await asAdmin("POST", "/api/admin/usage/rerate", {
      from: T0,
      to: at(T0, 24 * HOUR).toISOString(),
      provider,
      model: "m",
    });
    expect(res.statusCode, res.body).toBe(200);
    const run = res.json();
    expect(run).toMatchObject({
      createdBy: admin.userId,
      from: "2030-05-01T00:00:00.000Z",
      to: "2030-05-02T00:00:00.000Z",
      provider,
      model: "m",
      eventsMatched: 3,
      eventsChanged: 3,
    });
    expect(units(run.oldCostUsd)).toBe(costUnits(3500, "0.001"));
    expect(units(run.newCostUsd)).toBe(costUnits(3500, "0.003"));
    const totals = Object.fromEntries(run.totals.map((x: { tenantId: string }) => [x.tenantId, x]));
    expect(totals[a.tenantId]).toMatchObject({ events: 2, changed: 2 });
    expect(units(totals[a.tenantId].oldCostUsd)).toBe(costUnits(3000, "0.001"));
    expect(units(totals[a.tenantId].newCostUsd)).toBe(costUnits(3000, "0.003"));
    expect(totals[b.tenantId]).toMatchObject({ events: 1, changed: 1 });
    expect(units(totals[b.tenantId].newCostUsd)).toBe(costUnits(500, "0.003"));
    // The hours whose roll-ups must be recomputed, per tenant.
    const windows = Object.fromEntries(
      run.windows.map((w: { tenantId: string; hours: string[] }) => [w.tenantId, w.hours]),
    );
    expect(windows[a.tenantId]).toEqual(["2030-05-01T01:00:00.000Z", "2030-05-01T02:00:00.000Z"]);
    expect(windows[b.tenantId]).toEqual(["2030-05-01T01:00:00.000Z"]);

    // Exactly those events changed, to the corrected price.
    const aAfter = await costs(a.tenantId);
    const bAfter = await costs(b.tenantId);
    const changed = (x: Record<string, unknown>, y: Record<string, unknown>) =>
      Object.keys(x).filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]));
    expect(changed(aBefore, aAfter).sort()).toEqual(
      [aFacts[0]?.subject.id, aFacts[1]?.subject.id].sort(),
    );
    expect(changed(bBefore, bAfter)).toEqual([bFacts[0]?.subject.id]);
    expect(aAfter[aFacts[0]?.subject.id as string]?.[1]).toBe(corrected.id);

    // Listed, newest first, with the same figures; a run that finds nothing to change says so.
    const again = await asAdmin("POST", "/api/admin/usage/rerate", {
      from: T0,
      to: "2030-05-02T00:00:00Z",
      provider,
      model: "m",
    });
    expect(again.json()).toMatchObject({ eventsMatched: 3, eventsChanged: 0, windows: [] });
    const page1 = (await asAdmin("GET", "/api/admin/usage/rerates?limit=1")).json();
    expect(page1.items.map((r: { id: string }) => r.id)).toEqual([again.json().id]);
    const page2 = (
      await asAdmin("GET", `/api/admin/usage/rerates?limit=1&cursor=${page1.nextCursor}`)
    ).json();
    expect(page2.items[0]).toEqual(run);
  });

  it("re-rating carries the new cost to the documents' figures, in one transaction with the roll-up hook", async () => {
    clock.set(new Date("2031-01-01T10:00:00Z"));
    // Tokens issued a year ago have expired: the admin logs in again.
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: admin.email, password: admin.password },
    });
    admin.token = login.json().token;
    const s = await signup(t.app);
    const cfg = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { embeddingProvider: "openai" },
    });
    expect(cfg.statusCode, cfg.body).toBe(200);
    const ing = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { title: "Prices", content: "Everything on the menu costs less on Mondays." },
    });
    const documentId = ing.json().documentId as string;
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
    const [event] = await usageEvents(t.ctx, { tenantId: s.tenantId, metric: "embedding_tokens" });
    expect(units(event?.cost_usd as string)).toBe(
      costUnits(event?.quantity as number, "0.00000002"),
    );

    await addPrice({
      provider: "openai",
      model: "text-embedding-3-small",
      unit: "input_token",
      usdPerUnit: "0.00000005",
      effectiveFrom: "2031-01-01T00:00:00Z",
    });
    const window = { from: new Date("2031-01-01T00:00:00Z"), to: new Date("2031-01-02T00:00:00Z") };

    // A roll-up hook that fails rolls the whole run back: no cost, no document figure, no run.
    const failing = createUsageService({
      db: t.ctx.db,
      clock,
      logger: pino({ level: "silent" }),
      audit: t.ctx.audit,
      rerateHooks: {
        onVersionCosts: (changes, { tx }) => t.ctx.documents.setEmbeddingCosts(changes, { tx }),
        async onRerated() {
          throw new Error("roll-ups unavailable");
        },
      },
    });
    await expect(failing.rerating.run(adminContext(), window)).rejects.toThrow(
      "roll-ups unavailable",
    );
    const unchanged = await usageEvents(t.ctx, {
      tenantId: s.tenantId,
      metric: "embedding_tokens",
    });
    expect(unchanged[0]?.cost_usd).toBe(event?.cost_usd);
    const docBefore = (
      await t.app.inject({ url: `/api/documents/${documentId}`, headers: bearer(s.token) })
    ).json();
    expect(units(docBefore.embeddingCostUsd)).toBe(units(event?.cost_usd as string));

    const told: unknown[] = [];
    const usage = createUsageService({
      db: t.ctx.db,
      clock,
      logger: pino({ level: "silent" }),
      audit: t.ctx.audit,
      rerateHooks: {
        onVersionCosts: (changes, { tx }) => t.ctx.documents.setEmbeddingCosts(changes, { tx }),
        async onRerated(windows) {
          told.push(windows);
        },
      },
    });
    const run = await usage.rerating.run(adminContext(), { ...window, provider: "openai" });
    expect(told).toEqual([run.windows]);
    expect(run.windows).toContainEqual({
      tenantId: s.tenantId,
      hours: ["2031-01-01T10:00:00.000Z"],
    });
    const [rerated] = await usageEvents(t.ctx, {
      tenantId: s.tenantId,
      metric: "embedding_tokens",
    });
    expect(units(rerated?.cost_usd as string)).toBe(
      costUnits(event?.quantity as number, "0.00000005"),
    );
    const doc = (
      await t.app.inject({ url: `/api/documents/${documentId}`, headers: bearer(s.token) })
    ).json();
    const versions = (
      await t.app.inject({ url: `/api/documents/${documentId}/versions`, headers: bearer(s.token) })
    ).json().items;
    expect(units(doc.embeddingCostUsd)).toBe(units(rerated?.cost_usd as string));
    expect(units(versions[0].embeddingCostUsd)).toBe(units(rerated?.cost_usd as string));
  });
});
