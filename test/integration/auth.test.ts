import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  expectError,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";

describe.each(backends)("auth ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, { LOGIN_MAX_FAILURES: "3", LOGIN_LOCKOUT_SECONDS: "60" });
  });
  afterAll(() => t.close());

  it("signup returns tokens, a trk_ API key, the tenant and the owner", async () => {
    const email = uniqueEmail();
    const res = await t.app.inject({
      method: "POST",
      url: "/api/auth/signup",
      payload: {
        email: `  ${email.toUpperCase()} `,
        password: "correct horse",
        companyName: "Bistro",
      },
    });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body.apiKey).toMatch(/^trk_[A-Za-z0-9_-]{43}$/);
    expect(body.tenant).toMatchObject({ name: "Bistro", status: "active", plan: "trial" });
    expect(body.user).toMatchObject({ email, role: "owner" });
    const me = await t.app.inject({ url: "/api/auth/me", headers: bearer(body.token) });
    expect(me.statusCode).toBe(200);
    expect(me.json().user.email).toBe(email);
    expect(me.json().tenant.id).toBe(body.tenant.id);
  });

  it("keeps only a hash of the API key", async () => {
    const s = await signup(t.app);
    const rows = await t.ctx.db.query<{ key_hash: string; prefix: string }>(
      "select key_hash, prefix from api_keys where tenant_id = $1",
      [s.tenantId],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.key_hash).not.toContain(s.apiKey);
    expect(rows[0]?.key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(s.apiKey.startsWith(rows[0]?.prefix ?? "x")).toBe(true);
  });

  it("refuses a second account for the same email, however it is cased", async () => {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/auth/signup",
      payload: { email: s.email.toUpperCase(), password: "another password", companyName: "Other" },
    });
    expectError(res, 409, "auth.email_taken");
  });

  it("enforces the password policy", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/api/auth/signup",
      payload: { email: uniqueEmail(), password: "short", companyName: "X" },
    });
    const body = expectError(res, 400, "validation.failed");
    expect(body.error.details.issues[0].path).toBe("password");
  });

  it("logs in with the right password and gives the same answer for a wrong password and an unknown email", async () => {
    const s = await signup(t.app);
    const ok = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: s.email, password: s.password },
    });
    expect(ok.statusCode).toBe(200);
    expect(
      (await t.app.inject({ url: "/api/auth/me", headers: bearer(ok.json().token) })).statusCode,
    ).toBe(200);

    const wrong = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: s.email, password: "not the password" },
    });
    const unknown = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: uniqueEmail("nobody"), password: "not the password" },
    });
    const a = expectError(wrong, 401, "auth.invalid_credentials");
    const b = expectError(unknown, 401, "auth.invalid_credentials");
    expect(a.error.message).toBe(b.error.message);
  });

  it("throttles repeated failures for one email with 429 and Retry-After, even for the right password", async () => {
    const s = await signup(t.app);
    for (let i = 0; i < 3; i++) {
      const r = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: s.email, password: "nope nope" },
      });
      expectError(r, 401, "auth.invalid_credentials");
    }
    const blocked = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: s.email, password: s.password },
    });
    expectError(blocked, 429, "auth.too_many_attempts");
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
    // Another account is not affected.
    const other = await signup(t.app);
    const fine = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: other.email, password: other.password },
    });
    expect(fine.statusCode).toBe(200);
  });

  it("rotates refresh tokens: each works once, and reusing one revokes the whole session", async () => {
    const s = await signup(t.app);
    const first = await t.app.inject({
      method: "POST",
      url: "/api/auth/refresh",
      payload: { refreshToken: s.refreshToken },
    });
    expect(first.statusCode).toBe(200);
    const pair = first.json();
    expect(pair.refreshToken).not.toBe(s.refreshToken);
    expect(
      (await t.app.inject({ url: "/api/auth/me", headers: bearer(pair.token) })).statusCode,
    ).toBe(200);

    const reuse = await t.app.inject({
      method: "POST",
      url: "/api/auth/refresh",
      payload: { refreshToken: s.refreshToken },
    });
    expectError(reuse, 401, "auth.refresh_token_reused");
    // The family is dead: the newer refresh token and the access tokens of the session too.
    const newer = await t.app.inject({
      method: "POST",
      url: "/api/auth/refresh",
      payload: { refreshToken: pair.refreshToken },
    });
    expectError(newer, 401, "auth.refresh_token_invalid");
    expectError(
      await t.app.inject({ url: "/api/auth/me", headers: bearer(pair.token) }),
      401,
      "auth.session_revoked",
    );
    // The API key is not a session and keeps working.
    expect(
      (await t.app.inject({ url: "/api/auth/me", headers: { "x-api-key": s.apiKey } })).statusCode,
    ).toBe(200);
  });

  it("rejects an unknown refresh token", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/api/auth/refresh",
      payload: { refreshToken: "rtk_nothing" },
    });
    expectError(res, 401, "auth.refresh_token_invalid");
  });

  it("logout ends the session's access and refresh tokens but not other sessions", async () => {
    const s = await signup(t.app);
    const other = (
      await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: s.email, password: s.password },
      })
    ).json();
    const out = await t.app.inject({
      method: "POST",
      url: "/api/auth/logout",
      headers: bearer(s.token),
    });
    expect(out.statusCode).toBe(204);
    expectError(
      await t.app.inject({ url: "/api/auth/me", headers: bearer(s.token) }),
      401,
      "auth.session_revoked",
    );
    expectError(
      await t.app.inject({
        method: "POST",
        url: "/api/auth/refresh",
        payload: { refreshToken: s.refreshToken },
      }),
      401,
      "auth.refresh_token_invalid",
    );
    expect(
      (await t.app.inject({ url: "/api/auth/me", headers: bearer(other.token) })).statusCode,
    ).toBe(200);
  });

  it("logout with an API key is refused: a key is not a session", async () => {
    const s = await signup(t.app);
    expectError(
      await t.app.inject({
        method: "POST",
        url: "/api/auth/logout",
        headers: { "x-api-key": s.apiKey },
      }),
      403,
      "auth.forbidden",
    );
  });

  it("accepts the API key as Bearer and as X-API-Key, and records its last use", async () => {
    const s = await signup(t.app);
    const viaBearer = await t.app.inject({ url: "/api/auth/me", headers: bearer(s.apiKey) });
    const viaHeader = await t.app.inject({
      url: "/api/auth/me",
      headers: { "x-api-key": s.apiKey },
    });
    expect(viaBearer.statusCode).toBe(200);
    expect(viaHeader.statusCode).toBe(200);
    expect(viaHeader.json().apiKey.prefix).toBe(s.apiKey.slice(0, 12));
    expect(viaHeader.json().apiKey.lastUsedAt).not.toBeNull();
  });

  it("regenerating the API key kills the old one at once; the list never shows a secret", async () => {
    const s = await signup(t.app);
    const regen = await t.app.inject({
      method: "POST",
      url: "/api/customers/api-key",
      headers: bearer(s.token),
    });
    expect(regen.statusCode).toBe(201);
    const fresh = regen.json().apiKey as string;
    expect(fresh).not.toBe(s.apiKey);
    expectError(
      await t.app.inject({ url: "/api/auth/me", headers: { "x-api-key": s.apiKey } }),
      401,
      "auth.invalid_api_key",
    );
    expect(
      (await t.app.inject({ url: "/api/auth/me", headers: { "x-api-key": fresh } })).statusCode,
    ).toBe(200);

    const list = await t.app.inject({ url: "/api/customers/api-keys", headers: bearer(s.token) });
    expect(list.statusCode).toBe(200);
    const items = list.json().items as Array<{ prefix: string; revokedAt: string | null }>;
    expect(items).toHaveLength(2);
    expect(items.filter((k) => k.revokedAt === null)).toHaveLength(1);
    expect(list.body).not.toContain(fresh);
    expect(list.body).not.toContain(s.apiKey);
  });

  describe("ambiguous credentials", () => {
    const me = (headers: Record<string, string | string[]>) =>
      t.app.inject({ url: "/api/auth/me", headers });

    it("refuses an invalid Bearer beside a valid X-API-Key: the key does not win silently", async () => {
      const s = await signup(t.app);
      const res = await me({ authorization: "Bearer not-a-token", "x-api-key": s.apiKey });
      expectError(res, 401, "auth.ambiguous_credentials");
    });

    it("refuses two valid credentials that disagree, of one tenant or of two", async () => {
      const s = await signup(t.app);
      const other = await signup(t.app);
      for (const [authorization, key] of [
        [s.token, s.apiKey],
        [s.token, other.apiKey],
        [s.apiKey, other.apiKey],
      ] as const) {
        const res = await me({ authorization: `Bearer ${authorization}`, "x-api-key": key });
        expectError(res, 401, "auth.ambiguous_credentials");
      }
    });

    it("accepts the same API key in both headers", async () => {
      const s = await signup(t.app);
      const res = await me({ ...bearer(s.apiKey), "x-api-key": s.apiKey });
      expect(res.statusCode, res.body).toBe(200);
    });

    it("refuses a repeated Authorization or X-API-Key header, even when every copy is valid", async () => {
      const s = await signup(t.app);
      const repeats: Array<Record<string, string[]>> = [
        { authorization: [`Bearer ${s.token}`, `Bearer ${s.token}`] },
        { authorization: [`Bearer ${s.token}`, "Bearer not-a-token"] },
        { authorization: ["Bearer not-a-token", `Bearer ${s.token}`] },
        { "x-api-key": [s.apiKey, s.apiKey] },
        { "x-api-key": [s.apiKey, "trk_other"] },
      ];
      for (const headers of repeats) {
        expectError(await me(headers), 401, "auth.ambiguous_credentials");
      }
    });

    it("refuses a repeated Authorization header sent by a real client (Node keeps only the first)", async () => {
      const s = await signup(t.app);
      const address = await t.app.listen({ port: 0, host: "127.0.0.1" });
      const { port } = new URL(address);
      const answer = await new Promise<string>((resolve, reject) => {
        let data = "";
        const socket = connect(Number(port), "127.0.0.1", () =>
          socket.write(
            "GET /api/auth/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
              `Authorization: Bearer ${s.token}\r\nAuthorization: Bearer not-a-token\r\n\r\n`,
          ),
        );
        socket.on("data", (d) => {
          data += d.toString();
        });
        socket.on("end", () => resolve(data));
        socket.on("error", reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 401/);
      expect(answer).toContain('"code":"auth.ambiguous_credentials"');
    });
  });
});
