import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RouteScope, requiredScopes } from "../../src/http/auth-hook.js";
import { migrate } from "../../src/platform/db/index.js";
import { API_KEY_SCOPES, type ApiKeyScope } from "../../src/tenancy.js";
import {
  apiKeyWithScopes,
  bearer,
  expectError,
  type Method,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { fillUrl } from "../fixtures/isolation.js";

/**
 * What an API key needs on each tenant route: the policy users rely on, written out here so
 * that a change to a route's `config.scope` is a visible decision. A new route fails the walk
 * until it is added.
 */
const POLICY: Record<string, RouteScope> = {
  "POST /api/auth/logout": "none",
  "GET /api/auth/me": "none",
  "GET /api/audit": "admin",
  "GET /api/audit/verify": "admin",
  "GET /api/audit/export": "admin",
  // The events feed names who did what (user ids): admin keys. Its aggregates suit a
  // dashboard's read-only key.
  "GET /api/events": "admin",
  "GET /api/analytics/conversations": "read",
  "GET /api/analytics/escalation-rate": "read",
  "GET /api/analytics/ingestion": "read",
  "GET /api/analytics/quota-friction": "read",
  "GET /api/analytics/plan-funnel": "read",
  "POST /api/customers/api-key": "admin",
  "GET /api/customers/api-keys": "admin",
  "POST /api/customers/api-keys": "admin",
  "DELETE /api/customers/api-keys/:id": "admin",
  "GET /api/customers/users": "admin",
  "POST /api/customers/users": "admin",
  "DELETE /api/customers/users/:id": "admin",
  "GET /api/customers/profile": "read",
  "PUT /api/customers/profile": "admin",
  "GET /api/customers/config": "read",
  "GET /api/metrics/rate-limits": "read",
  "PUT /api/customers/config": "admin",
  "GET /api/customers/quotas": "none",
  "POST /api/ingest/document": "ingest",
  "POST /api/ingest/batch": "ingest",
  "POST /api/ingest/url": "ingest",
  "POST /api/ingest/webhook": "ingest",
  "POST /api/ingest/file": "ingest",
  "GET /api/ingest/presigned-url": "ingest",
  "POST /api/ingest/uploads/:id/complete": "ingest",
  "GET /api/documents": "read",
  "GET /api/documents/:id": "read",
  "GET /api/documents/:id/versions": "read",
  "GET /api/documents/:id/status": "read",
  "PUT /api/documents/:id": "ingest",
  "DELETE /api/documents/:id": "ingest",
  "POST /api/search": ["read", "chat"],
  "GET /api/alerts": "read",
  "POST /api/alerts/:id/ack": "admin",
  "GET /api/alerts/settings": "read",
  "PUT /api/alerts/settings": "admin",
  "GET /api/metrics/reconciliation": "read",
  "GET /api/metrics/overview": "read",
  "GET /api/metrics/usage": "read",
  "GET /api/metrics/documents": "read",
  "GET /api/metrics/tokens": "read",
  "GET /api/metrics/costs": "read",
  "GET /api/metrics/report": "read",
  "GET /api/metrics/export": "read",
  "GET /api/customers/usage": "read",
  "POST /search": ["read", "chat"],
  // Chat: a turn needs `chat`; the history suits a dashboard's read key and the chat
  // integration alike; deleting a conversation is the chat integration's (a visitor's request).
  "POST /api/chat": "chat",
  "GET /api/chat/sessions": ["read", "chat"],
  "GET /api/chat/sessions/:id": ["read", "chat"],
  "DELETE /api/chat/sessions/:id": "chat",
  "GET /api/chat/settings": "read",
  "PUT /api/chat/settings": "admin",
  ...Object.fromEntries(
    ["faqs", "menu-items", "policies"].flatMap((c) => [
      [`GET /api/knowledge/${c}`, "read"],
      [`POST /api/knowledge/${c}`, "ingest"],
      [`GET /api/knowledge/${c}/:id`, "read"],
      [`PUT /api/knowledge/${c}/:id`, "ingest"],
      [`DELETE /api/knowledge/${c}/:id`, "ingest"],
    ]),
  ),
};

interface Route {
  method: Method;
  url: string;
  key: string;
  auth: string;
  scope: RouteScope | undefined;
}

/** A body no route accepts: a call that passes authentication stops at validation, harmless. */
const PROBE = { "probe-field-no-route-accepts": true };

describe.each(backends)("API key scopes ($name)", (backend) => {
  let t: TestApp;
  let routes: Route[];
  beforeAll(async () => {
    t = await startApp(backend);
    routes = [];
    for (const r of t.app.routeTable) {
      if (r.url.startsWith("/docs")) continue;
      for (const method of [r.method].flat() as Method[]) {
        if (method === "HEAD" || method === "OPTIONS") continue;
        routes.push({
          method,
          url: r.url,
          key: `${method} ${r.url}`,
          auth: r.config?.auth ?? "tenant",
          scope: r.config?.scope,
        });
      }
    }
  });
  afterAll(() => t.close());

  const tenantRoutes = () => routes.filter((r) => r.auth === "tenant" || r.auth === "any");
  const call = (route: Route, headers: Record<string, string>) =>
    t.app.inject({
      method: route.method,
      url: fillUrl(route.url),
      headers,
      ...(route.method === "GET" || route.method === "DELETE" ? {} : { payload: PROBE }),
    });

  it("every route that a key can reach declares the scope it needs", () => {
    const failures: string[] = [];
    expect(tenantRoutes().length).toBeGreaterThan(30);
    for (const route of tenantRoutes()) {
      if (route.scope === undefined) {
        failures.push(`${route.key}: declares no config.scope (keys without admin are refused)`);
      }
      if (!(route.key in POLICY)) failures.push(`${route.key}: not in POLICY of this test`);
      else if (JSON.stringify(route.scope) !== JSON.stringify(POLICY[route.key])) {
        failures.push(
          `${route.key}: declares ${JSON.stringify(route.scope)}, POLICY says otherwise`,
        );
      }
    }
    expect(failures, failures.join("\n")).toEqual([]);
  });

  it.each(
    [["ingest"], ["read"], ["chat"], ["admin"], ["ingest", "read"]].map((scopes) => ({
      scopes: scopes as ApiKeyScope[],
      label: scopes.join("+"),
    })),
  )("a key with $label reaches exactly the routes its scopes allow", async ({ scopes }) => {
    const s = await signup(t.app);
    const key = await apiKeyWithScopes(t.app, s, scopes);
    const failures: string[] = [];
    for (const route of routes.filter((r) => r.auth !== "public")) {
      const res = await call(route, { "x-api-key": key });
      const code = res.statusCode >= 400 ? res.json().error?.code : undefined;
      if (route.auth === "platform_admin") {
        if (code !== "auth.platform_admin_required")
          failures.push(
            `${route.key}: expected 403 auth.platform_admin_required, got ${res.statusCode} ${res.body}`,
          );
        continue;
      }
      const needed = requiredScopes(POLICY[route.key] ?? "admin");
      const allowed =
        needed.length === 0 || scopes.includes("admin") || needed.some((n) => scopes.includes(n));
      if (!allowed) {
        if (res.statusCode !== 403 || code !== "auth.scope_required") {
          failures.push(
            `${route.key}: expected 403 auth.scope_required, got ${res.statusCode} ${res.body}`,
          );
          continue;
        }
        const details = res.json().error.details;
        expect(details.requiredScopes).toEqual(needed);
        expect(res.json().error.message).toContain(needed[0]);
      } else if (
        code === "auth.scope_required" ||
        res.statusCode === 401 ||
        res.statusCode >= 500
      ) {
        failures.push(
          `${route.key}: a key with ${scopes} should pass, got ${res.statusCode} ${res.body}`,
        );
      }
    }
    expect(failures, failures.join("\n")).toEqual([]);
  });

  describe("what keys of each scope can and cannot do", () => {
    let s: SignedUp;
    beforeAll(async () => {
      s = await signup(t.app);
    });
    const as = (key: string, method: Method, url: string, payload?: object) =>
      t.app.inject({ method, url, headers: { "x-api-key": key }, ...(payload ? { payload } : {}) });
    const doc = () => ({ title: "Hours", content: `We open at nine ${uniqueEmail()}.` });
    const newUser = () => ({
      email: uniqueEmail("k"),
      password: "a long password",
      role: "member",
    });

    it("the signup key has the default scopes, shown in the list and in /me", async () => {
      const other = await signup(t.app);
      const me = await as(other.apiKey, "GET", "/api/auth/me");
      expect(me.json().apiKey.scopes).toEqual(["ingest", "read"]);
      const list = await t.app.inject({
        url: "/api/customers/api-keys",
        headers: bearer(other.token),
      });
      expect(list.json().items.map((k: { scopes: string[] }) => k.scopes)).toEqual([
        ["ingest", "read"],
      ]);
    });

    it("an ingest key ingests, but cannot read, search, or manage users, keys and settings", async () => {
      const key = await apiKeyWithScopes(t.app, s, ["ingest"]);
      const ingested = await as(key, "POST", "/api/ingest/document", doc());
      expect(ingested.statusCode, ingested.body).toBe(202);
      const id = ingested.json().documentId;
      expectError(await as(key, "GET", `/api/documents/${id}`), 403, "auth.scope_required");
      expectError(
        await as(key, "POST", "/api/search", { query: "nine" }),
        403,
        "auth.scope_required",
      );
      for (const [method, url, body] of [
        ["POST", "/api/customers/users", newUser()],
        ["GET", "/api/customers/users", undefined],
        ["DELETE", `/api/customers/users/${s.userId}`, undefined],
        ["POST", "/api/customers/api-key", { scopes: ["admin"] }],
        ["GET", "/api/customers/api-keys", undefined],
        ["PUT", "/api/customers/config", { chunkSize: 600 }],
        ["PUT", "/api/customers/profile", { companyName: "Taken over" }],
      ] as Array<[Method, string, object | undefined]>) {
        const res = await as(key, method, url, body);
        const err = expectError(res, 403, "auth.scope_required");
        expect(err.error.details.requiredScopes, `${method} ${url}`).toEqual(["admin"]);
      }
      // Nothing happened: the owner is still there, the key is still the only one, same settings.
      const users = await t.app.inject({ url: "/api/customers/users", headers: bearer(s.token) });
      expect(users.json().items.map((u: { id: string }) => u.id)).toEqual([s.userId]);
      const keys = await t.app.inject({ url: "/api/customers/api-keys", headers: bearer(s.token) });
      expect(keys.json().items.filter((k: { revokedAt: null }) => !k.revokedAt)).toHaveLength(1);
      expect((await as(key, "GET", "/api/auth/me")).statusCode).toBe(200);
    });

    it("a read key searches and lists, but cannot ingest, change or delete", async () => {
      const ingested = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: bearer(s.token),
        payload: doc(),
      });
      const id = ingested.json().documentId;
      const key = await apiKeyWithScopes(t.app, s, ["read"]);
      expect((await as(key, "POST", "/api/search", { query: "nine" })).statusCode).toBe(200);
      expect((await as(key, "GET", "/api/documents")).statusCode).toBe(200);
      expect((await as(key, "GET", `/api/documents/${id}`)).statusCode).toBe(200);
      expect((await as(key, "GET", "/api/customers/config")).statusCode).toBe(200);
      expect((await as(key, "GET", "/api/knowledge/faqs")).statusCode).toBe(200);
      expectError(await as(key, "POST", "/api/ingest/document", doc()), 403, "auth.scope_required");
      expectError(
        await as(key, "PUT", `/api/documents/${id}`, { content: "Overwritten." }),
        403,
        "auth.scope_required",
      );
      expectError(await as(key, "DELETE", `/api/documents/${id}`), 403, "auth.scope_required");
      expectError(
        await as(key, "POST", "/api/knowledge/faqs", { question: "Q?", answer: "A." }),
        403,
        "auth.scope_required",
      );
    });

    it("a chat key may search but not list documents", async () => {
      const key = await apiKeyWithScopes(t.app, s, ["chat"]);
      expect((await as(key, "POST", "/api/search", { query: "nine" })).statusCode).toBe(200);
      expectError(await as(key, "GET", "/api/documents"), 403, "auth.scope_required");
    });

    it("a chat key chats and reads its sessions; a read key reads them but cannot chat", async () => {
      const chatKey = await apiKeyWithScopes(t.app, s, ["chat"]);
      const turn = await as(chatKey, "POST", "/api/chat", { message: "nine", sessionId: "k-1" });
      expect(turn.statusCode, turn.body).toBe(200);
      expect((await as(chatKey, "GET", "/api/chat/sessions/k-1")).statusCode).toBe(200);
      expectError(await as(chatKey, "PUT", "/api/chat/settings", {}), 403, "auth.scope_required");
      const readKey = await apiKeyWithScopes(t.app, s, ["read"]);
      expect((await as(readKey, "GET", "/api/chat/sessions")).statusCode).toBe(200);
      expectError(
        await as(readKey, "POST", "/api/chat", { message: "nine" }),
        403,
        "auth.scope_required",
      );
      expectError(
        await as(readKey, "DELETE", "/api/chat/sessions/k-1"),
        403,
        "auth.scope_required",
      );
    });

    it("an admin key manages users and keys, like a tenant admin", async () => {
      const key = await apiKeyWithScopes(t.app, s, ["admin"]);
      const created = await as(key, "POST", "/api/customers/users", newUser());
      expect(created.statusCode, created.body).toBe(201);
      // A key acts as an admin, never an owner: it may not create one.
      const owner = await as(key, "POST", "/api/customers/users", { ...newUser(), role: "owner" });
      expectError(owner, 403, "auth.forbidden");
      const regen = await as(key, "POST", "/api/customers/api-key", { scopes: ["read"] });
      expect(regen.statusCode, regen.body).toBe(201);
      expect(regen.json().key.scopes).toEqual(["read"]);
      expectError(await as(key, "GET", "/api/auth/me"), 401, "auth.invalid_api_key");
    });

    it("scopes are chosen at creation: named, deduplicated, validated", async () => {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/customers/api-key",
        headers: bearer(s.token),
        payload: { name: "n8n", scopes: ["read", "ingest", "read"] },
      });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().key).toMatchObject({ name: "n8n", scopes: ["ingest", "read"] });
      const none = await t.app.inject({
        method: "POST",
        url: "/api/customers/api-key",
        headers: bearer(s.token),
      });
      expect(none.json().key.scopes).toEqual(["ingest", "read"]);
      for (const scopes of [[], ["root"], "admin"]) {
        const bad = await t.app.inject({
          method: "POST",
          url: "/api/customers/api-key",
          headers: bearer(s.token),
          payload: { scopes },
        });
        expectError(bad, 400, "validation.failed");
      }
    });

    it("users are not concerned: a member still ingests and searches by role", async () => {
      const email = uniqueEmail("member");
      await t.app.inject({
        method: "POST",
        url: "/api/customers/users",
        headers: bearer(s.token),
        payload: { email, password: "a long password", role: "member" },
      });
      const login = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email, password: "a long password" },
      });
      const member = bearer(login.json().token);
      const res = await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: member,
        payload: doc(),
      });
      expect(res.statusCode, res.body).toBe(202);
    });
  });

  it("keys made before scopes existed get the default scopes, not admin", async () => {
    const { db, dispose } = await backend.open();
    try {
      // Back to the schema before migration 8, with a key made then.
      await db.exec(`
        alter table api_keys drop column scopes;
        delete from schema_migrations where version = 8;
      `);
      const [tenant] = await db.query<{ id: string }>(
        "insert into tenants (name, plan_id) values ('Old', 'trial') returning id",
      );
      await db.query(
        "insert into api_keys (tenant_id, name, prefix, key_hash) values ($1, 'old', 'trk_old', 'h')",
        [tenant?.id],
      );
      expect(await migrate(db)).toContain(8);
      const rows = await db.query<{ scopes: string[] }>("select scopes from api_keys");
      expect(rows.map((r) => r.scopes)).toEqual([["ingest", "read"]]);
      // Every later insert must say what it grants, and only known scopes.
      await expect(
        db.query(
          "insert into api_keys (tenant_id, name, prefix, key_hash, scopes) values ($1, 'x', 'p', 'h2', '{root}')",
          [tenant?.id],
        ),
      ).rejects.toThrow();
    } finally {
      await dispose();
    }
  });

  it("API_KEY_SCOPES are the ones the policy uses", () => {
    const used = new Set(Object.values(POLICY).flatMap((s) => requiredScopes(s)));
    for (const s of used) expect(API_KEY_SCOPES).toContain(s);
  });
});
