import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_ACTIVE_API_KEYS } from "../../src/modules/auth/index.js";
import type { ApiKeyScope } from "../../src/tenancy.js";
import {
  apiKeyWithScopes,
  bearer,
  expectError,
  type Method,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";

const KEYS = "/api/customers/api-keys";

interface KeyInfo {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  revokedAt: string | null;
}

describe.each(backends)("several API keys per tenant ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend);
  });
  afterAll(() => t.close());

  const inject = (
    headers: Record<string, string>,
    method: Method,
    url: string,
    payload?: object,
  ): Promise<LightMyRequestResponse> =>
    t.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });
  const asKey = (key: string, method: Method, url: string, payload?: object) =>
    inject({ "x-api-key": key }, method, url, payload);
  const asUser = (token: string, method: Method, url: string, payload?: object) =>
    inject(bearer(token), method, url, payload);

  /** Creates a key beside the others as `token`'s user; returns its secret and info. */
  async function createKey(token: string, name: string, scopes: string[]) {
    const res = await asUser(token, "POST", KEYS, { name, scopes });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { apiKey: string; key: KeyInfo };
  }
  const list = async (token: string) =>
    (await asUser(token, "GET", KEYS)).json().items as KeyInfo[];
  const active = async (token: string) => (await list(token)).filter((k) => !k.revokedAt);
  const doc = () => ({ title: "Hours", content: `We open at nine ${uniqueEmail()}.` });

  it("two keys of different scopes work at once, each within its scopes", async () => {
    const s = await signup(t.app);
    const ingest = await createKey(s.token, "n8n", ["ingest"]);
    const server = await createKey(s.token, "web server", ["chat", "read"]);
    expect(ingest.key).toMatchObject({ name: "n8n", scopes: ["ingest"], revokedAt: null });
    expect(server.key).toMatchObject({ name: "web server", scopes: ["read", "chat"] });
    expect(ingest.apiKey).toMatch(/^trk_/);
    expect(ingest.key.prefix).toBe(ingest.apiKey.slice(0, 12));

    const ingested = await asKey(ingest.apiKey, "POST", "/api/ingest/document", doc());
    expect(ingested.statusCode, ingested.body).toBe(202);
    const id = ingested.json().documentId;
    const read = await asKey(server.apiKey, "GET", `/api/documents/${id}`);
    expect(read.statusCode, read.body).toBe(200);
    expect((await asKey(server.apiKey, "POST", "/api/search", { query: "nine" })).statusCode).toBe(
      200,
    );
    expectError(
      await asKey(ingest.apiKey, "GET", `/api/documents/${id}`),
      403,
      "auth.scope_required",
    );
    expectError(
      await asKey(server.apiKey, "POST", "/api/ingest/document", doc()),
      403,
      "auth.scope_required",
    );
    // The signup key is still there too: creating a key revokes nothing.
    expect((await asKey(s.apiKey, "GET", "/api/auth/me")).statusCode).toBe(200);
    const keys = await list(s.token);
    expect(keys.map((k) => k.name).sort()).toEqual(["default", "n8n", "web server"]);
    expect(keys.every((k) => k.revokedAt === null)).toBe(true);
    expect(JSON.stringify(keys)).not.toContain(ingest.apiKey);
  });

  it("a revoked key stops at once, the others keep working; revoking again changes nothing", async () => {
    const s = await signup(t.app);
    const gone = await createKey(s.token, "old server", ["read"]);
    const kept = await createKey(s.token, "new server", ["read"]);
    expect((await asKey(gone.apiKey, "GET", "/api/documents")).statusCode).toBe(200);

    const res = await asUser(s.token, "DELETE", `${KEYS}/${gone.key.id}`);
    expect(res.statusCode, res.body).toBe(204);
    expect(res.body).toBe("");
    expectError(await asKey(gone.apiKey, "GET", "/api/documents"), 401, "auth.invalid_api_key");
    expect((await asKey(kept.apiKey, "GET", "/api/documents")).statusCode).toBe(200);
    expect((await asKey(s.apiKey, "GET", "/api/documents")).statusCode).toBe(200);

    const revokedAt = (await list(s.token)).find((k) => k.id === gone.key.id)?.revokedAt;
    expect(revokedAt).toEqual(expect.any(String));
    const again = await asUser(s.token, "DELETE", `${KEYS}/${gone.key.id}`);
    expect(again.statusCode, again.body).toBe(204);
    expect((await list(s.token)).find((k) => k.id === gone.key.id)?.revokedAt).toBe(revokedAt);
    expect((await active(s.token)).map((k) => k.id).sort()).toEqual(
      [kept.key.id, (await list(s.token)).find((k) => k.name === "default")?.id].sort(),
    );
  });

  it("an admin key creates and revokes keys, itself included", async () => {
    const s = await signup(t.app);
    const admin = await createKey(s.token, "ops", ["admin"]);
    const made = await asKey(admin.apiKey, "POST", KEYS, { name: "ops 2", scopes: ["admin"] });
    expect(made.statusCode, made.body).toBe(201);
    const second = made.json().apiKey as string;
    expect((await asKey(second, "GET", KEYS)).statusCode).toBe(200);
    expect((await asKey(admin.apiKey, "DELETE", `${KEYS}/${admin.key.id}`)).statusCode).toBe(204);
    expectError(await asKey(admin.apiKey, "GET", KEYS), 401, "auth.invalid_api_key");
    expect((await asKey(second, "GET", KEYS)).statusCode).toBe(200);
  });

  it("members and narrower keys can neither create nor revoke keys", async () => {
    const s = await signup(t.app);
    const email = uniqueEmail("member");
    const password = "a long password";
    await asUser(s.token, "POST", "/api/customers/users", { email, password, role: "member" });
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password },
    });
    const member = login.json().token as string;
    const target = (await list(s.token))[0] as KeyInfo;
    const body = { name: "mine", scopes: ["admin"] };
    expectError(await asUser(member, "POST", KEYS, body), 403, "auth.forbidden");
    expectError(await asUser(member, "DELETE", `${KEYS}/${target.id}`), 403, "auth.forbidden");
    const narrow = await createKey(s.token, "n8n", ["ingest", "read"]);
    for (const [method, url] of [
      ["POST", KEYS],
      ["DELETE", `${KEYS}/${target.id}`],
    ] as Array<[Method, string]>) {
      const err = expectError(
        await asKey(narrow.apiKey, method, url, method === "POST" ? body : undefined),
        403,
        "auth.scope_required",
      );
      expect(err.error.details.requiredScopes).toEqual(["admin"]);
    }
    // Nothing happened: the same two keys, both active.
    expect((await active(s.token)).map((k) => k.id).sort()).toEqual(
      [target.id, narrow.key.id].sort(),
    );
  });

  it("a key cannot grant a scope it lacks, even where a route would let it ask", async () => {
    // No route lets a non-admin key reach key creation; the service refuses it regardless.
    const s = await signup(t.app);
    const narrow = await createKey(s.token, "n8n", ["ingest"]);
    const ctx = (scopes: ApiKeyScope[]) =>
      apiKeyContext(s.tenantId, { keyId: narrow.key.id, scopes });
    await expect(
      t.ctx.auth.createApiKey(ctx(["ingest"]), { name: "wider", scopes: ["ingest", "admin"] }),
    ).rejects.toMatchObject({
      code: "auth.scope_required",
      details: { requiredScopes: ["admin"] },
    });
    await expect(
      t.ctx.auth.regenerateApiKey(ctx(["ingest"]), { scopes: ["read"] }),
    ).rejects.toMatchObject({ code: "auth.scope_required" });
    const same = await t.ctx.auth.createApiKey(ctx(["ingest"]), {
      name: "same",
      scopes: ["ingest"],
    });
    expect(same.key.scopes).toEqual(["ingest"]);
    expect((await active(s.token)).map((k) => k.name).sort()).toEqual(["default", "n8n", "same"]);
  });

  it("another tenant's key, or an unknown one, is not found, and stays usable", async () => {
    const a = await signup(t.app);
    const b = await signup(t.app);
    const bAdmin = await apiKeyWithScopes(t.app, b, ["admin"]);
    const aKey = await createKey(a.token, "a's server", ["read"]);
    for (const headers of [bearer(b.token), { "x-api-key": bAdmin }]) {
      expectError(await inject(headers, "DELETE", `${KEYS}/${aKey.key.id}`), 404, "not_found");
    }
    expectError(
      await asUser(a.token, "DELETE", `${KEYS}/00000000-0000-4000-8000-000000000000`),
      404,
      "not_found",
    );
    expectError(await asUser(a.token, "DELETE", `${KEYS}/not-a-uuid`), 400, "validation.failed");
    expect((await asKey(aKey.apiKey, "GET", "/api/documents")).statusCode).toBe(200);
    expect((await list(a.token)).find((k) => k.id === aKey.key.id)?.revokedAt).toBeNull();
    expect(JSON.stringify(await list(b.token))).not.toContain(aKey.key.id);
  });

  it("names and scopes are required and checked", async () => {
    const s = await signup(t.app);
    for (const payload of [
      {},
      { name: "x" },
      { scopes: ["read"] },
      { name: "   ", scopes: ["read"] },
      { name: "bell\u0007", scopes: ["read"] },
      { name: "x", scopes: [] },
      { name: "x", scopes: ["root"] },
      { name: "x", scopes: ["read"], revoked: false },
    ]) {
      expectError(await asUser(s.token, "POST", KEYS, payload), 400, "validation.failed");
    }
    const made = await createKey(s.token, "  n8n  ", ["read", "ingest", "read"]);
    expect(made.key).toMatchObject({ name: "n8n", scopes: ["ingest", "read"] });
  });

  it(`caps the active keys at ${MAX_ACTIVE_API_KEYS}; a revocation makes room`, async () => {
    const s = await signup(t.app);
    for (let i = 1; i < MAX_ACTIVE_API_KEYS; i++) await createKey(s.token, `k${i}`, ["read"]);
    const err = expectError(
      await asUser(s.token, "POST", KEYS, { name: "one too many", scopes: ["read"] }),
      409,
      "auth.too_many_api_keys",
    );
    expect(err.error.details).toEqual({ maxActiveKeys: MAX_ACTIVE_API_KEYS });
    const victim = (await active(s.token))[0] as KeyInfo;
    expect((await asUser(s.token, "DELETE", `${KEYS}/${victim.id}`)).statusCode).toBe(204);
    await createKey(s.token, "in its place", ["read"]);
    expect(await active(s.token)).toHaveLength(MAX_ACTIVE_API_KEYS);
    // Regenerating still revokes every key and leaves one.
    const regen = await asUser(s.token, "POST", "/api/customers/api-key", { scopes: ["read"] });
    expect(regen.statusCode, regen.body).toBe(201);
    expect((await active(s.token)).map((k) => k.id)).toEqual([regen.json().key.id]);
  });

  it("holds the cap when many keys are created at once", async () => {
    const s = await signup(t.app);
    const attempts = MAX_ACTIVE_API_KEYS + 10;
    const results = await Promise.all(
      Array.from({ length: attempts }, (_, i) =>
        asUser(s.token, "POST", KEYS, { name: `burst ${i}`, scopes: ["ingest"] }),
      ),
    );
    const created = results.filter((r) => r.statusCode === 201);
    const refused = results.filter((r) => r.statusCode !== 201);
    // The signup key is one of the active ones.
    expect(created).toHaveLength(MAX_ACTIVE_API_KEYS - 1);
    for (const r of refused) expectError(r, 409, "auth.too_many_api_keys");
    expect(await active(s.token)).toHaveLength(MAX_ACTIVE_API_KEYS);
  });
});
