import { randomBytes, randomUUID } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { SignJWT } from "jose";
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

const BODY_LIMIT = 2048;

/** Asserts a 400 validation.failed whose first issue is at `path` in `location`. */
function expectInvalid(res: LightMyRequestResponse, location: string, path?: string) {
  const body = expectError(res, 400, "validation.failed");
  expect(body.error.details.location).toBe(location);
  if (path !== undefined) expect(body.error.details.issues[0].path).toBe(path);
  return body;
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

describe.each(backends)("bad input ($name)", (backend) => {
  let t: TestApp;
  let owner: SignedUp;
  let adminToken: string;
  beforeAll(async () => {
    t = await startApp(backend, { BODY_LIMIT_BYTES: String(BODY_LIMIT) });
    owner = await signup(t.app);
    adminToken = await platformAdminToken(t);
  });
  afterAll(() => t.close());

  const signupWith = (payload: unknown) =>
    t.app.inject({ method: "POST", url: "/api/auth/signup", payload: payload as object });
  const valid = () => ({ email: uniqueEmail(), password: "long enough pw", companyName: "Acme" });
  const putConfig = (payload: unknown, token = owner.token) =>
    t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(token),
      payload: payload as object,
    });
  const getConfig = async (token = owner.token) =>
    (await t.app.inject({ url: "/api/customers/config", headers: bearer(token) })).json();

  describe("bodies", () => {
    it.each([
      ["truncated JSON", '{"email": "a@b.test",'],
      ["a trailing comma", '{"email": "a@b.test",}'],
      ["an empty body", ""],
      ["a __proto__ key", '{"__proto__": {"admin": true}, "email": "a@b.test"}'],
    ])("rejects %s as request.malformed_json", async (_label, raw) => {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/auth/signup",
        headers: { "content-type": "application/json" },
        payload: raw,
      });
      expectError(res, 400, "request.malformed_json");
    });

    it.each([
      ["email", 12345],
      ["password", ["a", "list"]],
      ["companyName", { name: "Acme" }],
    ])("rejects a wrongly typed %s, naming the field", async (field, value) => {
      expectInvalid(await signupWith({ ...valid(), [field]: value }), "body", field);
    });

    it("rejects a JSON body that is not an object", async () => {
      expectInvalid(await signupWith([valid()]), "body");
      const res = await t.app.inject({
        method: "POST",
        url: "/api/auth/signup",
        headers: { "content-type": "application/json" },
        payload: "null",
      });
      expectInvalid(res, "body");
    });

    it.each(["email", "password", "companyName"])("rejects a missing %s", async (field) => {
      const payload: Record<string, string> = valid();
      delete payload[field];
      expectInvalid(await signupWith(payload), "body", field);
    });

    it.each([
      ["companyName", "x".repeat(201)],
      ["email", `${"a".repeat(245)}@example.test`],
      ["password", "p".repeat(257)],
    ])("rejects an over-long %s", async (field, value) => {
      expectInvalid(await signupWith({ ...valid(), [field]: value }), "body", field);
    });

    it("accepts strings at their limits", async () => {
      const res = await signupWith({
        // 254 characters, within the RFC's 64-character local part and 63-character labels.
        email: `${randomBytes(32).toString("hex")}@${"d".repeat(63)}.${"e".repeat(63)}.${"f".repeat(56)}.test`,
        password: "p".repeat(256),
        companyName: "x".repeat(200),
      });
      expect(res.statusCode, res.body).toBe(201);
    });

    it("rejects over-long login passwords and refresh tokens", async () => {
      const login = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: owner.email, password: "p".repeat(257) },
      });
      expectInvalid(login, "body", "password");
      const refresh = await t.app.inject({
        method: "POST",
        url: "/api/auth/refresh",
        payload: { refreshToken: `rtk_${"x".repeat(600)}` },
      });
      expectInvalid(refresh, "body", "refreshToken");
    });

    it("rejects unknown fields and names the key", async () => {
      const res = await signupWith({ ...valid(), role: "platform_admin" });
      const body = expectInvalid(res, "body");
      expect(body.error.message).toContain("role");
      const profile = await t.app.inject({
        method: "PUT",
        url: "/api/customers/profile",
        headers: bearer(owner.token),
        payload: { companyName: "Renamed", plan: "enterprise" },
      });
      expect(expectInvalid(profile, "body").error.message).toContain("plan");
    });

    it("answers a body over the configured limit with 413, before validating it", async () => {
      const res = await signupWith({ ...valid(), companyName: "x".repeat(BODY_LIMIT) });
      expectError(res, 413, "request.body_too_large");
      // Just under the limit, the same request reaches validation.
      const under = await signupWith({ ...valid(), companyName: "x".repeat(BODY_LIMIT - 200) });
      expectInvalid(under, "body", "companyName");
    });

    it("answers an unsupported content type with 415", async () => {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/auth/signup",
        headers: { "content-type": "application/xml" },
        payload: "<signup><email>a@b.test</email></signup>",
      });
      expectError(res, 415, "request.unsupported_media_type");
      // Plain text is no exception: the API takes JSON (and multipart for files).
      const text = await t.app.inject({
        method: "POST",
        url: "/api/auth/signup",
        headers: { "content-type": "text/plain" },
        payload: JSON.stringify(valid()),
      });
      expectError(text, 415, "request.unsupported_media_type");
    });
  });

  describe("paths and querystrings", () => {
    it("rejects a non-UUID user id in the path", async () => {
      const res = await t.app.inject({
        method: "DELETE",
        url: "/api/customers/users/not-a-uuid",
        headers: bearer(owner.token),
      });
      expectInvalid(res, "params", "id");
    });

    it("rejects a non-UUID tenant id on the admin routes, and 404s an unknown UUID", async () => {
      for (const url of ["/api/admin/customers/123", "/api/admin/customers/123/suspend"]) {
        const method = url.endsWith("suspend") ? "POST" : "GET";
        expectInvalid(await t.app.inject({ method, url, headers: bearer(adminToken) }), "params");
      }
      const unknown = await t.app.inject({
        url: `/api/admin/customers/${randomUUID()}`,
        headers: bearer(adminToken),
      });
      expectError(unknown, 404, "not_found");
    });

    it.each([
      ["limit=0", "limit"],
      ["limit=abc", "limit"],
      ["limit=201", "limit"],
      ["limit=1.5", "limit"],
      ["status=gone", "status"],
    ])("rejects ?%s", async (qs, field) => {
      const res = await t.app.inject({
        url: `/api/admin/customers?${qs}`,
        headers: bearer(adminToken),
      });
      expectInvalid(res, "querystring", field);
    });

    it("rejects an unknown query parameter", async () => {
      const res = await t.app.inject({
        url: "/api/admin/customers?sort=name",
        headers: bearer(adminToken),
      });
      expect(expectInvalid(res, "querystring").error.message).toContain("sort");
    });

    it.each([
      ["garbage", "garbage"],
      ["JSON that is not a pair", b64url({ a: 1 })],
      ["an invalid date", b64url(["not a date", randomUUID()])],
      ["an id of dashes", b64url(["2024-01-01T00:00:00.000Z", "-".repeat(36)])],
      ["an id that is not a UUID", b64url(["2024-01-01T00:00:00.000Z", "a".repeat(36)])],
      ["a date out of the database's range", b64url(["-100000-01-01T00:00:00.000Z", randomUUID()])],
    ])("rejects a cursor with %s", async (_label, cursor) => {
      const res = await t.app.inject({
        url: `/api/admin/customers?cursor=${cursor}`,
        headers: bearer(adminToken),
      });
      expectInvalid(res, "querystring", "cursor");
    });

    it("accepts the cursor it hands out", async () => {
      const first = await t.app.inject({
        url: "/api/admin/customers?limit=1",
        headers: bearer(adminToken),
      });
      expect(first.statusCode, first.body).toBe(200);
      const { items, nextCursor } = first.json();
      expect(typeof nextCursor).toBe("string");
      const next = await t.app.inject({
        url: `/api/admin/customers?limit=1&cursor=${nextCursor}`,
        headers: bearer(adminToken),
      });
      expect(next.statusCode, next.body).toBe(200);
      expect(next.json().items[0].id).not.toBe(items[0].id);
    });
  });

  describe("instants the database cannot store", () => {
    // timestamptz has no year 0, and 9999-12-31T23:59:59-14:00 is year 10000 in UTC: both have
    // the ISO 8601 form, and once reached a query as a 500.
    const outOfRange = ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00"];

    it.each(outOfRange)("refuses %s in every window a tenant asks for", async (at) => {
      for (const route of [
        "/api/metrics/usage",
        "/api/metrics/costs",
        "/api/metrics/tokens",
        "/api/metrics/export",
        "/api/metrics/reconciliation",
        "/api/events",
        "/api/audit",
      ]) {
        for (const field of ["from", "to"]) {
          const res = await t.app.inject({
            url: `${route}?${field}=${encodeURIComponent(at)}`,
            headers: bearer(owner.token),
          });
          expect(res.statusCode, `${route} ${field}: ${res.body}`).toBe(400);
          expectInvalid(res, "querystring", field);
        }
      }
    });

    it.each(outOfRange)(
      "refuses %s as a price's effective date or a re-rate window",
      async (at) => {
        const price = await t.app.inject({
          method: "POST",
          url: "/api/admin/prices",
          headers: bearer(adminToken),
          payload: {
            provider: "p",
            model: "m",
            unit: "input_token",
            usdPerUnit: "1",
            effectiveFrom: at,
          },
        });
        expectInvalid(price, "body", "effectiveFrom");
        const rerate = await t.app.inject({
          method: "POST",
          url: "/api/admin/usage/rerate",
          headers: bearer(adminToken),
          payload: { from: at, to: "2026-01-01T00:00:00Z" },
        });
        expectInvalid(rerate, "body", "from");
      },
    );

    it("still takes the first and the last storable instant", async () => {
      const res = await t.app.inject({
        url: "/api/metrics/reconciliation?from=9999-12-30T00:00:00Z&to=9999-12-31T00:00:00Z",
        headers: bearer(owner.token),
      });
      expect(res.statusCode, res.body).toBe(200);
      const audit = await t.app.inject({
        url: "/api/audit?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59.999Z",
        headers: bearer(owner.token),
      });
      expect(audit.statusCode, audit.body).toBe(200);
    });
  });

  describe("credentials", () => {
    const me = (headers: Record<string, string | string[]>) =>
      t.app.inject({ url: "/api/customers/profile", headers });
    const sign = (claims: Record<string, unknown>, opts: { secret?: string; alg?: string } = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: opts.alg ?? "HS256", typ: "JWT" })
        .setIssuer("tenantrag")
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode(opts.secret ?? t.ctx.config.jwtSecret));
    const claims = () => ({
      sub: owner.userId,
      tid: owner.tenantId,
      role: "owner",
      sid: randomUUID(),
    });

    it("says auth.token_expired for an expired token", async () => {
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "HS256" })
        .setIssuer("tenantrag")
        .setIssuedAt(now - 7200)
        .setExpirationTime(now - 3600)
        .sign(new TextEncoder().encode(t.ctx.config.jwtSecret));
      expectError(await me(bearer(token)), 401, "auth.token_expired");
    });

    it("refuses a token signed with another secret", async () => {
      const token = await sign(claims(), { secret: randomBytes(32).toString("hex") });
      expectError(await me(bearer(token)), 401, "auth.invalid_token");
    });

    it('refuses an unsigned token (alg "none")', async () => {
      const header = b64url({ alg: "none", typ: "JWT" });
      const now = Math.floor(Date.now() / 1000);
      const payload = b64url({ ...claims(), iss: "tenantrag", iat: now, exp: now + 3600 });
      expectError(await me(bearer(`${header}.${payload}.`)), 401, "auth.invalid_token");
    });

    it("refuses HS512 even with the right secret: only HS256 is accepted", async () => {
      const token = await sign(claims(), { alg: "HS512" });
      expectError(await me(bearer(token)), 401, "auth.invalid_token");
    });

    it("refuses a token from another issuer", async () => {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "HS256" })
        .setIssuer("someone-else")
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode(t.ctx.config.jwtSecret));
      expectError(await me(bearer(token)), 401, "auth.invalid_token");
    });

    it.each([
      ["sub", "admin"],
      ["sid", "1; drop table sessions"],
      ["tid", 42],
      ["role", "superuser"],
    ])("refuses a correctly signed token whose %s claim is malformed", async (claim, value) => {
      const token = await sign({ ...claims(), [claim]: value });
      expectError(await me(bearer(token)), 401, "auth.invalid_token");
    });

    it("refuses a correctly signed token for a session that does not exist", async () => {
      expectError(await me(bearer(await sign(claims()))), 401, "auth.invalid_token");
    });

    it.each([
      ["a garbage bearer string", "Bearer not-a-token", "auth.invalid_token"],
      ["a JWT with a broken payload", "Bearer e30.%%%.abc", "auth.invalid_token"],
      [
        "Basic credentials",
        `Basic ${Buffer.from("a:b").toString("base64")}`,
        "auth.unauthenticated",
      ],
      ["an empty Bearer", "Bearer ", "auth.unauthenticated"],
      ["two tokens", "Bearer one two", "auth.unauthenticated"],
    ])("refuses %s", async (_label, authorization, code) => {
      expectError(await me({ authorization }), 401, code);
    });

    it("refuses no credentials at all on a tenant route", async () => {
      expectError(await me({}), 401, "auth.unauthenticated");
    });

    it("refuses an unknown API key, in either header", async () => {
      const fake = `trk_${randomBytes(32).toString("base64url")}`;
      expectError(await me({ "x-api-key": fake }), 401, "auth.invalid_api_key");
      expectError(await me(bearer(fake)), 401, "auth.invalid_api_key");
      expectError(await me({ "x-api-key": "not-even-a-key" }), 401, "auth.invalid_api_key");
    });

    it("refuses a revoked API key", async () => {
      const s = await signup(t.app);
      const regen = await t.app.inject({
        method: "POST",
        url: "/api/customers/api-key",
        headers: bearer(s.token),
      });
      expect(regen.statusCode, regen.body).toBe(201);
      expectError(await me({ "x-api-key": s.apiKey }), 401, "auth.invalid_api_key");
      expectError(await me(bearer(s.apiKey)), 401, "auth.invalid_api_key");
      expect((await me({ "x-api-key": regen.json().apiKey })).statusCode).toBe(200);
    });

    it("refuses two X-API-Key headers, even when one is valid", async () => {
      // A repeated credential header is ambiguous: none of its copies is picked.
      const twice = await me({ "x-api-key": [owner.apiKey, owner.apiKey] });
      expectError(twice, 401, "auth.ambiguous_credentials");
      const mixed = await me({ "x-api-key": [owner.apiKey, "trk_other"] });
      expectError(mixed, 401, "auth.ambiguous_credentials");
    });
  });

  describe("tenant configuration", () => {
    it.each([
      ["chunkSize below 100", { chunkSize: 50 }, "chunkSize"],
      ["a fractional chunkSize", { chunkSize: 500.5 }, "chunkSize"],
      ["chunkSize as a string", { chunkSize: "500" }, "chunkSize"],
      [
        "a document type we cannot parse",
        { allowedDocumentTypes: ["exe"] },
        "allowedDocumentTypes[0]",
      ],
      ["no document types", { allowedDocumentTypes: [] }, "allowedDocumentTypes"],
      [
        "a repeated document type",
        { allowedDocumentTypes: ["pdf", "pdf"] },
        "allowedDocumentTypes",
      ],
      ["rateLimitPerMinute of 0", { rateLimitPerMinute: 0 }, "rateLimitPerMinute"],
      ["an unknown chunk strategy", { chunkStrategy: "random" }, "chunkStrategy"],
    ])("rejects %s", async (_label, payload, path) => {
      expectInvalid(await putConfig(payload), "body", path);
    });

    it("rejects an empty update", async () => {
      expectInvalid(await putConfig({}), "body");
    });

    it("rejects an overlap not smaller than the chunk size, naming chunkOverlap", async () => {
      const before = await getConfig();
      for (const payload of [
        { chunkSize: 500, chunkOverlap: 500 },
        { chunkSize: 500, chunkOverlap: 900 },
        { chunkOverlap: before.chunkSize },
      ]) {
        const body = expectInvalid(await putConfig(payload), "body", "chunkOverlap");
        expect(body.error.message).toContain("chunkOverlap");
      }
      expect(await getConfig()).toEqual(before);
    });

    it("refuses limits above the plan's with 422 and leaves the config unchanged", async () => {
      const s = await signup(t.app);
      const res = await putConfig({ rateLimitPerMinute: 61, chunkSize: 600 }, s.token);
      const body = expectError(res, 422, "config.exceeds_plan");
      expect(body.error.details).toMatchObject({
        field: "rateLimitPerMinute",
        max: 60,
        plan: "trial",
      });
      const config = await getConfig(s.token);
      expect(config.rateLimitPerMinute).toBe(60);
      expect(config.chunkSize).not.toBe(600);
      // The ceiling itself is allowed.
      const atCeiling = await putConfig({ rateLimitPerMinute: 60 }, s.token);
      expect(atCeiling.statusCode, atCeiling.body).toBe(200);
    });
  });
});
