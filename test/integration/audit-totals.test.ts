import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  type Method,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import {
  auditCaller,
  auditChain,
  type CalledResponse,
  expectIntactChain,
  type StoredAuditRow,
} from "../fixtures/audit.js";
import { backends } from "../fixtures/db.js";
import { FAQS } from "../fixtures/knowledge.js";
import { prng } from "../fixtures/usage.js";

/**
 * Requests per backend. The full 10 000 run on PostgreSQL (server mode, BullMQ workers); PGlite
 * runs the same mix, smaller, to keep the file near a minute there. Measured on the shared
 * 2-core machine (load average ~10): PostgreSQL 10 000 requests in 313 s plus 125 s for the
 * ingestion backlog to settle (its pool of 5 connections is shared by 64 clients and the
 * workers); PGlite 1 000 in 15 s plus 20 s (2 000 took 95 s in all, past the minute).
 */
const TOTAL = { postgres: 10_000, pglite: 1_000 } as const;
const CONCURRENCY = 64;

/** What one request was and what its client saw. */
interface Sent {
  tenant: Tenant;
  kind: string;
  requestId: string;
  status: number;
  /** The event type of the one row a success writes; undefined for a refusal. */
  eventType: string | undefined;
}

interface Tenant {
  s: SignedUp;
  /** A key with the admin scope (every route), and the signup's own (ingest, read). */
  adminKey: string;
  adminKeyId: string;
  docKey: string;
  /** A member's access token: the lowest role. */
  member: string;
  /** A knowledge item of this tenant, for the other tenant to aim at. */
  itemId: string;
  documentId: string;
}

/**
 * The audit log under load, through the API: 10 000 concurrent mixed mutations of two tenants
 * (JWT and API keys), successes and refusals, leave exactly one audit row per successful
 * mutation (found by its request id), none for a refused one, and each tenant's chain intact
 * (seq 1..n, every link and hash), by the verify route and recomputed here.
 */
