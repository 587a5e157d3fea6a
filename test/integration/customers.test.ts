import { randomBytes } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
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
import { userContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";

type Role = "owner" | "admin" | "member";
const PROFILE = "/api/customers/profile";
const CONFIG = "/api/customers/config";
const USERS = "/api/customers/users";
const ADMIN = "/api/admin/customers";
/** The trial plan's limits, which are also a new tenant's. */
const TRIAL_LIMITS = {
  rateLimitPerMinute: 60,
  rateLimitPerDay: 10000,
  maxDocuments: 1000,
  maxFileSizeMb: 25,
};
interface Member {
  id: string;
  email: string;
  password: string;
  token: string;
  refreshToken: string;
}

describe.each(backends)("customers ($name)", (backend) => {
  let t: TestApp;
  let adminToken: string;
  beforeAll(async () => {
    t = await startApp(backend);
    adminToken = await platformAdminToken(t);
  });
  afterAll(() => t.close());

  const get = (url: string, token: string) => t.app.inject({ url, headers: bearer(token) });
  const put = (url: string, token: string, payload: object) =>
    t.app.inject({ method: "PUT", url, headers: bearer(token), payload });
  const post = (url: string, token: string, payload?: object) =>
    t.app.inject({ method: "POST", url, headers: bearer(token), ...(payload ? { payload } : {}) });
  const del = (url: string, token: string) =>
    t.app.inject({ method: "DELETE", url, headers: bearer(token) });
  const login = (email: string, password: string) =>
    t.app.inject({ method: "POST", url: "/api/auth/login", payload: { email, password } });
  const withKey = (url: string, apiKey: string) =>
    t.app.inject({ url, headers: { "x-api-key": apiKey } });
  /** Awaits the answer and asserts it is the error `code` with `status`. */
  const refused = async (res: Promise<LightMyRequestResponse>, status: number, code: string) =>
    expectError(await res, status, code);

  /** Adds a user to the tenant as `by`, then logs the new user in. */
  async function addUser(by: string, role: Role): Promise<Member> {
    const email = uniqueEmail(role);
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const created = await post(USERS, by, { email, password, role });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ email, role });
    const session = await login(email, password);
    expect(session.statusCode, session.body).toBe(200);
    const { token, refreshToken } = session.json();
    return { id: created.json().id, email, password, token, refreshToken };
  }

  const users = async (token: string) =>
    (await get(USERS, token)).json().items as Array<{ id: string; role: Role }>;

  describe("profile", () => {
    it("shows the tenant and the calling user", async () => {
      const s = await signup(t.app, { companyName: "Bistro" });
      const res = await get(PROFILE, s.token);
      expect(res.statusCode).toBe(200);
      expect(res.json().tenant).toMatchObject({
        id: s.tenantId,
        name: "Bistro",
        status: "active",
        plan: "trial",
      });
      expect(res.json().user).toMatchObject({ id: s.userId, email: s.email, role: "owner" });
    });

    it("renames the company, trimmed, and the next read shows the new name", async () => {
      const s = await signup(t.app, { companyName: "Old Name" });
      const res = await put(PROFILE, s.token, {
        companyName: "  Bistro Nouveau  ",
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().tenant.name).toBe("Bistro Nouveau");
      expect((await get(PROFILE, s.token)).json().tenant.name).toBe("Bistro Nouveau");
    });

    it("refuses a blank name and a member's rename, and keeps the name", async () => {
      const s = await signup(t.app, { companyName: "Kept" });
      const member = await addUser(s.token, "member");
      await refused(put(PROFILE, s.token, { companyName: "   " }), 400, "validation.failed");
      await refused(put(PROFILE, member.token, { companyName: "Mine" }), 403, "auth.forbidden");
      expect((await get(PROFILE, s.token)).json().tenant.name).toBe("Kept");
    });
  });

  describe("config", () => {
    const trialDefaults = {
      ...TRIAL_LIMITS,
      allowedDocumentTypes: ["pdf", "txt", "html", "md"],
      chunkSize: 1000,
      chunkOverlap: 200,
      chunkStrategy: "recursive",
      embeddingProvider: "local",
      embeddingModel: null,
      providerApiKey: { set: false, last4: null },
      planLimits: TRIAL_LIMITS,
    };

    it("starts from the trial plan's defaults", async () => {
      const s = await signup(t.app);
      const res = await get(CONFIG, s.token);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject(trialDefaults);
    });

    it("applies partial updates, keeps every other setting, and persists them", async () => {
      const s = await signup(t.app);
      const first = {
        rateLimitPerMinute: 30,
        allowedDocumentTypes: ["pdf", "md"],
        chunkSize: 500,
        chunkOverlap: 50,
        chunkStrategy: "paragraph",
        embeddingModel: "nomic-embed-text",
      };
      const res = await put(CONFIG, s.token, first);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ ...trialDefaults, ...first });
      expect((await put(CONFIG, s.token, { maxDocuments: 10 })).statusCode).toBe(200);
      const read = (await get(CONFIG, s.token)).json();
      expect(read).toMatchObject({ ...trialDefaults, ...first, maxDocuments: 10 });
    });

    it("refuses limits above the plan's ceiling with 422 config.exceeds_plan and changes nothing", async () => {
      const s = await signup(t.app);
      for (const [field, max] of Object.entries(TRIAL_LIMITS)) {
        // chunkSize rides along: a refused update must not half-apply.
        const res = await put(CONFIG, s.token, { chunkSize: 600, [field]: max + 1 });
        const body = expectError(res, 422, "config.exceeds_plan");
        expect(body.error.details).toMatchObject({ field, max, plan: "trial" });
      }
      expect((await get(CONFIG, s.token)).json()).toMatchObject(trialDefaults);
      // The ceiling itself is allowed.
      expect((await put(CONFIG, s.token, TRIAL_LIMITS)).statusCode).toBe(200);
    });

    it("refuses an overlap that is not smaller than the chunk size, and a member's change", async () => {
      const s = await signup(t.app);
      const res = await put(CONFIG, s.token, { chunkSize: 200 });
      expect(expectError(res, 400, "validation.failed").error.details.issues[0].path).toBe(
        "chunkOverlap",
      );
      const member = await addUser(s.token, "member");
      await refused(put(CONFIG, member.token, { chunkSize: 800 }), 403, "auth.forbidden");
      expect((await get(CONFIG, member.token)).json().chunkSize).toBe(1000);
    });

    it("stores the provider key encrypted, shows only its last 4 characters, and clears it with null", async () => {
      const s = await signup(t.app);
      const key = `sk-live-${randomBytes(16).toString("hex")}`;
      const set = await put(CONFIG, s.token, { providerApiKey: key });
      expect(set.statusCode, set.body).toBe(200);
      expect(set.json().providerApiKey).toEqual({ set: true, last4: key.slice(-4) });
      const read = await get(CONFIG, s.token);
      expect(read.json().providerApiKey).toEqual({ set: true, last4: key.slice(-4) });
      expect(set.body).not.toContain(key);
      expect(read.body).not.toContain(key);

      const [row] = await t.ctx.db.query<{ enc: Uint8Array }>(
        "select provider_api_key_enc as enc from tenant_config where tenant_id = $1",
        [s.tenantId],
      );
      const stored = Buffer.from(row?.enc ?? new Uint8Array());
      expect(stored.length).toBeGreaterThan(key.length);
      expect(stored.includes(Buffer.from(key))).toBe(false);
      expect(stored.toString("hex")).not.toContain(Buffer.from(key).toString("hex"));

      const ctx = userContext(s.tenantId, s.userId);
      expect(await t.ctx.tenants.providerApiKey(ctx)).toBe(key);

      const cleared = await put(CONFIG, s.token, { providerApiKey: null });
      expect(cleared.json().providerApiKey).toEqual({ set: false, last4: null });
      expect((await get(CONFIG, s.token)).json().providerApiKey).toEqual({
        set: false,
        last4: null,
      });
      expect(await t.ctx.tenants.providerApiKey(ctx)).toBeUndefined();
    });
  });

  describe("users", () => {
    it("lets an owner add an admin and a member who log in with those roles", async () => {
      const s = await signup(t.app);
      const admin = await addUser(s.token, "admin");
      const member = await addUser(s.token, "member");
      expect((await get("/api/auth/me", admin.token)).json().user.role).toBe("admin");
      expect((await get("/api/auth/me", member.token)).json().user.role).toBe("member");
      const list = await users(s.token);
      expect(list.map((u) => [u.id, u.role])).toEqual(
        expect.arrayContaining([
          [s.userId, "owner"],
          [admin.id, "admin"],
          [member.id, "member"],
        ]),
      );
      expect(list).toHaveLength(3);
    });

    it("refuses a member who adds a user, and an admin who adds an owner or an admin", async () => {
      const s = await signup(t.app);
      const admin = await addUser(s.token, "admin");
      const member = await addUser(s.token, "member");
      const newUser = (role: Role) => ({ email: uniqueEmail(), password: "long enough pw", role });
      await refused(post(USERS, member.token, newUser("member")), 403, "auth.forbidden");
      await refused(post(USERS, admin.token, newUser("owner")), 403, "auth.forbidden");
      await refused(post(USERS, admin.token, newUser("admin")), 403, "auth.forbidden");
      expect(await users(s.token)).toHaveLength(3);
      // An admin may add members.
      expect((await post(USERS, admin.token, newUser("member"))).statusCode).toBe(201);
    });

    it("lets an admin remove a member but not an owner", async () => {
      const s = await signup(t.app);
      const admin = await addUser(s.token, "admin");
      const member = await addUser(s.token, "member");
      expect((await del(`${USERS}/${member.id}`, admin.token)).statusCode).toBe(204);
      expect((await users(s.token)).map((u) => u.id)).not.toContain(member.id);
      await refused(del(`${USERS}/${s.userId}`, admin.token), 403, "auth.forbidden");
      await refused(del(`${USERS}/${member.id}`, admin.token), 404, "not_found");
      expect((await users(s.token)).map((u) => u.id)).toContain(s.userId);
    });

    it("refuses to let users remove themselves, and tells a sole owner it is the last one", async () => {
      const s = await signup(t.app);
      await refused(del(`${USERS}/${s.userId}`, s.token), 409, "user.last_owner");
      const second = await addUser(s.token, "owner");
      await refused(del(`${USERS}/${second.id}`, second.token), 403, "auth.forbidden");
      expect((await users(s.token)).filter((u) => u.role === "owner")).toHaveLength(2);
    });

    /** Sends both removals and holds them until both have passed authentication. */
    async function removeEachOther(
      a: { id: string; token: string },
      b: { id: string; token: string },
    ) {
      const original = t.ctx.auth.deleteUser;
      let arrived = 0;
      let release = () => {};
      const bothIn = new Promise<void>((resolve) => {
        release = resolve;
      });
      const spy = vi.spyOn(t.ctx.auth, "deleteUser").mockImplementation(async (ctx, id) => {
        arrived += 1;
        if (arrived === 2) release();
        await bothIn;
        return original(ctx, id);
      });
      try {
        return await Promise.all([
          del(`${USERS}/${b.id}`, a.token),
          del(`${USERS}/${a.id}`, b.token),
        ]);
      } finally {
        spy.mockRestore();
      }
    }

    it("keeps the last owner when two owners remove each other at once (409 user.last_owner)", async () => {
      // Three rounds: without a lock, PostgreSQL lets both removals through most of the time.
      for (let round = 0; round < 3; round++) {
        const s = await signup(t.app);
        const second = await addUser(s.token, "owner");
        const answers = await removeEachOther({ id: s.userId, token: s.token }, second);
        const statuses = answers.map((r) => r.statusCode).sort();
        expect(statuses, answers.map((r) => r.body).join(" ")).toEqual([204, 409]);
        expect(answers.find((r) => r.statusCode === 409)?.json().error.code).toBe(
          "user.last_owner",
        );
        const owners = await t.ctx.db.query<{ id: string }>(
          "select id from users where tenant_id = $1 and role = 'owner'",
          [s.tenantId],
        );
        expect(owners).toHaveLength(1);
      }
    });

    it("ends a removed user's session: the access and refresh tokens get 401", async () => {
      const s = await signup(t.app);
      const member = await addUser(s.token, "member");
      expect((await get(PROFILE, member.token)).statusCode).toBe(200);
      expect((await del(`${USERS}/${member.id}`, s.token)).statusCode).toBe(204);
      expect((await get(PROFILE, member.token)).statusCode).toBe(401);
      const refresh = { refreshToken: member.refreshToken };
      await refused(
        t.app.inject({ method: "POST", url: "/api/auth/refresh", payload: refresh }),
        401,
        "auth.refresh_token_invalid",
      );
      await refused(login(member.email, member.password), 401, "auth.invalid_credentials");
    });
  });

  describe("platform admin", () => {
    type Listed = { id: string; status: string; createdAt: string };

    /** Follows nextCursor to the end; fails on a page larger than the limit. */
    async function listAll(query: string, limit = 2): Promise<Listed[]> {
      const items: Listed[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 500; page++) {
        const qs: string = `limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
        const res = await get(`${ADMIN}?${qs}`, adminToken);
        expect(res.statusCode, res.body).toBe(200);
        const body = res.json() as { items: Listed[]; nextCursor: string | null };
        expect(body.items.length).toBeLessThanOrEqual(limit);
        items.push(...body.items);
        cursor = body.nextCursor;
        if (!cursor) return items;
      }
      throw new Error("pagination never ended");
    }

    it("lists every tenant newest first across pages, without duplicates, and filters by status", async () => {
      const created: SignedUp[] = [];
      for (let i = 0; i < 3; i++) created.push(await signup(t.app, { companyName: `Paged ${i}` }));
      const all = await listAll("");
      const ids = all.map((x) => x.id);
      expect(new Set(ids).size).toBe(ids.length);
      const [total] = await t.ctx.db.query<{ n: number }>("select count(*)::int as n from tenants");
      expect(ids).toHaveLength(total?.n ?? -1);
      const at = created.map((c) => ids.indexOf(c.tenantId));
      expect(at.every((i) => i >= 0)).toBe(true);
      expect(at[2]).toBeLessThan(at[1] as number);
      expect(at[1]).toBeLessThan(at[0] as number);
      const times = all.map((x) => Date.parse(x.createdAt));
      expect(times).toEqual([...times].sort((x, y) => y - x));

      const target = created[1] as SignedUp;
      expect((await post(`${ADMIN}/${target.tenantId}/suspend`, adminToken)).statusCode).toBe(200);
      const suspended = await listAll("&status=suspended", 1);
      expect(suspended.map((x) => x.id)).toContain(target.tenantId);
      expect(suspended.every((x) => x.status === "suspended")).toBe(true);
      const active = (await listAll("&status=active", 50)).map((x) => x.id);
      expect(active).not.toContain(target.tenantId);
      expect(active).toEqual(expect.arrayContaining([created[0]?.tenantId, created[2]?.tenantId]));
    });

    it("refuses a cursor it did not issue", async () => {
      await refused(get(`${ADMIN}?cursor=not-a-cursor`, adminToken), 400, "validation.failed");
    });

    it("shows one tenant, and answers 404 for an unknown one", async () => {
      const s = await signup(t.app, { companyName: "Looked Up" });
      const res = await get(`${ADMIN}/${s.tenantId}`, adminToken);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({
        id: s.tenantId,
        name: "Looked Up",
        status: "active",
        plan: "trial",
      });
      const unknown = "00000000-0000-4000-8000-000000000000";
      await refused(get(`${ADMIN}/${unknown}`, adminToken), 404, "not_found");
      await refused(get(`${ADMIN}/not-a-uuid`, adminToken), 400, "validation.failed");
    });

    it("suspends a tenant, locking out its tokens, keys and logins, and reactivates it", async () => {
      const s = await signup(t.app);
      const suspend = await post(`${ADMIN}/${s.tenantId}/suspend`, adminToken);
      expect(suspend.statusCode).toBe(200);
      expect(suspend.json().status).toBe("suspended");
      await refused(get(PROFILE, s.token), 403, "tenant.suspended");
      await refused(withKey(PROFILE, s.apiKey), 403, "tenant.suspended");
      await refused(login(s.email, s.password), 403, "tenant.suspended");
      expect((await get(`${ADMIN}/${s.tenantId}`, adminToken)).json().status).toBe("suspended");

      const back = await post(`${ADMIN}/${s.tenantId}/reactivate`, adminToken);
      expect(back.statusCode).toBe(200);
      expect(back.json().status).toBe("active");
      expect((await get(PROFILE, s.token)).statusCode).toBe(200);
      expect((await withKey(PROFILE, s.apiKey)).statusCode).toBe(200);
    });
  });
});
