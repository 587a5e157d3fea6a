import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIL_UUID, verifyExportFile } from "../../src/modules/audit/index.js";
import {
  apiKeyWithScopes,
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { auditChain, expectIntactChain } from "../fixtures/audit.js";
import { userContext } from "../fixtures/contexts.js";
import { backends, type TestBackend } from "../fixtures/db.js";
import { faultyDb } from "../fixtures/faulty-db.js";
import { FAQS } from "../fixtures/knowledge.js";

const TENANT_ROUTES = ["/api/audit", "/api/audit/verify", "/api/audit/export"] as const;
const ADMIN_ROUTES = ["/api/admin/audit", "/api/admin/audit/verify", "/api/admin/audit/export"];

/** The page reads of verification and export (rows by seq), to hold or count. */
const PAGE_READ = /from "audit_events" where "chain_id" = \$1 and "seq" > \$2/;

/** The backend with the audit trail's page reads made to wait on demand. */
function withHeldPages(backend: TestBackend) {
  let faults: ReturnType<typeof faultyDb> | undefined;
  const wrapped: TestBackend = {
    name: backend.name,
    async open() {
      const opened = await backend.open();
      faults = faultyDb(opened.db, PAGE_READ);
      return { db: faults.db, dispose: opened.dispose };
    },
  };
  return { backend: wrapped, faults: () => faults as ReturnType<typeof faultyDb> };
}

/** A 4xx in the one error shape, with a code; never a 5xx. */
function expectClientError(res: LightMyRequestResponse, what: string): string {
  expect(res.statusCode, `${what}: ${res.body.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
  expect(res.statusCode, `${what}: ${res.body.slice(0, 300)}`).toBeLessThan(500);
  expect(res.headers["content-type"], what).toMatch(/^application\/json/);
  const body = res.json();
  expect(typeof body.error?.code, what).toBe("string");
  expect(typeof body.error?.message, what).toBe("string");
  return body.error.code;
}

const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe.each(backends)("audit routes under attack ($name)", (plain) => {
  const held = withHeldPages(plain);
  let t: TestApp;
  let a: SignedUp;
  let b: SignedUp;
  let platform: string;
  /** Tenant A's users of each role, and keys of each scope. */
  const as: Record<string, Record<string, string>> = {};

  beforeAll(async () => {
    t = await startApp(held.backend);
    platform = await platformAdminToken(t);
    a = await signup(t.app, { companyName: "Tenant A" });
    b = await signup(t.app, { companyName: "Tenant B" });
    as.owner = bearer(a.token);
    for (const role of ["admin", "member"]) {
      const email = uniqueEmail(role);
      const password = `pw-${randomBytes(8).toString("hex")}`;
      const res = await t.app.inject({
        method: "POST",
        url: "/api/customers/users",
        headers: bearer(a.token),
        payload: { email, password, role },
      });
      expect(res.statusCode, res.body).toBe(201);
      const login = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email, password },
      });
      expect(login.statusCode, login.body).toBe(200);
      as[role] = bearer(login.json().token);
    }
    for (const scope of ["ingest", "read", "chat", "admin"]) {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/customers/api-keys",
        headers: bearer(a.token),
        payload: { name: `${scope} key`, scopes: [scope] },
      });
      expect(res.statusCode, res.body).toBe(201);
      as[`key:${scope}`] = { "x-api-key": res.json().apiKey };
    }
    as["key:default"] = { "x-api-key": a.apiKey };
    // Some rows on both chains, so that a leak would show.
    for (const s of [a, b]) {
      for (let i = 0; i < 3; i++) {
        const res = await t.app.inject({
          method: "PUT",
          url: "/api/alerts/settings",
          headers: bearer(s.token),
          payload: { costUsdMonthly: 10 + i },
        });
        expect(res.statusCode, res.body).toBe(200);
      }
    }
  });
  afterAll(() => t?.close());

  const exportRows = async (tenantId: string) =>
    (await auditChain(t.ctx.db, tenantId)).filter((r) => r.event_type === "audit.export");

  describe("who may read", () => {
    it("owners, admins and admin-scoped keys read their chain; members and narrower keys get 403; nobody 401", async () => {
      for (const url of TENANT_ROUTES) {
        for (const who of ["owner", "admin", "key:admin"]) {
          const res = await t.app.inject({ url, headers: as[who] });
          expect(res.statusCode, `${who} ${url}: ${res.body}`).toBe(200);
        }
        expectError(await t.app.inject({ url, headers: as.member }), 403, "auth.forbidden");
        for (const who of ["key:ingest", "key:read", "key:chat", "key:default"]) {
          const res = await t.app.inject({ url, headers: as[who] });
          expect(res.statusCode, `${who} ${url}`).toBe(403);
          expect(res.json().error.code).toBe("auth.scope_required");
          expect(res.json().error.details.requiredScopes).toEqual(["admin"]);
        }
        expectError(await t.app.inject({ url }), 401, "auth.unauthenticated");
        expectError(
          await t.app.inject({ url, headers: { "x-api-key": `${a.apiKey}x` } }),
          401,
          "auth.invalid_api_key",
        );
        // A platform admin reads a tenant's chain on the admin routes, not as the tenant.
        expectError(
          await t.app.inject({ url, headers: bearer(platform) }),
          403,
          "auth.tenant_required",
        );
      }
      for (const url of ADMIN_ROUTES) {
        for (const who of ["owner", "admin", "member", "key:admin"]) {
          expectError(
            await t.app.inject({ url: `${url}?tenantId=${a.tenantId}`, headers: as[who] }),
            403,
            "auth.platform_admin_required",
          );
        }
        expectError(await t.app.inject({ url }), 401, "auth.unauthenticated");
      }
      // The public key is public, and is the one that signs.
      const key = await t.app.inject({ url: "/api/audit/public-key" });
      expect(key.statusCode).toBe(200);
      expect(key.json()).toEqual({
        algorithm: "Ed25519",
        keyId: t.ctx.auditTrail.signingKey.keyId,
        publicKey: t.ctx.auditTrail.signingKey.publicKeyPem,
      });
    });

    it("a refused export (role, scope, bad query) records no export", async () => {
      const before = (await exportRows(a.tenantId)).length;
      for (const headers of [as.member, as["key:read"], as["key:default"]]) {
        expect((await t.app.inject({ url: "/api/audit/export", headers })).statusCode).toBe(403);
      }
      for (const q of ["from=yesterday", "limit=5", "from=0000-01-01T00:00:00Z", "to=%00"]) {
        const res = await t.app.inject({ url: `/api/audit/export?${q}`, headers: as.owner });
        expect(expectClientError(res, q)).toBe("validation.failed");
      }
      expect(await exportRows(a.tenantId)).toHaveLength(before);
      // An accepted one is recorded, as its reader.
      const ok = await t.app.inject({ url: "/api/audit/export", headers: as["key:admin"] });
      expect(ok.statusCode).toBe(200);
      const rows = await exportRows(a.tenantId);
      expect(rows).toHaveLength(before + 1);
      expect(rows.at(-1)).toMatchObject({ actor_type: "api_key", action: "access" });
    });
  });

  describe("one tenant's chain only", () => {
    it("lists, filters, cursors, verification and exports never reach the other tenant's rows", async () => {
      const bRows = await auditChain(t.ctx.db, b.tenantId);
      const bRow = bRows.at(-1);
      expect(bRow).toBeDefined();
      const list = async (q: string) => {
        const res = await t.app.inject({ url: `/api/audit?${q}`, headers: as.owner });
        expect(res.statusCode, res.body).toBe(200);
        return res.json() as { items: Array<{ tenantId: string; id: string }> };
      };
      for (const q of [
        "limit=200",
        `entityId=${b.tenantId}`,
        `actorId=${b.userId}`,
        `entityId=${bRow?.entity_id}&eventType=${bRow?.event_type}`,
        // B's own row as a cursor: a position in time, read on A's chain.
        `cursor=${cursorOf([bRow?.created_at.toISOString(), bRow?.id])}`,
      ]) {
        const page = await list(q);
        for (const item of page.items) expect(item.tenantId, q).toBe(a.tenantId);
        if (q.startsWith("entityId") || q.startsWith("actorId")) expect(page.items, q).toEqual([]);
      }
      // A tenant cannot name another chain: tenantId is the admin routes' only.
      for (const url of TENANT_ROUTES) {
        const res = await t.app.inject({ url: `${url}?tenantId=${b.tenantId}`, headers: as.owner });
        expect(expectClientError(res, url)).toBe("validation.failed");
      }
      const verify = await t.app.inject({ url: "/api/audit/verify", headers: as.owner });
      expect(verify.json()).toMatchObject({
        ok: true,
        checked: (await auditChain(t.ctx.db, a.tenantId)).length,
      });
      const exported = await t.app.inject({ url: "/api/audit/export", headers: as.owner });
      const lines = exported.body
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines[0]).toMatchObject({ type: "header", chainId: a.tenantId, tenantId: a.tenantId });
      for (const l of lines.slice(1)) expect(l.chain_id).toBe(a.tenantId);
      expect(JSON.stringify(lines)).not.toContain(b.tenantId);
      // B's chain is what it was: nothing of A's reads or export landed on it.
      expect(await auditChain(t.ctx.db, b.tenantId)).toEqual(bRows);
    });

    it("the admin routes read the chain they name; the platform's without a tenant", async () => {
      const page = await t.app.inject({
        url: `/api/admin/audit?tenantId=${b.tenantId}&limit=200`,
        headers: bearer(platform),
      });
      expect(page.statusCode, page.body).toBe(200);
      expect(page.json().items.length).toBeGreaterThan(0);
      for (const item of page.json().items) expect(item.tenantId).toBe(b.tenantId);
      const own = await t.app.inject({ url: "/api/admin/audit", headers: bearer(platform) });
      for (const item of own.json().items) expect(item.tenantId).toBeNull();
      const verify = await t.app.inject({
        url: `/api/admin/audit/verify?tenantId=${b.tenantId}`,
        headers: bearer(platform),
      });
      expect(verify.json()).toMatchObject({ ok: true });
      for (const id of ["123", "not-a-uuid", NIL_UUID.slice(1), "%00"]) {
        for (const url of ADMIN_ROUTES) {
          const res = await t.app.inject({
            url: `${url}?tenantId=${id}`,
            headers: bearer(platform),
          });
          expect(expectClientError(res, `${url} ${id}`)).toBe("validation.failed");
        }
      }
    });
  });

  describe("cursors", () => {
    it("a cursor handed out pages on; a forged or tampered one is a 400 naming cursor", async () => {
      const first = await t.app.inject({ url: "/api/audit?limit=2", headers: as.owner });
      const { items, nextCursor } = first.json();
      expect(nextCursor).toEqual(expect.any(String));
      const next = await t.app.inject({
        url: `/api/audit?limit=2&cursor=${nextCursor}`,
        headers: as.owner,
      });
      expect(next.statusCode).toBe(200);
      expect(next.json().items[0].seq).toBeLessThan(items[1].seq);

      const id = randomUUID();
      const forged = [
        "abc",
        "%00",
        "%ZZ",
        "A".repeat(201),
        // Cut short, and its id made not a UUID.
        nextCursor.slice(0, -6),
        cursorOf([
          JSON.parse(Buffer.from(nextCursor, "base64url").toString())[0],
          `${id.slice(0, -1)}g`,
        ]),
        cursorOf({ createdAt: "2026-01-01T00:00:00.000Z", id }),
        cursorOf(["2026-01-01T00:00:00.000Z", "not-a-uuid"]),
        cursorOf(["2026-01-01T00:00:00Z", id]),
        cursorOf(["2026-02-30T00:00:00.000Z", id]),
        cursorOf(["0000-01-01T00:00:00.000Z", id]),
        cursorOf([1_700_000_000_000, id]),
        cursorOf(null),
        cursorOf("x"),
        Buffer.from('["2026-01-01T00:00:00.000Z",').toString("base64url"),
      ];
      for (const c of forged) {
        const res = await t.app.inject({ url: `/api/audit?cursor=${c}`, headers: as.owner });
        expect(expectClientError(res, `cursor ${c.slice(0, 40)}`)).toBe("validation.failed");
        expect(JSON.stringify(res.json().error.details)).toContain("cursor");
      }
      // A well-formed cursor names a position, not a chain: it pages this tenant's rows only.
      const anywhere = await t.app.inject({
        url: `/api/audit?cursor=${cursorOf(["9999-12-31T23:59:59.999Z", id])}`,
        headers: as.owner,
      });
      expect(anywhere.statusCode).toBe(200);
      for (const item of anywhere.json().items) expect(item.tenantId).toBe(a.tenantId);
    });
  });

  describe("query strings", () => {
    const huge = "x".repeat(100_000);
    /** Inputs every audit route must refuse with a 400 (list-only filters on the list routes). */
    const refusedEverywhere = [
      "from=yesterday",
      "from=2026-01-01",
      "from=2026-01-01T00:00:00",
      "from=2026-02-30T00:00:00Z",
      "from=2026-13-01T00:00:00Z",
      "from=2026-01-01T24:00:00Z",
      "from=2026-01-01T00:00:00%2B99:00",
      "from=0000-01-01T00:00:00Z",
      "to=0000-06-01T00:00:00Z",
      "from=0001-01-01T00:00:00%2B14:00",
      "to=9999-12-31T23:59:59-14:00",
      "from=275760-09-13T00:00:00Z",
      "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
      "from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
      "from=2026-01-01T00:00:00Z&from=2026-01-02T00:00:00Z",
      "from[]=2026-01-01T00:00:00Z",
      `from=${huge}`,
      "from=%00",
      "to=2026-01-01T00:00:00Z%00",
      "foo=bar",
      "__proto__=1",
      `${huge}=1`,
    ];
    const refusedOnLists = [
      "limit=0",
      "limit=201",
      "limit=-1",
      "limit=1.5",
      "limit=abc",
      "limit=99999999999999999999",
      "limit=",
      "limit=1&limit=2",
      "eventType=",
      "eventType=%00",
      "eventType=a%00b",
      "actorId=%00",
      "entityId=%00",
      `eventType=${huge}`,
      `entityType=${"e".repeat(51)}`,
      `entityId=${"i".repeat(256)}`,
      `actorId=${huge}`,
      "eventType=a&eventType=b",
      "eventType[a]=b",
      "action=nope",
      "actorType=root",
      "result=maybe",
      `cursor=${huge}`,
    ];

    it("bad dates, windows, limits, NUL, huge values and unknown keys: a 400 with a code, never a 500", async () => {
      const routes = [
        ...TENANT_ROUTES.map((url) => ({ url, headers: as.owner, list: url === "/api/audit" })),
        ...ADMIN_ROUTES.map((url) => ({
          url,
          headers: bearer(platform),
          list: url === "/api/admin/audit",
        })),
      ];
      for (const r of routes) {
        const cases = [...refusedEverywhere, ...refusedOnLists];
        for (const q of cases) {
          const res = await t.app.inject({ url: `${r.url}?${q}`, headers: r.headers });
          const code = expectClientError(res, `${r.url}?${q.slice(0, 60)}`);
          expect(code, `${r.url}?${q.slice(0, 60)}`).toBe("validation.failed");
          expect(res.statusCode).toBe(400);
        }
      }
    });

    it("text that is not valid UTF-8 or a malformed percent-encoding filters to nothing (as U+FFFD or as written), not a 500", async () => {
      for (const url of ["/api/audit", "/api/admin/audit"]) {
        const headers = url === "/api/audit" ? as.owner : bearer(platform);
        for (const q of [
          "eventType=%C3%28",
          "eventType=%ED%A0%80",
          "eventType=%FF%FE",
          "actorId=%ZZ",
          "entityId=%E2%82",
          "entityId=%F0%9F%98%80",
          "eventType=%",
        ]) {
          const res = await t.app.inject({ url: `${url}?${q}`, headers });
          expect(res.statusCode, `${url}?${q}: ${res.body}`).toBe(200);
          expect(res.json().items).toEqual([]);
        }
      }
    });

    it("the widest window the schema takes, years 0001 to 9999, verifies and exports the whole chain", async () => {
      const w = "from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59.999Z";
      const rows = await auditChain(t.ctx.db, a.tenantId);
      const v = await t.app.inject({ url: `/api/audit/verify?${w}`, headers: as.owner });
      expect(v.statusCode, v.body).toBe(200);
      expect(v.json()).toMatchObject({ ok: true, checked: rows.length });
      const page = await t.app.inject({ url: `/api/audit?${w}&limit=200`, headers: as.owner });
      expect(page.json().items).toHaveLength(rows.length);
      const e = await t.app.inject({ url: `/api/audit/export?${w}`, headers: as.owner });
      expect(e.statusCode).toBe(200);
      // The export's own row is written first, and is in it.
      expect(e.body.trim().split("\n")).toHaveLength(1 + rows.length + 1);
    });
  });

  describe("export of a large chain", () => {
    /** Appends `n` rows to the tenant's chain, 100 per transaction, as a busy tenant's would be. */
    async function grow(s: SignedUp, n: number): Promise<void> {
      const ctx = userContext(s.tenantId, s.userId);
      for (let done = 0; done < n; done += 100) {
        await t.ctx.db.transaction(async (tx) => {
          for (let i = done; i < Math.min(n, done + 100); i++) {
            await t.ctx.audit.record(
              ctx,
              {
                eventType: "document.update",
                entityType: "document",
                entityId: `doc-${i}`,
                action: "update",
                newValues: { title: `Title ${i} ${"padding ".repeat(20)}` },
              },
              { tx },
            );
          }
        });
      }
    }

    it("streams: the header reaches the client before any page of rows is read; every row follows, in order, and verifies offline", {
      timeout: 120_000,
    }, async () => {
      const s = await signup(t.app, { companyName: "Busy" });
      await grow(s, 2_500);
      const total = (await auditChain(t.ctx.db, s.tenantId)).length;
      await t.app.listen({ port: 0, host: "127.0.0.1" });
      const { port } = t.app.server.address() as AddressInfo;
      const faults = held.faults();
      const pagesBefore = faults.attempts();
      faults.hold();
      let body = "";
      try {
        const res = await fetch(
          `http://127.0.0.1:${port}/api/audit/export?from=0001-01-01T00:00:00Z`,
          { headers: bearer(s.token) },
        );
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        const decoder = new TextDecoder();
        // The rows' page reads wait: only a streamed export has sent anything yet.
        while (!body.includes("\n")) {
          const { value, done } = await reader.read();
          expect(done).toBe(false);
          body += decoder.decode(value, { stream: true });
        }
        expect(JSON.parse(body.split("\n")[0] as string)).toMatchObject({ type: "header" });
        expect(body).not.toContain('"type":"row"');
        expect(faults.attempts() - pagesBefore).toBeLessThanOrEqual(1);
        faults.release();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          body += decoder.decode(value, { stream: true });
        }
      } finally {
        faults.release();
      }
      // Read in pages of 1000 (the export's row included).
      expect(faults.attempts() - pagesBefore).toBe(Math.ceil((total + 1) / 1000));
      const lines = body.trim().split("\n");
      const rows = lines.slice(1).map((l) => JSON.parse(l));
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: total + 1 }, (_, i) => i + 1));
      const dir = mkdtempSync(path.join(tmpdir(), "audit-export-"));
      try {
        const file = path.join(dir, "export.jsonl");
        writeFileSync(file, body);
        const result = await verifyExportFile(file, t.ctx.auditTrail.signingKey.publicKeyPem);
        expect(result).toMatchObject({ ok: true, checked: total + 1 });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe("reads while the chain grows", () => {
    it("concurrent verifications and exports during concurrent mutations: each sees an intact chain", {
      timeout: 120_000,
    }, async () => {
      const s = await signup(t.app, { companyName: "Racing" });
      const key = await apiKeyWithScopes(t.app, s, ["admin"]);
      const mutations = Array.from({ length: 40 }, (_, i) =>
        i % 2 === 0
          ? t.app.inject({
              method: "PUT",
              url: "/api/alerts/settings",
              headers: bearer(s.token),
              payload: { costUsdMonthly: 100 + i },
            })
          : t.app.inject({
              method: "POST",
              url: FAQS,
              headers: { "x-api-key": key },
              payload: { question: `Question ${i}?`, answer: `Answer ${i}.` },
            }),
      );
      const verifications = Array.from({ length: 10 }, () =>
        t.app.inject({ url: "/api/audit/verify", headers: bearer(s.token) }),
      );
      const exports = Array.from({ length: 10 }, () =>
        t.app.inject({ url: "/api/audit/export", headers: { "x-api-key": key } }),
      );
      const [m, v, e] = await Promise.all([
        Promise.all(mutations),
        Promise.all(verifications),
        Promise.all(exports),
      ]);
      for (const r of m) expect(r.statusCode, r.body).toBeLessThan(300);
      for (const r of v) {
        expect(r.statusCode, r.body).toBe(200);
        expect(r.json(), r.body).toMatchObject({ ok: true, reason: null });
      }
      const dir = mkdtempSync(path.join(tmpdir(), "audit-export-"));
      try {
        for (const [i, r] of e.entries()) {
          expect(r.statusCode, r.body).toBe(200);
          const file = path.join(dir, `export-${i}.jsonl`);
          writeFileSync(file, r.body);
          const result = await verifyExportFile(file, t.ctx.auditTrail.signingKey.publicKeyPem);
          expect(result, r.body.slice(0, 300)).toMatchObject({ ok: true, reason: null });
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      // One row per mutation and per export, on one unforked chain.
      const rows = await auditChain(t.ctx.db, s.tenantId);
      expectIntactChain(rows);
      expect(rows.filter((r) => r.event_type === "audit.export")).toHaveLength(10);
      expect(
        rows.filter((r) =>
          ["alert_settings.update", "knowledge_item.create"].includes(r.event_type),
        ),
      ).toHaveLength(40);
    });
  });
});