describe.each(backends)("audit totals under mixed load ($name)", (backend) => {
  let t: TestApp;
  let admin: string;
  const call = auditCaller(() => t, "audit-totals/1.0");

  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" }, { workers: true });
    admin = await platformAdminToken(t);
  });
  afterAll(() => t?.close());

  async function tenant(name: string): Promise<Tenant> {
    const s = await signup(t.app, { companyName: name });
    const key = await call(bearer(s.token), "POST", "/api/customers/api-keys", {
      name: "load admin",
      scopes: ["admin"],
    });
    expect(key.statusCode, key.body).toBe(201);
    const email = uniqueEmail("member");
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const user = await call(bearer(s.token), "POST", "/api/customers/users", {
      email,
      password,
      role: "member",
    });
    expect(user.statusCode, user.body).toBe(201);
    const login = await call({}, "POST", "/api/auth/login", { email, password });
    expect(login.statusCode, login.body).toBe(200);
    const item = await call(bearer(s.token), "POST", FAQS, {
      question: `${name}: opening hours?`,
      answer: "Nine to five on weekdays.",
    });
    expect(item.statusCode, item.body).toBe(202);
    const doc = await call(bearer(s.token), "POST", "/api/ingest/document", {
      title: `${name} terms`,
      content: `${name} terms of service, in full.`,
    });
    expect(doc.statusCode, doc.body).toBe(202);
    return {
      s,
      adminKey: key.json().apiKey,
      adminKeyId: key.json().key.id,
      docKey: s.apiKey,
      member: login.json().token,
      itemId: item.json().id,
      documentId: doc.json().documentId,
    };
  }

  /** The id of the signup's own API key. */
  async function keyIdOf(s: SignedUp): Promise<string> {
    const res = await t.app.inject({ url: "/api/customers/api-keys", headers: bearer(s.token) });
    return res.json().items.find((k: { prefix: string }) => s.apiKey.startsWith(k.prefix)).id;
  }

  /**
   * Waits until no job of these tenants is running or due (their rows are all written). Work
   * deferred by minutes (index.optimize) is not waited for: it writes no audit row.
   */
  async function jobsSettled(tenantIds: string[], timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [busy] = await t.ctx.db.query<{ n: number }>(
        `select count(*)::int as n from jobs
         where tenant_id = any($1::uuid[]) and (status = 'running'
           or (status = 'queued' and run_at < now() + interval '1 minute'))`,
        [tenantIds],
      );
      if (busy?.n === 0) return;
      if (Date.now() > deadline) {
        const jobs = await t.ctx.db.query(
          `select type, status, attempts, run_at, last_error, payload from jobs
           where tenant_id = any($1::uuid[]) and status in ('queued', 'running')`,
          [tenantIds],
        );
        expect.fail(`jobs still busy after ${timeoutMs} ms: ${JSON.stringify(jobs)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it("concurrent mixed mutations: one row per success (by request id), none per refusal, each chain intact", {
    timeout: 900_000,
  }, async () => {
    const a = await tenant("Tenant A");
    const b = await tenant("Tenant B");
    // B may keep few documents (knowledge items count too): its later submissions are 429s.
    const total = TOTAL[backend.name];
    const cap = Math.round(total / 40);
    const o = await call(bearer(admin), "PUT", `/api/admin/customers/${b.s.tenantId}/quotas`, {
      overrides: { documents: cap },
    });
    expect(o.statusCode, o.body).toBe(200);
    const other = (x: Tenant) => (x === a ? b : a);

    const random = prng(20261202);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const unique = () => randomBytes(6).toString("hex");
    const sent: Sent[] = [];
    let issued = 0;

    /** Sends one request (counted against the total) and notes what it should have written. */
    async function send(
      x: Tenant,
      kind: string,
      auth: Record<string, string>,
      method: Method,
      url: string,
      payload: unknown,
      outcomes: Record<number, string | null>,
    ): Promise<CalledResponse> {
      issued++;
      const res = await call(auth, method, url, payload);
      // Every answer is one this request may get; a 5xx would be a bug whatever the rows say.
      expect(Object.keys(outcomes).map(Number), `${kind} ${url}: ${res.body}`).toContain(
        res.statusCode,
      );
      if (res.statusCode >= 400) expect(typeof res.json().error?.code, res.body).toBe("string");
      sent.push({
        tenant: x,
        kind,
        requestId: res.requestId,
        status: res.statusCode,
        eventType: outcomes[res.statusCode] ?? undefined,
      });
      return res;
    }

    /** B's documents quota refuses with 429; any tenant's hard limit of documents with 422. */
    const capped = (x: Tenant, ok: number, eventType: string) =>
      x === b ? { [ok]: eventType, 429: null, 422: null } : { [ok]: eventType, 422: null };
    const owner = (x: Tenant) => bearer(x.s.token);
    const adminOf = (x: Tenant) => pick([owner(x), { "x-api-key": x.adminKey }]);

    /** One operation: one to three requests of one kind, the later ones on what the first made. */
    async function operation(): Promise<void> {
      const x = random() < 0.5 ? a : b;
      const r = random();
      if (r < 0.15) {
        await send(
          x,
          "document.submit",
          pick([owner(x), { "x-api-key": x.docKey }, bearer(x.adminKey)]),
          "POST",
          "/api/ingest/document",
          { title: `Doc ${unique()}`, content: `Document ${unique()} of the load test.` },
          capped(x, 202, "document.create"),
        );
      } else if (r < 0.3) {
        const who = adminOf(x);
        const created = await send(
          x,
          "knowledge.create",
          who,
          "POST",
          FAQS,
          { question: `Question ${unique()}?`, answer: `Answer ${unique()}.` },
          capped(x, 202, "knowledge_item.create"),
        );
        if (created.statusCode !== 202 || random() < 0.3) return;
        const id = created.json().id;
        await send(
          x,
          "knowledge.update",
          who,
          "PUT",
          `${FAQS}/${id}`,
          { question: `Question ${unique()}?`, answer: `Answer ${unique()}.` },
          capped(x, 202, "knowledge_item.update"),
        );
        if (random() < 0.3) return;
        await send(x, "knowledge.delete", who, "DELETE", `${FAQS}/${id}`, undefined, {
          204: "knowledge_item.delete",
        });
      } else if (r < 0.45) {
        // A value no other put sends: every put is a change (a repeat would write no row).
        await send(
          x,
          "alert_settings.put",
          adminOf(x),
          "PUT",
          "/api/alerts/settings",
          { costUsdMonthly: issued + random() },
          { 200: "alert_settings.update" },
        );
      } else if (r < 0.57) {
        const who = adminOf(x);
        const created = await send(
          x,
          "api_key.create",
          who,
          "POST",
          "/api/customers/api-keys",
          { name: `key ${unique()}`, scopes: [pick(["read", "ingest", "chat"])] },
          // At most 20 active keys: concurrent creations may meet the limit.
          { 201: "api_key.create", 409: null },
        );
        if (created.statusCode !== 201) return;
        await send(
          x,
          "api_key.revoke",
          who,
          "DELETE",
          `/api/customers/api-keys/${created.json().key.id}`,
          undefined,
          { 204: "api_key.revoke" },
        );
      } else if (r < 0.7) {
        // 400: bodies the routes refuse.
        const [method, url, payload] = pick([
          ["POST", "/api/ingest/document", { title: "", content: "x" }],
          ["POST", FAQS, { question: "No answer?" }],
          ["PUT", "/api/alerts/settings", { errorRate: { threshold: 2 } }],
          ["POST", "/api/customers/api-keys", { name: "x", scopes: ["nope"] }],
        ] as const);
        await send(x, "refused.400", adminOf(x), method, url, payload, { 400: null });
      } else if (r < 0.85) {
        // 404: the other tenant's ids, with this tenant's full rights.
        const y = other(x);
        const [method, url, payload] = pick([
          ["PUT", `${FAQS}/${y.itemId}`, { question: "Mine?", answer: `Now ${unique()}.` }],
          ["DELETE", `${FAQS}/${y.itemId}`, undefined],
          ["DELETE", `/api/customers/api-keys/${y.adminKeyId}`, undefined],
          ["DELETE", `/api/documents/${y.documentId}`, undefined],
          ["DELETE", `/api/documents/${randomUUID()}`, undefined],
        ] as const);
        await send(x, "refused.404", adminOf(x), method, url, payload, { 404: null });
      } else {
        // 403: the lowest role, or a key without the scope.
        const [auth, method, url, payload] = pick([
          [bearer(x.member), "POST", FAQS, { question: "Member?", answer: "No." }],
          [bearer(x.member), "PUT", "/api/alerts/settings", { costUsdMonthly: 1 }],
          [bearer(x.member), "POST", "/api/customers/api-keys", { name: "m", scopes: ["read"] }],
          [bearer(x.member), "DELETE", `${FAQS}/${x.itemId}`, undefined],
          [{ "x-api-key": x.docKey }, "PUT", "/api/alerts/settings", { costUsdMonthly: 1 }],
          [
            { "x-api-key": x.docKey },
            "DELETE",
            `/api/customers/api-keys/${x.adminKeyId}`,
            undefined,
          ],
        ] as const);
        await send(x, "refused.403", auth, method, url, payload, { 403: null });
      }
    }

    // The setup's own jobs first: the rows before the load are the setup's, all written.
    await jobsSettled([a.s.tenantId, b.s.tenantId]);
    const before = new Map<string, number>();
    for (const x of [a, b])
      before.set(x.s.tenantId, (await auditChain(t.ctx.db, x.s.tenantId)).length);
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (issued < total) await operation();
      }),
    );
    expect(issued).toBeGreaterThanOrEqual(total);
    expect(sent).toHaveLength(issued);
    // Each kind ran, and each refusal happened.
    const kinds = new Set(sent.map((s) => `${s.kind}:${s.status}`));
    for (const k of [
      "document.submit:202",
      "document.submit:429",
      "knowledge.create:202",
      "knowledge.create:429",
      "knowledge.update:202",
      "knowledge.delete:204",
      "alert_settings.put:200",
      "api_key.create:201",
      "api_key.revoke:204",
      "refused.400:400",
      "refused.404:404",
      "refused.403:403",
    ]) {
      expect(kinds, k).toContain(k);
    }
    for (const x of [a, b]) {
      expect(sent.filter((s) => s.tenant === x && s.eventType).length).toBeGreaterThan(0);
    }

    // The ingestion jobs write their own rows (document.activate, by the system): let them end.
    await jobsSettled([a.s.tenantId, b.s.tenantId]);

    for (const x of [a, b]) {
      const rows = await auditChain(t.ctx.db, x.s.tenantId);
      expectIntactChain(rows);
      const res = await t.app.inject({ url: "/api/audit/verify", headers: owner(x) });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ ok: true, checked: rows.length, reason: null });
      const head = await t.ctx.db.query<{ seq: number; hash: string }>(
        "select seq, hash from audit_chains where chain_id = $1",
        [x.s.tenantId],
      );
      expect(head).toEqual([{ seq: rows.length, hash: rows.at(-1)?.hash }]);

      const load = rows.slice(before.get(x.s.tenantId));
      const byRequest = new Map<string, StoredAuditRow[]>();
      for (const r of load) {
        if (r.request_id === null) continue;
        const list = byRequest.get(r.request_id) ?? [];
        list.push(r);
        byRequest.set(r.request_id, list);
      }
      const mine = sent.filter((s) => s.tenant === x);
      for (const s of mine) {
        // A key's first use from an address is noted once, under the request that used it.
        const own = (byRequest.get(s.requestId) ?? []).filter(
          (r) => r.event_type !== "api_key.new_ip",
        );
        expect(
          own.map((r) => r.event_type),
          `${s.kind} ${s.status} ${s.requestId}`,
        ).toEqual(s.eventType ? [s.eventType] : []);
        if (s.eventType)
          expect(own[0]).toMatchObject({ result: "success", tenant_id: x.s.tenantId });
      }
      // Every row of the load is explained: a request's, a key's new address, or a job's.
      const requestIds = new Set(mine.map((s) => s.requestId));
      const succeeded = new Set(mine.filter((s) => s.eventType).map((s) => s.requestId));
      const newIp = load.filter((r) => r.event_type === "api_key.new_ip");
      // The signup's key and the admin key, first used by the load, once each (from this one
      // address); the keys the load created were revoked unused.
      expect(newIp.map((r) => r.actor_id).sort()).toEqual(
        [x.adminKeyId, await keyIdOf(x.s)].sort(),
      );
      for (const r of newIp) expect(requestIds).toContain(r.request_id);
      const system = load.filter((r) => r.actor_type === "system");
      for (const r of load) {
        if (r.actor_type === "system" || r.event_type === "api_key.new_ip") continue;
        expect(succeeded, `${r.event_type} ${r.request_id}`).toContain(r.request_id);
      }
      // The jobs' rows: each activates a document a successful request of the load made, by
      // the system, caused by that request (the setup's jobs were done before the load).
      for (const r of system) {
        expect(r.event_type).toBe("document.activate");
        expect(r.request_id).toBeNull();
        expect(succeeded).toContain(r.caused_by?.requestId);
      }
      const activated = new Map<string, number>();
      for (const r of system) {
        const cause = r.caused_by?.requestId ?? "";
        activated.set(cause, (activated.get(cause) ?? 0) + 1);
      }
      // Each text document of the load: one activation, caused by its submission.
      const submitted = mine.filter((s) => s.kind === "document.submit" && s.eventType);
      for (const s of submitted) expect(activated.get(s.requestId), s.requestId).toBe(1);
    }
  });
});
