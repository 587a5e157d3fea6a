import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHOP = "https://shop.example";

describe.each(backends)("http ($name)", (backend) => {
  let t: TestApp;
  let adminToken: string;
  beforeAll(async () => {
    t = await startApp(backend);
    adminToken = await platformAdminToken(t);
  });
  afterAll(() => t.close());

  describe("health and documentation", () => {
    it("/healthz and /readyz answer without credentials", async () => {
      const health = await t.app.inject({ url: "/healthz" });
      expect(health.statusCode).toBe(200);
      expect(health.json()).toEqual({ status: "ok" });
      const ready = await t.app.inject({ url: "/readyz" });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toEqual({ status: "ready", database: "ok" });
    });

    it("/readyz says 503 service.unavailable once the database is gone, /healthz stays up", async () => {
      const other = await startApp(backend);
      try {
        await other.ctx.db.close();
        expectError(await other.app.inject({ url: "/readyz" }), 503, "service.unavailable");
        expect((await other.app.inject({ url: "/healthz" })).statusCode).toBe(200);
      } finally {
        await other.close();
      }
    });

    it("/docs serves the HTML page and /docs/json an OpenAPI 3 document", async () => {
      const page = await t.app.inject({ url: "/docs" });
      expect(page.statusCode).toBe(200);
      expect(page.headers["content-type"]).toMatch(/^text\/html/);
      expect(page.body).toContain("<html");

      const doc = await t.app.inject({ url: "/docs/json" });
      expect(doc.statusCode).toBe(200);
      const spec = doc.json();
      expect(spec.openapi).toMatch(/^3\./);
      const schema =
        spec.paths["/api/auth/signup"].post.requestBody.content["application/json"].schema;
      expect(Object.keys(schema.properties).sort()).toEqual(["companyName", "email", "password"]);
      expect(schema.required).toEqual(expect.arrayContaining(["email", "password", "companyName"]));
      expect(spec.paths["/api/admin/customers/{id}"]).toBeDefined();
    });
  });

  describe("request ids and headers", () => {
    it("echoes a sane x-request-id, in the header and in error bodies", async () => {
      const ok = await t.app.inject({
        url: "/healthz",
        headers: { "x-request-id": "req-abc.123" },
      });
      expect(ok.headers["x-request-id"]).toBe("req-abc.123");
      const err = await t.app.inject({
        url: "/api/customers/profile",
        headers: { "x-request-id": "trace:42" },
      });
      expect(expectError(err, 401, "auth.unauthenticated").requestId).toBe("trace:42");
      expect(err.headers["x-request-id"]).toBe("trace:42");
    });

    it("generates a UUID when the client sends none or an unsafe one", async () => {
      for (const headers of [
        {},
        { "x-request-id": "has spaces and <script>" },
        { "x-request-id": "x".repeat(129) },
      ]) {
        const res = await t.app.inject({ url: "/nowhere", headers });
        const id = res.headers["x-request-id"] as string;
        expect(id).toMatch(UUID_RE);
        expect(expectError(res, 404, "route.not_found").requestId).toBe(id);
      }
    });

    it("sends the security headers, on errors too", async () => {
      for (const url of ["/healthz", "/api/customers/profile", "/nowhere"]) {
        const res = await t.app.inject({ url });
        expect(res.headers["x-content-type-options"], url).toBe("nosniff");
        expect(res.headers["x-frame-options"], url).toBe("SAMEORIGIN");
        expect(res.headers["strict-transport-security"], url).toBeDefined();
      }
    });

    it("answers an unknown route with 404 route.not_found in the error shape", async () => {
      const res = await t.app.inject({ method: "POST", url: "/api/nothing-here?x=1" });
      const body = expectError(res, 404, "route.not_found");
      expect(body.error.message).toContain("/api/nothing-here");
      expect(body.error.message).not.toContain("x=1");
    });
  });

  describe("server limits", () => {
    it("bounds how long a request may take to arrive, by default and as configured", async () => {
      // Node's default is no bound on the body at all under Fastify (requestTimeout 0).
      expect(t.app.server.requestTimeout).toBe(60_000);
      expect(t.app.server.headersTimeout).toBe(10_000);
      const short = await startApp(backend, { REQUEST_TIMEOUT_MS: "5000" });
      try {
        expect(short.app.server.requestTimeout).toBe(5000);
        expect(short.app.server.headersTimeout).toBe(5000);
      } finally {
        await short.close();
      }
    });
  });

  describe("methods", () => {
    it.each([
      ["DELETE", "/api/auth/login", "POST"],
      ["GET", "/api/auth/signup", "POST"],
      ["PATCH", `/api/documents/${randomUUID()}`, "GET, HEAD, PUT, DELETE"],
      ["POST", "/api/documents/", "GET, HEAD"],
      ["PUT", "/healthz", "GET, HEAD"],
    ])(
      "answers %s %s with 405 route.method_not_allowed and Allow: %s",
      async (method, url, allow) => {
        const res = await t.app.inject({ method: method as "GET", url });
        const body = expectError(res, 405, "route.method_not_allowed");
        expect(res.headers.allow).toBe(allow);
        expect(body.error.details.allowed).toEqual(allow.split(", "));
        expect(res.headers["x-request-id"]).toBe(body.requestId);
      },
    );

    it("keeps 404 for paths that do not exist under any method, and for missing files", async () => {
      for (const [method, url] of [
        ["DELETE", "/api/auth/nothing"],
        ["GET", "/api/documents/a/b/c"],
        ["GET", "/docs/static/no-such-file.js"],
      ] as const) {
        const res = await t.app.inject({ method, url });
        expectError(res, 404, "route.not_found");
        expect(res.headers.allow).toBeUndefined();
      }
    });
  });

  describe("CORS", () => {
    it("is off by default", async () => {
      const res = await t.app.inject({ url: "/healthz", headers: { origin: SHOP } });
      expect(res.statusCode).toBe(200);
      expect(res.headers["access-control-allow-origin"]).toBeUndefined();
      const preflight = await t.app.inject({
        method: "OPTIONS",
        url: "/api/auth/login",
        headers: { origin: SHOP, "access-control-request-method": "POST" },
      });
      expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
    });

    describe("with CORS_ORIGINS set", () => {
      let c: TestApp;
      beforeAll(async () => {
        c = await startApp(backend, { CORS_ORIGINS: SHOP });
      });
      afterAll(() => c.close());

      const preflight = (origin: string, url: string) =>
        c.app.inject({
          method: "OPTIONS",
          url,
          headers: {
            origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization",
          },
        });

      it("answers a preflight from the allowed origin, on public and tenant routes", async () => {
        for (const url of ["/api/auth/login", "/api/customers/api-key"]) {
          const res = await preflight(SHOP, url);
          expect(res.statusCode, `${url}: ${res.body}`).toBe(204);
          expect(res.headers["access-control-allow-origin"]).toBe(SHOP);
          expect(String(res.headers["access-control-allow-methods"])).toContain("POST");
        }
      });

      it("lists OPTIONS in Allow, and still 404s unknown paths", async () => {
        const res = await c.app.inject({ method: "DELETE", url: "/api/auth/login" });
        expectError(res, 405, "route.method_not_allowed");
        expect(res.headers.allow).toBe("POST, OPTIONS");
        expectError(await c.app.inject({ url: "/api/nothing" }), 404, "route.not_found");
      });

      it("does not allow another origin", async () => {
        const res = await preflight("https://evil.example", "/api/auth/login");
        expect(res.headers["access-control-allow-origin"]).toBeUndefined();
        const get = await c.app.inject({
          url: "/healthz",
          headers: { origin: "https://evil.example" },
        });
        expect(get.headers["access-control-allow-origin"]).toBeUndefined();
      });

      it("lets the allowed origin read answers, errors included", async () => {
        const ok = await c.app.inject({ url: "/healthz", headers: { origin: SHOP } });
        expect(ok.headers["access-control-allow-origin"]).toBe(SHOP);
        const denied = await c.app.inject({
          url: "/api/customers/profile",
          headers: { origin: SHOP },
        });
        expectError(denied, 401, "auth.unauthenticated");
        expect(denied.headers["access-control-allow-origin"]).toBe(SHOP);
      });
    });
  });

  describe("roles", () => {
    it("a member may read the config but not change it", async () => {
      const owner = await signup(t.app);
      const email = uniqueEmail("member");
      const password = `pw-${randomBytes(8).toString("hex")}`;
      const created = await t.app.inject({
        method: "POST",
        url: "/api/customers/users",
        headers: bearer(owner.token),
        payload: { email, password, role: "member" },
      });
      expect(created.statusCode, created.body).toBe(201);
      const login = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email, password },
      });
      expect(login.statusCode, login.body).toBe(200);
      const member = bearer(login.json().token);

      expect(
        (await t.app.inject({ url: "/api/customers/config", headers: member })).statusCode,
      ).toBe(200);
      const put = await t.app.inject({
        method: "PUT",
        url: "/api/customers/config",
        headers: member,
        payload: { chunkSize: 600 },
      });
      expectError(put, 403, "auth.forbidden");
      const regen = await t.app.inject({
        method: "POST",
        url: "/api/customers/api-key",
        headers: member,
      });
      expectError(regen, 403, "auth.forbidden");
      // The owner still can, and the member's attempt changed nothing.
      const config = await t.app.inject({
        url: "/api/customers/config",
        headers: bearer(owner.token),
      });
      expect(config.json().chunkSize).not.toBe(600);
    });

    it("a platform admin token on a tenant route is 403 auth.tenant_required", async () => {
      const res = await t.app.inject({
        url: "/api/customers/profile",
        headers: bearer(adminToken),
      });
      expectError(res, 403, "auth.tenant_required");
    });

    it("tenant credentials on an admin route are 403 auth.platform_admin_required", async () => {
      const s = await signup(t.app);
      for (const headers of [bearer(s.token), { "x-api-key": s.apiKey }]) {
        const res = await t.app.inject({ url: "/api/admin/customers", headers });
        expectError(res, 403, "auth.platform_admin_required");
      }
    });
  });

  describe("suspension", () => {
    const setStatus = (s: SignedUp, action: "suspend" | "reactivate") =>
      t.app.inject({
        method: "POST",
        url: `/api/admin/customers/${s.tenantId}/${action}`,
        headers: bearer(adminToken),
      });
    const profile = (headers: Record<string, string>) =>
      t.app.inject({ url: "/api/customers/profile", headers });
    const login = (s: SignedUp) =>
      t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: s.email, password: s.password },
      });
    const refresh = (refreshToken: string) =>
      t.app.inject({ method: "POST", url: "/api/auth/refresh", payload: { refreshToken } });

    it("locks out every credential of a suspended tenant, and only that tenant", async () => {
      const s = await signup(t.app);
      const bystander = await signup(t.app);
      const suspended = await setStatus(s, "suspend");
      expect(suspended.statusCode, suspended.body).toBe(200);
      expect(suspended.json()).toMatchObject({ id: s.tenantId, status: "suspended" });

      expectError(await profile(bearer(s.token)), 403, "tenant.suspended");
      expectError(await profile({ "x-api-key": s.apiKey }), 403, "tenant.suspended");
      expectError(await profile(bearer(s.apiKey)), 403, "tenant.suspended");
      expectError(await login(s), 403, "tenant.suspended");
      expectError(await refresh(s.refreshToken), 403, "tenant.suspended");
      // A wrong password still says only that: suspension is not revealed to a guesser.
      const guess = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: s.email, password: "wrong password" },
      });
      expectError(guess, 401, "auth.invalid_credentials");

      expect((await profile(bearer(bystander.token))).statusCode).toBe(200);
      const listed = await t.app.inject({
        url: "/api/admin/customers?status=suspended",
        headers: bearer(adminToken),
      });
      const ids = listed.json().items.map((i: { id: string }) => i.id);
      expect(ids).toContain(s.tenantId);
      expect(ids).not.toContain(bystander.tenantId);
    });

    it("reactivation restores the same token, key, login and refresh token", async () => {
      const s = await signup(t.app);
      expect((await setStatus(s, "suspend")).statusCode).toBe(200);
      expectError(await refresh(s.refreshToken), 403, "tenant.suspended");
      const back = await setStatus(s, "reactivate");
      expect(back.statusCode, back.body).toBe(200);
      expect(back.json().status).toBe("active");

      expect((await profile(bearer(s.token))).statusCode).toBe(200);
      expect((await profile({ "x-api-key": s.apiKey })).statusCode).toBe(200);
      expect((await login(s)).statusCode).toBe(200);
      // The refused refresh did not consume the token.
      const rotated = await refresh(s.refreshToken);
      expect(rotated.statusCode, rotated.body).toBe(200);
    });
  });
});
