import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import {
  bearer,
  GENEROUS_RATE_LIMITS,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import type { StoredAuditRow } from "../fixtures/audit.js";
import { backends, type TestBackend } from "../fixtures/db.js";
import { faultyDb } from "../fixtures/faulty-db.js";

type AuditRow = StoredAuditRow;

const USERS = "/api/customers/users";
const KEYS = "/api/customers/api-keys";

describe.each(backends)("audit rows of identity and administration ($name)", (backend) => {
  let t: TestApp;
  let adminToken: string;
  beforeAll(async () => {
    t = await startApp(backend);
    adminToken = await platformAdminToken(t);
  });
  afterAll(() => t.close());

  /** The request metadata each call sends, so that a row can be traced back to its request. */
  function meta(ip = "127.0.0.1") {
    return {
      requestId: `req-${randomBytes(6).toString("hex")}`,
      ua: `audit-test/${randomUUID()}`,
      ip,
    };
  }
  type Meta = ReturnType<typeof meta>;

  async function call(
    m: Meta,
    opts: { method: InjectOptions["method"]; url: string; headers?: Record<string, string> },
    payload?: object,
  ): Promise<LightMyRequestResponse> {
    return t.app.inject({
      method: opts.method,
      url: opts.url,
      remoteAddress: m.ip,
      headers: { ...opts.headers, "x-request-id": m.requestId, "user-agent": m.ua },
      ...(payload ? { payload } : {}),
    });
  }

  /** Rows of one chain (a tenant's, or the platform's for null), oldest first. */
  async function rows(tenantId: string | null, eventType?: string): Promise<AuditRow[]> {
    const where = tenantId === null ? "tenant_id is null" : "tenant_id = $1";
    const params: unknown[] = tenantId === null ? [] : [tenantId];
    const byType = eventType ? ` and event_type = $${params.length + 1}` : "";
    if (eventType) params.push(eventType);
    return t.ctx.db.query<AuditRow>(
      `select * from audit_events where ${where}${byType} order by seq`,
      params,
    );
  }

  /** The only row a request wrote (by its request id). */
  async function rowOf(m: Meta): Promise<AuditRow> {
    const found = await t.ctx.db.query<AuditRow>(
      "select * from audit_events where request_id = $1",
      [m.requestId],
    );
    expect(found, `rows of request ${m.requestId}`).toHaveLength(1);
    const row = found[0] as AuditRow;
    expect(row.ip_address).toBe(m.ip);
    expect(row.user_agent).toBe(m.ua);
    return row;
  }

  async function noRowOf(m: Meta): Promise<void> {
    const found = await t.ctx.db.query("select 1 from audit_events where request_id = $1", [
      m.requestId,
    ]);
    expect(found).toEqual([]);
  }

  /** No secret of `secrets` appears anywhere in the chain's rows. */
  async function expectNoSecrets(tenantId: string | null, secrets: string[]): Promise<void> {
    const text = JSON.stringify(await rows(tenantId));
    for (const s of secrets) expect(text.includes(s), `a secret is in the audit rows`).toBe(false);
    expect(text).not.toMatch(/\$argon2|\$scrypt|trk_[A-Za-z0-9_-]{20,}|rtk_/);
  }

  const asUser = (s: { token: string }) => bearer(s.token);

  it("signup: one tenant.create row by the new owner, without the password, key or tokens", async () => {
    const m = meta();
    const email = uniqueEmail("signup");
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const res = await call(
      m,
      { method: "POST", url: "/api/auth/signup" },
      {
        email,
        password,
        companyName: "Audited Ltd",
      },
    );
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json();
    const row = await rowOf(m);
    expect(row).toMatchObject({
      tenant_id: body.tenant.id,
      event_type: "tenant.create",
      entity_type: "tenant",
      entity_id: body.tenant.id,
      action: "create",
      actor_type: "user",
      actor_id: body.user.id,
      result: "success",
    });
    expect(row.new_values).toMatchObject({
      name: "Audited Ltd",
      owner: { id: body.user.id, email, role: "owner" },
    });
    await expectNoSecrets(body.tenant.id, [password, body.apiKey, body.refreshToken, body.token]);
  });

  it("signup refused (validation, email taken) writes no row", async () => {
    const s = await signup(t.app);
    const bad = meta();
    const r1 = await call(
      bad,
      { method: "POST", url: "/api/auth/signup" },
      {
        email: "not-an-email",
        password: "long enough password",
        companyName: "X",
      },
    );
    expect(r1.statusCode).toBe(400);
    await noRowOf(bad);
    const taken = meta();
    const r2 = await call(
      taken,
      { method: "POST", url: "/api/auth/signup" },
      {
        email: s.email,
        password: "long enough password",
        companyName: "X",
      },
    );
    expect(r2.statusCode).toBe(409);
    await noRowOf(taken);
  });

  describe("login", () => {
    const login = (m: Meta, email: string, password: string) =>
      call(m, { method: "POST", url: "/api/auth/login" }, { email, password });

    it("success: auth.login, access, by the user, in the tenant's chain", async () => {
      const s = await signup(t.app);
      const m = meta("10.1.0.1");
      expect((await login(m, s.email, s.password)).statusCode).toBe(200);
      expect(await rowOf(m)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "auth.login",
        entity_type: "user",
        entity_id: s.userId,
        action: "access",
        actor_type: "user",
        actor_id: s.userId,
        result: "success",
      });
      await expectNoSecrets(s.tenantId, [s.password]);
    });

    it("wrong password: a failure row, anonymous, in the user's tenant chain", async () => {
      const s = await signup(t.app);
      const m = meta("10.1.0.2");
      const wrong = `wrong-${randomBytes(6).toString("hex")}`;
      expect((await login(m, s.email, wrong)).statusCode).toBe(401);
      const row = await rowOf(m);
      expect(row).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "auth.login",
        entity_type: "user",
        entity_id: s.userId,
        action: "failure",
        actor_type: "anonymous",
        result: "failure",
      });
      expect(row.error_message).toBeTruthy();
      await expectNoSecrets(s.tenantId, [wrong, s.password]);
    });

    it("unknown email: a failure row in the platform's chain naming nobody, keeping no input", async () => {
      const m = meta("10.1.0.3");
      const email = uniqueEmail("nobody");
      const typed = `typed-${randomBytes(6).toString("hex")}`;
      expect((await login(m, email, typed)).statusCode).toBe(401);
      const row = await rowOf(m);
      expect(row).toMatchObject({
        tenant_id: null,
        event_type: "auth.login",
        entity_id: null,
        action: "failure",
        actor_type: "anonymous",
        result: "failure",
      });
      expect(JSON.stringify(row)).not.toContain(typed);
      expect(JSON.stringify(row)).not.toContain(email);
    });

    it("a platform admin's login goes to the platform's chain", async () => {
      const email = uniqueEmail("op");
      const password = `pw-${randomBytes(8).toString("hex")}`;
      const admin = await t.ctx.auth.createPlatformAdmin({ email, password });
      const m = meta("10.1.0.4");
      expect((await login(m, email, password)).statusCode).toBe(200);
      expect(await rowOf(m)).toMatchObject({
        tenant_id: null,
        event_type: "auth.login",
        entity_id: admin.id,
        action: "access",
        actor_type: "platform_admin",
        actor_id: admin.id,
      });
    });

    it("a refused body (400) writes no row", async () => {
      const m = meta("10.1.0.5");
      const res = await call(m, { method: "POST", url: "/api/auth/login" }, { email: "x" });
      expect(res.statusCode).toBe(400);
      await noRowOf(m);
    });
  });

  describe("sessions", () => {
    const refresh = (m: Meta, refreshToken: string) =>
      call(m, { method: "POST", url: "/api/auth/refresh" }, { refreshToken });

    it("refresh: auth.refresh by the user; reuse: one failure row and the session revoked", async () => {
      const s = await signup(t.app);
      const m = meta();
      const res = await refresh(m, s.refreshToken);
      expect(res.statusCode).toBe(200);
      const rotated = await rowOf(m);
      expect(rotated).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "auth.refresh",
        entity_type: "session",
        action: "update",
        actor_type: "user",
        actor_id: s.userId,
      });
      const reuse = meta();
      expect((await refresh(reuse, s.refreshToken)).statusCode).toBe(401);
      expect(await rowOf(reuse)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "auth.refresh_reuse",
        entity_type: "session",
        entity_id: rotated.entity_id,
        action: "failure",
        actor_type: "anonymous",
        result: "failure",
      });
      // The session is revoked: presenting the token again is merely invalid, and not recorded.
      const again = meta();
      expect((await refresh(again, s.refreshToken)).statusCode).toBe(401);
      await noRowOf(again);
      const unknown = meta();
      expect((await refresh(unknown, `rtk_${randomBytes(16).toString("hex")}`)).statusCode).toBe(
        401,
      );
      await noRowOf(unknown);
      await expectNoSecrets(s.tenantId, [s.refreshToken, res.json().refreshToken]);
    });

    it("logout: auth.logout, delete, of the session", async () => {
      const s = await signup(t.app);
      const m = meta();
      const res = await call(m, { method: "POST", url: "/api/auth/logout", headers: asUser(s) });
      expect(res.statusCode).toBe(204);
      expect(await rowOf(m)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "auth.logout",
        entity_type: "session",
        action: "delete",
        actor_type: "user",
        actor_id: s.userId,
      });
    });
  });

  describe("users", () => {
    it("create and delete: user.create and user.delete, never the password", async () => {
      const s = await signup(t.app);
      const m = meta();
      const email = uniqueEmail("member");
      const password = `pw-${randomBytes(8).toString("hex")}`;
      const res = await call(
        m,
        { method: "POST", url: USERS, headers: asUser(s) },
        {
          email,
          password,
          role: "member",
        },
      );
      expect(res.statusCode, res.body).toBe(201);
      const id = res.json().id;
      const created = await rowOf(m);
      expect(created).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "user.create",
        entity_type: "user",
        entity_id: id,
        action: "create",
        actor_type: "user",
        actor_id: s.userId,
        new_values: { email, role: "member" },
      });
      const d = meta();
      expect(
        (await call(d, { method: "DELETE", url: `${USERS}/${id}`, headers: asUser(s) })).statusCode,
      ).toBe(204);
      expect(await rowOf(d)).toMatchObject({
        event_type: "user.delete",
        entity_id: id,
        action: "delete",
        old_values: { email, role: "member" },
      });
      await expectNoSecrets(s.tenantId, [password, s.password]);
    });

    it("refused changes write no row: validation, role, duplicate, last owner, unknown user", async () => {
      const s = await signup(t.app);
      const cases: Array<[InjectOptions["method"], string, object | undefined, number]> = [
        ["POST", USERS, { email: "bad", password: "long enough pw", role: "member" }, 400],
        ["POST", USERS, { email: s.email, password: "long enough pw", role: "member" }, 409],
        ["DELETE", `${USERS}/${s.userId}`, undefined, 409],
        ["DELETE", `${USERS}/${randomUUID()}`, undefined, 404],
      ];
      for (const [method, url, payload, status] of cases) {
        const m = meta();
        const res = await call(m, { method, url, headers: asUser(s) }, payload);
        expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(status);
        await noRowOf(m);
      }
      // A member may not add users.
      const member = await addMember(s);
      const m = meta();
      const res = await call(
        m,
        { method: "POST", url: USERS, headers: asUser(member) },
        {
          email: uniqueEmail(),
          password: "long enough pw",
          role: "member",
        },
      );
      expect(res.statusCode).toBe(403);
      await noRowOf(m);
    });
  });

  /** Adds a member to `s`'s tenant and logs them in. */
  async function addMember(s: SignedUp): Promise<{ token: string; id: string }> {
    const email = uniqueEmail("member");
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const res = await t.app.inject({
      method: "POST",
      url: USERS,
      headers: asUser(s),
      payload: { email, password, role: "member" },
    });
    expect(res.statusCode).toBe(201);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      remoteAddress: "10.9.9.9",
      payload: { email, password },
    });
    return { token: login.json().token, id: res.json().id };
  }

  describe("API keys", () => {
    it("create, rotate and revoke: one row each, prefixes and scopes, never a secret", async () => {
      const s = await signup(t.app);
      const c = meta();
      const created = await call(
        c,
        { method: "POST", url: KEYS, headers: asUser(s) },
        {
          name: "n8n",
          scopes: ["ingest"],
        },
      );
      expect(created.statusCode).toBe(201);
      const key = created.json();
      expect(await rowOf(c)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "api_key.create",
        entity_type: "api_key",
        entity_id: key.key.id,
        action: "create",
        actor_type: "user",
        actor_id: s.userId,
        new_values: { name: "n8n", prefix: key.key.prefix, scopes: ["ingest"] },
      });

      const r = meta();
      const rotated = await call(r, {
        method: "POST",
        url: "/api/customers/api-key",
        headers: asUser(s),
      });
      expect(rotated.statusCode).toBe(201);
      const rotatedRow = await rowOf(r);
      expect(rotatedRow).toMatchObject({
        event_type: "api_key.rotate",
        entity_id: rotated.json().key.id,
        action: "create",
      });
      expect(rotatedRow.new_values?.revokedKeyIds).toHaveLength(2);

      const fresh = await call(
        meta(),
        { method: "POST", url: KEYS, headers: asUser(s) },
        {
          name: "web",
          scopes: ["read"],
        },
      );
      const id = fresh.json().key.id;
      const v = meta();
      expect(
        (await call(v, { method: "DELETE", url: `${KEYS}/${id}`, headers: asUser(s) })).statusCode,
      ).toBe(204);
      expect(await rowOf(v)).toMatchObject({
        event_type: "api_key.revoke",
        entity_type: "api_key",
        entity_id: id,
        action: "delete",
      });
      // Revoking it again changes nothing and records nothing.
      const again = meta();
      expect(
        (await call(again, { method: "DELETE", url: `${KEYS}/${id}`, headers: asUser(s) }))
          .statusCode,
      ).toBe(204);
      await noRowOf(again);
      await expectNoSecrets(s.tenantId, [
        s.apiKey,
        key.apiKey,
        rotated.json().apiKey,
        fresh.json().apiKey,
      ]);
    });

    it("an API key acting is the actor; refused changes write no row", async () => {
      const s = await signup(t.app);
      const admin = (
        await t.app.inject({
          method: "POST",
          url: KEYS,
          headers: asUser(s),
          payload: { name: "admin", scopes: ["admin"] },
        })
      ).json();
      const m = meta();
      const res = await call(
        m,
        { method: "POST", url: KEYS, headers: { "x-api-key": admin.apiKey } },
        {
          name: "by key",
          scopes: ["read"],
        },
      );
      expect(res.statusCode).toBe(201);
      const rowsOfRequest = await t.ctx.db.query<AuditRow>(
        "select * from audit_events where request_id = $1 order by seq",
        [m.requestId],
      );
      // The admin key's first use from this address, then the creation.
      expect(rowsOfRequest.map((r) => [r.event_type, r.actor_type, r.actor_id])).toEqual([
        ["api_key.new_ip", "api_key", admin.key.id],
        ["api_key.create", "api_key", admin.key.id],
      ]);

      const other = await signup(t.app);
      const cases: Array<[InjectOptions["method"], string, object | undefined, number]> = [
        ["POST", KEYS, { name: "", scopes: ["read"] }, 400],
        ["POST", KEYS, { name: "x", scopes: ["nope"] }, 400],
        ["DELETE", `${KEYS}/${other.userId}`, undefined, 404],
      ];
      for (const [method, url, payload, status] of cases) {
        const m2 = meta();
        const r = await call(m2, { method, url, headers: asUser(s) }, payload);
        expect(r.statusCode, r.body).toBe(status);
        await noRowOf(m2);
      }
      // A narrower key may not create keys at all.
      const m3 = meta("10.2.0.1");
      const refused = await call(
        m3,
        { method: "POST", url: KEYS, headers: { "x-api-key": s.apiKey } },
        {
          name: "x",
          scopes: ["read"],
        },
      );
      expect(refused.statusCode).toBe(403);
      const of3 = await t.ctx.db.query<AuditRow>(
        "select * from audit_events where request_id = $1",
        [m3.requestId],
      );
      expect(of3.map((r) => r.event_type)).toEqual(["api_key.new_ip"]);
    });

    it("use from a new address: one access row per (key, address), however many at once", async () => {
      const s = await signup(t.app);
      const use = (ip: string) =>
        t.app.inject({
          url: "/api/auth/me",
          remoteAddress: ip,
          headers: { "x-api-key": s.apiKey, "user-agent": "n8n" },
        });
      const ips = ["10.3.0.1", "10.3.0.2", "2001:db8::7"];
      for (const ip of ips) {
        const all = await Promise.all(Array.from({ length: 12 }, () => use(ip)));
        expect(all.map((r) => r.statusCode)).toEqual(Array(12).fill(200));
      }
      // Again, sequentially: known addresses write nothing.
      for (const ip of ips) expect((await use(ip)).statusCode).toBe(200);
      const found = await rows(s.tenantId, "api_key.new_ip");
      expect(found.map((r) => r.ip_address).sort()).toEqual([...ips].sort());
      for (const r of found) {
        expect(r).toMatchObject({
          entity_type: "api_key",
          action: "access",
          actor_type: "api_key",
          result: "success",
          user_agent: "n8n",
        });
      }
      const addresses = await t.ctx.db.query<{ ip: string }>(
        "select ip from api_key_addresses where tenant_id = $1 order by ip",
        [s.tenantId],
      );
      expect(addresses.map((a) => a.ip)).toEqual([...ips].sort());
    });

    it("two servers over one database: parallel first uses from an address record once", async () => {
      const s = await signup(t.app);
      // A second app over the same database, with its own memory of known addresses (the
      // handle's close leaves the shared database open).
      const shared = faultyDb(t.ctx.db, /^$/);
      const config = loadConfig({
        DATA_DIR: mkdtempSync(path.join(tmpdir(), "tenantrag-audit-")),
        LOG_LEVEL: "silent",
        JWT_SECRET: randomBytes(32).toString("hex"),
        MASTER_KEY: randomBytes(32).toString("hex"),
      });
      const ctx2 = await createContext(config, {
        db: shared.db,
        logger: pino({ level: "silent" }),
        migrations: "skip",
        tenantRateLimits: GENEROUS_RATE_LIMITS,
      });
      const app2 = await buildApp(ctx2);
      try {
        const use = (app: typeof app2) =>
          app.inject({
            url: "/api/auth/me",
            remoteAddress: "10.6.0.1",
            headers: { "x-api-key": s.apiKey },
          });
        const all = await Promise.all(
          Array.from({ length: 16 }, (_, i) => use(i % 2 === 0 ? t.app : app2)),
        );
        expect(all.map((r) => r.statusCode)).toEqual(Array(16).fill(200));
        expect((await rows(s.tenantId, "api_key.new_ip")).map((r) => r.ip_address)).toEqual([
          "10.6.0.1",
        ]);
      } finally {
        await app2.close();
        await ctx2.close();
        rmSync(config.dataDir, { recursive: true, force: true });
      }
    });

    it("a revoked key used from a new address records nothing", async () => {
      const s = await signup(t.app);
      await t.app.inject({ method: "POST", url: "/api/customers/api-key", headers: asUser(s) });
      const res = await t.app.inject({
        url: "/api/auth/me",
        remoteAddress: "10.4.0.1",
        headers: { "x-api-key": s.apiKey },
      });
      expect(res.statusCode).toBe(401);
      expect(await rows(s.tenantId, "api_key.new_ip")).toEqual([]);
    });
  });

  describe("profile and configuration", () => {
    it("profile: tenant.update with the old and new name", async () => {
      const s = await signup(t.app, { companyName: "Old Name" });
      const m = meta();
      const res = await call(
        m,
        { method: "PUT", url: "/api/customers/profile", headers: asUser(s) },
        {
          companyName: "New Name",
        },
      );
      expect(res.statusCode, res.body).toBe(200);
      expect(await rowOf(m)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "tenant.update",
        entity_type: "tenant",
        entity_id: s.tenantId,
        action: "update",
        actor_type: "user",
        old_values: { name: "Old Name" },
        new_values: { name: "New Name" },
      });
      const bad = meta();
      const refused = await call(
        bad,
        { method: "PUT", url: "/api/customers/profile", headers: asUser(s) },
        { companyName: "" },
      );
      expect(refused.statusCode).toBe(400);
      await noRowOf(bad);
    });

    it("a PUT that changes nothing writes no row (profile and configuration)", async () => {
      const s = await signup(t.app, { companyName: "Same Name" });
      const profile = meta();
      const same = await call(
        profile,
        { method: "PUT", url: "/api/customers/profile", headers: asUser(s) },
        { companyName: "Same Name" },
      );
      expect(same.statusCode, same.body).toBe(200);
      expect(same.json().tenant.name).toBe("Same Name");
      await noRowOf(profile);

      const current = await t.app.inject({ url: "/api/customers/config", headers: asUser(s) });
      expect(current.statusCode, current.body).toBe(200);
      const config = meta();
      const unchanged = await call(
        config,
        { method: "PUT", url: "/api/customers/config", headers: asUser(s) },
        { chunkSize: current.json().chunkSize, chunkOverlap: current.json().chunkOverlap },
      );
      expect(unchanged.statusCode, unchanged.body).toBe(200);
      await noRowOf(config);

      // One field really changed: one row, naming that field alone.
      const changed = meta();
      const res = await call(
        changed,
        { method: "PUT", url: "/api/customers/config", headers: asUser(s) },
        { chunkSize: current.json().chunkSize + 100, chunkOverlap: current.json().chunkOverlap },
      );
      expect(res.statusCode, res.body).toBe(200);
      expect((await rowOf(changed)).new_values).toEqual({
        chunkSize: current.json().chunkSize + 100,
      });
    });

    it("config: the changed fields only, and of the provider key only that it was set", async () => {
      const s = await signup(t.app);
      const providerKey = `sk-${randomBytes(16).toString("hex")}`;
      const m = meta();
      const res = await call(
        m,
        { method: "PUT", url: "/api/customers/config", headers: asUser(s) },
        {
          chunkSize: 800,
          maxDocuments: 1000,
          providerApiKey: providerKey,
        },
      );
      expect(res.statusCode, res.body).toBe(200);
      const row = await rowOf(m);
      expect(row).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "tenant_config.update",
        entity_type: "tenant_config",
        entity_id: s.tenantId,
        action: "update",
      });
      // maxDocuments was 1000 already: not a change.
      expect(Object.keys(row.new_values ?? {}).sort()).toEqual(["chunkSize", "providerKey"]);
      expect(row.new_values).toMatchObject({ chunkSize: 800, providerKey: "set" });
      await expectNoSecrets(s.tenantId, [providerKey]);
      expect(JSON.stringify(row)).not.toContain("last4");

      const refusals: Array<[object, number]> = [
        [{ maxDocuments: 10_000_000 }, 422],
        [{ chunkSize: 100, chunkOverlap: 200 }, 400],
        [{ chunkStrategy: "nope" }, 400],
      ];
      for (const [payload, status] of refusals) {
        const bad = meta();
        const r = await call(
          bad,
          { method: "PUT", url: "/api/customers/config", headers: asUser(s) },
          payload,
        );
        expect(r.statusCode, r.body).toBe(status);
        await noRowOf(bad);
      }
    });
  });

  describe("platform administration", () => {
    it("suspend and reactivate: rows in the tenant's chain by the platform admin", async () => {
      const s = await signup(t.app);
      const adminId = (
        await t.app.inject({ url: "/api/auth/me", headers: bearer(adminToken) })
      ).json().user.id;
      const m = meta();
      const res = await call(m, {
        method: "POST",
        url: `/api/admin/customers/${s.tenantId}/suspend`,
        headers: bearer(adminToken),
      });
      expect(res.statusCode).toBe(200);
      expect(await rowOf(m)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "tenant.suspend",
        entity_type: "tenant",
        entity_id: s.tenantId,
        action: "update",
        actor_type: "platform_admin",
        actor_id: adminId,
        old_values: { status: "active" },
        new_values: { status: "suspended" },
      });
      // A suspended tenant's owner who logs in: a failure row, though the password was right.
      const l = meta("10.5.0.1");
      const login = await call(
        l,
        { method: "POST", url: "/api/auth/login" },
        {
          email: s.email,
          password: s.password,
        },
      );
      expect(login.statusCode).toBe(403);
      expect(await rowOf(l)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "auth.login",
        action: "failure",
        result: "failure",
      });
      const r = meta();
      expect(
        (
          await call(r, {
            method: "POST",
            url: `/api/admin/customers/${s.tenantId}/reactivate`,
            headers: bearer(adminToken),
          })
        ).statusCode,
      ).toBe(200);
      expect(await rowOf(r)).toMatchObject({
        tenant_id: s.tenantId,
        event_type: "tenant.reactivate",
        actor_type: "platform_admin",
        new_values: { status: "active" },
      });
      const missing = meta();
      expect(
        (
          await call(missing, {
            method: "POST",
            url: `/api/admin/customers/${randomUUID()}/suspend`,
            headers: bearer(adminToken),
          })
        ).statusCode,
      ).toBe(404);
      await noRowOf(missing);
    });
  });

  it("the CLI's platform admin: a row in the platform's chain by the CLI operator", async () => {
    const email = uniqueEmail("cli");
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const user = await t.ctx.auth.createPlatformAdmin({ email, password });
    const [row] = await t.ctx.db.query<AuditRow>(
      "select * from audit_events where entity_id = $1",
      [user.id],
    );
    expect(row).toMatchObject({
      tenant_id: null,
      event_type: "platform_admin.create",
      entity_type: "user",
      action: "create",
      actor_type: "system",
      actor_id: "cli:admin create-platform-admin",
      request_id: null,
      ip_address: null,
      new_values: { email, role: "platform_admin" },
    });
    await expectNoSecrets(null, [password]);
  });
});

