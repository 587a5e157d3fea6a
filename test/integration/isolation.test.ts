import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  apiKeyWithScopes,
  bearer,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import {
  type Caller,
  call,
  callersOf,
  LIST_QUERIES,
  makeKit,
  NOT_READS,
  PUBLIC_ROUTES,
  ROUTE_FIXTURES,
  type SeededTenant,
  seedTenant,
  type WalkedRoute,
  walkRoutes,
} from "../fixtures/isolation.js";

/**
 * Walks every registered route (see test/fixtures/isolation.ts for how to cover a new one).
 * Each test gathers the failures of all routes and reports them together, one line per route.
 */
describe.each(backends)("tenant isolation ($name)", (backend) => {
  let t: TestApp;
  let routes: WalkedRoute[];
  let seeded: SeededTenant;
  let b: SignedUp;
  let adminToken: string;

  beforeAll(async () => {
    t = await startApp(backend);
    routes = walkRoutes(t.app);
    seeded = await seedTenant(t.app);
    b = await signup(t.app, { companyName: "Tenant B" });
    // Keys that may do everything, so that the walk tests tenancy rather than key scopes
    // (test/integration/api-key-scopes.test.ts walks those).
    b.apiKey = await apiKeyWithScopes(t.app, b, ["admin"]);
    seeded.tenant.apiKey = await apiKeyWithScopes(t.app, seeded.tenant, ["admin"]);
    adminToken = await platformAdminToken(t);
  });
  afterAll(() => t.close());

  const report = (failures: string[]) => expect(failures, failures.join("\n")).toEqual([]);

  it("walks the routes the application registers", () => {
    // Guards the walk itself: an empty or partial table would make every check below vacuous.
    const keys = routes.map((r) => r.key);
    expect(keys).toEqual(
      expect.arrayContaining([
        "GET /api/customers/profile",
        "DELETE /api/customers/users/:id",
        "POST /api/admin/customers/:id/suspend",
      ]),
    );
    expect(keys.some((k) => k.startsWith("HEAD ") || k.includes("/docs"))).toBe(false);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("keeps the public allow-list exact and those routes really public", async () => {
    const failures: string[] = [];
    const keys = new Set(routes.map((r) => r.key));
    for (const key of PUBLIC_ROUTES) {
      if (!keys.has(key)) failures.push(`${key}: on PUBLIC_ROUTES but not registered; remove it`);
    }
    for (const route of routes) {
      const listed = PUBLIC_ROUTES.has(route.key);
      if (!listed) {
        if (route.auth === "public") {
          failures.push(`${route.key}: declares auth "public" but is not on PUBLIC_ROUTES`);
        }
        continue;
      }
      if (route.auth !== "public")
        failures.push(`${route.key}: listed public but declares "${route.auth}"`);
      const res = await call(t.app, route);
      if ([401, 403].includes(res.statusCode) || res.statusCode >= 500) {
        failures.push(`${route.key}: without credentials answered ${res.statusCode} ${res.body}`);
      }
    }
    report(failures);
  });

  it("serves the OpenAPI pages without credentials", async () => {
    const spec = await t.app.inject({ url: "/docs/json" });
    expect(spec.statusCode).toBe(200);
    expect(spec.json().openapi).toMatch(/^3\./);
    expect((await t.app.inject({ url: "/docs" })).statusCode).toBeLessThan(400);
  });

  it("answers 401 on every other route to a caller without valid credentials", async () => {
    const failures: string[] = [];
    const anonymous: Caller[] = [
      { label: "no credentials", headers: {} },
      { label: "an unknown API key", headers: { "x-api-key": "trk_not-a-real-key" } },
      { label: "a forged JWT", headers: bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.") },
    ];
    for (const route of routes.filter((r) => !PUBLIC_ROUTES.has(r.key))) {
      for (const caller of anonymous) {
        const res = await call(t.app, route, { headers: caller.headers });
        if (res.statusCode !== 401) {
          failures.push(
            `${route.key} with ${caller.label}: expected 401, got ${res.statusCode} ${res.body}`,
          );
        }
      }
    }
    report(failures);
  });

  it("refuses tenant B every route that names tenant A's resources, and A's data stays intact", async () => {
    const failures: string[] = [];
    for (const route of routes.filter((r) => r.params.length > 0)) {
      const fixture = ROUTE_FIXTURES[route.key];
      if (!fixture) {
        failures.push(
          `${route.key}: has path parameters but no entry in ROUTE_FIXTURES (test/fixtures/isolation.ts); ` +
            "add one that creates a resource of tenant A and returns its params",
        );
        continue;
      }
      try {
        await checkParamRoute(route, fixture, failures);
      } catch (err) {
        failures.push(`${route.key}: fixture or check failed: ${(err as Error).message}`);
      }
    }
    report(failures);
  }, 300_000); // a fresh tenant per route (signup hashes a password): over the default 30 s

  async function checkParamRoute(
    route: WalkedRoute,
    fixture: (typeof ROUTE_FIXTURES)[string],
    failures: string[],
  ): Promise<void> {
    // A fresh A per route: the rightful call at the end may delete or suspend what it names.
    const a = await signup(t.app, { companyName: "Tenant A" });
    const f = await fixture(makeKit(t.app, a));
    const missing = route.params.filter((p) => !f.params[p]);
    if (missing.length > 0) {
      failures.push(`${route.key}: fixture returns no value for ${missing.join(", ")}`);
      return;
    }
    const before = JSON.stringify(await f.snapshot());
    for (const value of Object.values(f.params)) {
      if (!before.includes(value)) {
        failures.push(
          `${route.key}: snapshot does not show the resource (${value}); it proves nothing`,
        );
        return;
      }
    }

    const adminOnly = route.auth === "platform_admin";
    // Admin routes are closed to every tenant, the resource's own included.
    const intruders = adminOnly ? [...callersOf("B", b), ...callersOf("A", a)] : callersOf("B", b);
    const allowed = adminOnly ? [403] : [403, 404];
    for (const intruder of intruders) {
      const res = await call(t.app, route, { headers: intruder.headers, fixture: f });
      if (!allowed.includes(res.statusCode)) {
        failures.push(
          `${route.key} as ${intruder.label}: expected ${allowed.join(" or ")}, got ${res.statusCode} ${res.body}`,
        );
      }
    }
    const after = JSON.stringify(await f.snapshot());
    if (after !== before) {
      failures.push(
        `${route.key}: A's resource changed after B's attempts:\n  before ${before}\n  after  ${after}`,
      );
    }

    const rightful = adminOnly ? bearer(adminToken) : bearer(a.token);
    const res = await call(t.app, route, { headers: rightful, fixture: f });
    if (res.statusCode >= 300) {
      failures.push(
        `${route.key}: the rightful caller got ${res.statusCode} ${res.body}; the fixture's params name no real resource`,
      );
    }
  }

  it("never shows tenant B any of tenant A's identifiers on a read without parameters", async () => {
    const failures: string[] = [];
    const reads = routes.filter(
      (r) =>
        r.method === "GET" &&
        r.params.length === 0 &&
        !PUBLIC_ROUTES.has(r.key) &&
        !(r.key in NOT_READS),
    );
    expect(reads.length).toBeGreaterThan(0);
    const forbidden = { ...seeded.identifiers, ...seeded.secrets };
    for (const route of reads) {
      const fixture = { query: LIST_QUERIES[route.key] ?? {} };
      for (const caller of callersOf("B", b)) {
        const res = await call(t.app, route, { headers: caller.headers, fixture });
        const expected = route.auth === "platform_admin" ? 403 : 200;
        if (res.statusCode !== expected) {
          failures.push(
            `${route.key} as ${caller.label}: expected ${expected}, got ${res.statusCode} ${res.body}` +
              (expected === 200 ? " (add a query to LIST_QUERIES if it needs one)" : ""),
          );
        }
        for (const [name, value] of Object.entries(forbidden)) {
          if (res.body.includes(value))
            failures.push(`${route.key} as ${caller.label}: shows A's ${name}`);
        }
      }
    }
    report(failures);
  });

  it("shows tenant A its own identifiers on those reads, but never a secret", async () => {
    // The control for the test above: the identifiers are written as the API writes them.
    const reads = routes.filter(
      (r) =>
        r.method === "GET" &&
        r.params.length === 0 &&
        !PUBLIC_ROUTES.has(r.key) &&
        !(r.key in NOT_READS) &&
        r.auth !== "platform_admin",
    );
    let seen = "";
    for (const route of reads) {
      const fixture = { query: LIST_QUERIES[route.key] ?? {} };
      for (const caller of callersOf("A", seeded.tenant)) {
        const res = await call(t.app, route, { headers: caller.headers, fixture });
        expect(res.statusCode, `${route.key} as ${caller.label}: ${res.body}`).toBe(200);
        seen += res.body;
      }
    }
    for (const [name, value] of Object.entries(seeded.identifiers)) {
      expect(seen.includes(value), `A's ${name} appears in A's reads`).toBe(true);
    }
    for (const [name, value] of Object.entries(seeded.secrets)) {
      expect(seen.includes(value), `A's ${name} is never read back`).toBe(false);
    }
  });
});
