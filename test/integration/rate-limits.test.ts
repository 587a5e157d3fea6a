import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FALLBACK_METRIC } from "../../src/platform/ratelimit/index.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends, TEST_REDIS_URL } from "../fixtures/db.js";

const pk = (group: string) => `:${Buffer.from(group).toString("base64")}:`;

/** The one item of `RateLimit`: `"<policy>";r=<n>;t=<n>;pk=:…:`. */
function serviceLimit(res: LightMyRequestResponse) {
  const value = res.headers.ratelimit;
  expect(typeof value, `RateLimit on ${res.statusCode}`).toBe("string");
  const m = /^"(\w+)";r=(\d+);t=(\d+);pk=(:[A-Za-z0-9+/=]+:)$/.exec(value as string);
  expect(m, String(value)).not.toBeNull();
  const [, policy, r, t, key] = m as RegExpExecArray;
  return { policy, r: Number(r), t: Number(t), pk: key };
}

describe.each(backends)("rate limits ($name)", (backend) => {
  let t: TestApp;
  const store = backend.name === "postgres" && TEST_REDIS_URL ? "redis" : "memory";
  beforeAll(async () => {
    // Each tenant is limited by its own configuration (trial plan: 60/min, 10 000/day).
    t = await startApp(backend, {}, { rateLimits: "tenant" });
  });
  afterAll(() => t.close());

  const searchAs = (s: SignedUp) =>
    t.app.inject({
      method: "POST",
      url: "/api/search",
      headers: bearer(s.token),
      payload: { query: "opening hours" },
    });
  const setLimits = async (s: SignedUp, limits: Record<string, number>) => {
    const res = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: limits,
    });
    expect(res.statusCode, res.body).toBe(200);
  };

  it(`runs on the ${store} store`, () => {
    expect(t.ctx.rateLimits).toBeDefined();
  });

  it("every tenant response carries RateLimit-Policy and RateLimit: successes and errors", async () => {
    const s = await signup(t.app);
    const ok = await t.app.inject({ url: "/api/documents", headers: bearer(s.token) });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers["ratelimit-policy"]).toBe(
      `"minute";q=60;w=60;pk=${pk("management")}, "day";q=10000;w=86400;pk=${pk("management")}`,
    );
    expect(serviceLimit(ok)).toEqual({ policy: "minute", r: 59, t: 60, pk: pk("management") });
    // A 404 from the handler and a 400 from validation carry them too, and count.
    const missing = await t.app.inject({
      url: "/api/documents/00000000-0000-4000-8000-000000000000",
      headers: bearer(s.token),
    });
    expect(missing.statusCode).toBe(404);
    expect(serviceLimit(missing).r).toBe(58);
    const bad = await t.app.inject({
      method: "POST",
      url: "/api/search",
      headers: bearer(s.token),
      payload: {},
    });
    expectError(bad, 400, "validation.failed");
    expect(serviceLimit(bad)).toMatchObject({ policy: "minute", r: 59, pk: pk("search") });
    // By API key as well as by session.
    const byKey = await t.app.inject({ url: "/api/documents", headers: bearer(s.apiKey) });
    expect(serviceLimit(byKey).r).toBe(57);
  });

  it("requests without a tenant, auth routes and platform admins carry none", async () => {
    const anonymous = await t.app.inject({ url: "/api/documents" });
    expect(anonymous.statusCode).toBe(401);
    const health = await t.app.inject({ url: "/healthz" });
    const admin = await platformAdminToken(t);
    const asAdmin = await t.app.inject({ url: "/api/admin/customers", headers: bearer(admin) });
    expect(asAdmin.statusCode).toBe(200);
    const s = await signup(t.app);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: s.email, password: s.password },
    });
    for (const res of [anonymous, health, asAdmin, login]) {
      expect(res.headers.ratelimit).toBeUndefined();
      expect(res.headers["ratelimit-policy"]).toBeUndefined();
    }
  });

  it("of 40 concurrent searches over a limit of 5 per minute, exactly 5 pass; the others are 429 with Retry-After", async () => {
    const s = await signup(t.app);
    await setLimits(s, { rateLimitPerMinute: 5 });
    const all = await Promise.all(Array.from({ length: 40 }, () => searchAs(s)));
    const ok = all.filter((r) => r.statusCode === 200);
    const refused = all.filter((r) => r.statusCode === 429);
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(35);
    expect(ok.map((r) => serviceLimit(r).r).sort()).toEqual([0, 1, 2, 3, 4]);
    for (const r of refused) {
      const body = expectError(r, 429, "rate_limit.exceeded");
      expect(body.error.details).toMatchObject({
        group: "search",
        policy: "minute",
        limit: 5,
        windowSeconds: 60,
        violatedPolicies: ["minute"],
      });
      const retryAfter = Number(r.headers["retry-after"]);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      const limit = serviceLimit(r);
      expect(limit).toMatchObject({ policy: "minute", r: 0, pk: pk("search") });
      // Retry-After is not before the end of the window RateLimit reports.
      expect(retryAfter).toBeGreaterThanOrEqual(limit.t);
      expect(r.headers["ratelimit-policy"]).toContain('"minute";q=5;w=60');
    }
    // Another group of the same tenant has a budget of its own.
    const list = await t.app.inject({ url: "/api/documents", headers: bearer(s.token) });
    expect(list.statusCode).toBe(200);
  });

  it("a per-day limit refuses with the day's window and names it", async () => {
    const s = await signup(t.app);
    await setLimits(s, { rateLimitPerDay: 3 });
    const all = await Promise.all(Array.from({ length: 12 }, () => searchAs(s)));
    expect(all.filter((r) => r.statusCode === 200)).toHaveLength(3);
    const refused = all.find((r) => r.statusCode === 429) as LightMyRequestResponse;
    expect(expectError(refused, 429, "rate_limit.exceeded").error.details).toMatchObject({
      policy: "day",
      violatedPolicies: ["day"],
    });
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(86_000);
    expect(serviceLimit(refused)).toMatchObject({ policy: "day", r: 0 });
  });

  it("tenant A spending its budget leaves tenant B's untouched", async () => {
    const [a, b] = [await signup(t.app), await signup(t.app)];
    await setLimits(a, { rateLimitPerMinute: 2 });
    await Promise.all(Array.from({ length: 10 }, () => searchAs(a)));
    expectError(await searchAs(a), 429, "rate_limit.exceeded");
    const other = await searchAs(b);
    expect(other.statusCode).toBe(200);
    expect(serviceLimit(other).r).toBe(59);
  });

  it("a tenant lowering its limit is refused at once within the open window", async () => {
    const s = await signup(t.app);
    for (let i = 0; i < 4; i++) expect((await searchAs(s)).statusCode).toBe(200);
    await setLimits(s, { rateLimitPerMinute: 3 });
    const refused = await searchAs(s);
    expectError(refused, 429, "rate_limit.exceeded");
    expect(refused.headers["ratelimit-policy"]).toContain('"minute";q=3;w=60');
    // Raising it again (within the plan) lets requests through again.
    await setLimits(s, { rateLimitPerMinute: 10 });
    expect((await searchAs(s)).statusCode).toBe(200);
  });

  it("GET /api/metrics/rate-limits shows every group's windows and counts nothing", async () => {
    const s = await signup(t.app);
    await setLimits(s, { rateLimitPerMinute: 20 });
    for (let i = 0; i < 3; i++) expect((await searchAs(s)).statusCode).toBe(200);
    const read = () => t.app.inject({ url: "/api/metrics/rate-limits", headers: bearer(s.token) });
    const first = await read();
    expect(first.statusCode, first.body).toBe(200);
    const second = await read();
    const counts = (b: { groups: Array<{ windows: Array<{ used: number }> }> }) =>
      b.groups.map((g) => g.windows.map((w) => w.used));
    expect(counts(second.json())).toEqual(counts(first.json()));
    const body = first.json();
    expect(body.enabled).toBe(true);
    expect(body.groups.map((g: { group: string }) => g.group)).toEqual([
      "ingest",
      "search",
      "chat",
      "management",
    ]);
    const search = body.groups.find((g: { group: string }) => g.group === "search");
    expect(search.windows).toEqual([
      expect.objectContaining({ policy: "minute", limit: 20, used: 3, remaining: 17 }),
      expect.objectContaining({ policy: "day", limit: 10000, used: 3, remaining: 9997 }),
    ]);
    expect(search.windows[0].resetSeconds).toBeLessThanOrEqual(60);
    expect(Date.parse(search.windows[0].resetAt)).toBeGreaterThan(Date.now());
    const chat = body.groups.find((g: { group: string }) => g.group === "chat");
    expect(chat.windows[0]).toMatchObject({ used: 0, remaining: 20, resetAt: null });
    // The PUT counted in management; the two reads did not.
    const management = body.groups.find((g: { group: string }) => g.group === "management");
    expect(management.windows[0]).toMatchObject({ limit: 20, used: 1, remaining: 19 });
    expect(serviceLimit(second)).toMatchObject({ r: 19, pk: pk("management") });
  });

  it("a member may read the windows", async () => {
    const s = await signup(t.app);
    const email = `member-${Date.now()}-${Math.random().toString(16).slice(2)}@example.test`;
    const password = "member-password-1";
    const add = await t.app.inject({
      method: "POST",
      url: "/api/customers/users",
      headers: bearer(s.token),
      payload: { email, password, role: "member" },
    });
    expect(add.statusCode, add.body).toBe(201);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password },
    });
    const res = await t.app.inject({
      url: "/api/metrics/rate-limits",
      headers: bearer(login.json().token),
    });
    expect(res.statusCode, res.body).toBe(200);
  });

  it.skipIf(store !== "redis")(
    "Redis unreachable: limits fall back to this process, still exact, and the metric counts it",
    async () => {
      const s = await signup(t.app);
      await setLimits(s, { rateLimitPerMinute: 4 });
      const redis = t.ctx.redis;
      if (!redis) throw new Error("expected Redis");
      redis.disconnect();
      try {
        const all = await Promise.all(Array.from({ length: 20 }, () => searchAs(s)));
        expect(all.filter((r) => r.statusCode === 200)).toHaveLength(4);
        expect(all.filter((r) => r.statusCode === 429)).toHaveLength(16);
        const metric = await t.ctx.metrics.registry.getSingleMetric(FALLBACK_METRIC)?.get();
        const requests = metric?.values.find((v) => v.labels.limiter === "requests");
        expect(requests?.value).toBeGreaterThanOrEqual(20);
      } finally {
        await redis.connect();
      }
      // Back on Redis: the shared counters apply again (this tenant's are fresh there).
      expect((await searchAs(s)).statusCode).toBe(200);
    },
  );
});

describe("rate limits switched off (RATE_LIMITS_ENABLED=false)", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(
      backends[0] as (typeof backends)[number],
      { RATE_LIMITS_ENABLED: "false" },
      {
        rateLimits: "tenant",
      },
    );
  });
  afterAll(() => t.close());

  it("counts nothing, sends no headers, and the status route says so", async () => {
    const s = await signup(t.app);
    const put = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { rateLimitPerMinute: 1 },
    });
    expect(put.statusCode).toBe(200);
    const all = await Promise.all(
      Array.from({ length: 5 }, () =>
        t.app.inject({ url: "/api/documents", headers: bearer(s.token) }),
      ),
    );
    for (const r of all) {
      expect(r.statusCode).toBe(200);
      expect(r.headers.ratelimit).toBeUndefined();
    }
    const status = await t.app.inject({
      url: "/api/metrics/rate-limits",
      headers: bearer(s.token),
    });
    expect(status.json()).toEqual({ enabled: false, groups: [] });
  });
});