describe.each(backends)("audit rows and failed transactions ($name)", (backend) => {
  let app: Awaited<ReturnType<typeof startFaulty>>;
  beforeAll(async () => {
    app = await startFaulty(backend);
  });
  afterAll(() => app.close());

  it("a change whose transaction fails leaves neither the change nor a row", async () => {
    const s = await signup(app.app);
    const before = await app.ctx.db.query("select id from audit_events where tenant_id = $1", [
      s.tenantId,
    ]);
    app.keys.failNext(1);
    const res = await app.app.inject({
      method: "POST",
      url: KEYS,
      headers: bearer(s.token),
      payload: { name: "doomed", scopes: ["read"] },
    });
    expect(res.statusCode).toBe(500);
    const keys = await app.app.inject({ url: KEYS, headers: bearer(s.token) });
    expect(keys.json().items.map((k: { name: string }) => k.name)).not.toContain("doomed");
    const after = await app.ctx.db.query("select id from audit_events where tenant_id = $1", [
      s.tenantId,
    ]);
    expect(after).toEqual(before);
  });

  it("a change whose audit row cannot be written does not commit", async () => {
    const s = await signup(app.app);
    app.audit.failNext(1);
    const res = await app.app.inject({
      method: "PUT",
      url: "/api/customers/profile",
      headers: bearer(s.token),
      payload: { companyName: "Never Renamed" },
    });
    expect(res.statusCode).toBe(500);
    const profile = await app.app.inject({
      url: "/api/customers/profile",
      headers: bearer(s.token),
    });
    expect(profile.json().tenant.name).not.toBe("Never Renamed");
  });

  it("a login whose audit row cannot be written starts no session", async () => {
    const s = await signup(app.app);
    const sessions = async () =>
      app.ctx.db.query("select s.id from auth_sessions s where s.user_id = $1", [s.userId]);
    const before = await sessions();
    app.audit.failNext(1);
    const res = await app.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: s.email, password: s.password },
    });
    expect(res.statusCode).toBe(500);
    expect(await sessions()).toEqual(before);
  });

  it("a first use from an address whose row failed is noted again by the next use", async () => {
    const s = await signup(app.app);
    const use = () =>
      app.app.inject({
        url: "/api/auth/me",
        remoteAddress: "10.7.0.1",
        headers: { "x-api-key": s.apiKey },
      });
    app.audit.failNext(1);
    expect((await use()).statusCode).toBe(500);
    const addresses = () =>
      app.ctx.db.query("select ip from api_key_addresses where tenant_id = $1", [s.tenantId]);
    expect(await addresses()).toEqual([]);
    expect((await use()).statusCode).toBe(200);
    expect((await use()).statusCode).toBe(200);
    expect(await addresses()).toEqual([{ ip: "10.7.0.1" }]);
    const recorded = await app.ctx.db.query(
      "select 1 from audit_events where tenant_id = $1 and event_type = 'api_key.new_ip'",
      [s.tenantId],
    );
    expect(recorded).toHaveLength(1);
  });
});

/**
 * The app over a database whose API-key inserts and audit inserts can be made to fail: what a
 * transaction that breaks half-way through looks like.
 */
async function startFaulty(backend: TestBackend) {
  const dataDir = mkdtempSync(path.join(tmpdir(), "tenantrag-audit-"));
  const { db, dispose } = await backend.open();
  const audit = faultyDb(db, /insert into "audit_events"/i);
  const keys = faultyDb(audit.db, /^insert into "api_keys"/i);
  const config = loadConfig({
    DATA_DIR: dataDir,
    LOG_LEVEL: "silent",
    JWT_SECRET: randomBytes(32).toString("hex"),
    MASTER_KEY: randomBytes(32).toString("hex"),
  });
  const ctx = await createContext(config, {
    db: keys.db,
    logger: pino({ level: "silent" }),
    migrations: "skip",
    tenantRateLimits: GENEROUS_RATE_LIMITS,
  });
  const app = await buildApp(ctx);
  await app.ready();
  return {
    app,
    ctx,
    audit,
    keys,
    async close() {
      await app.close();
      await ctx.close();
      await dispose();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
