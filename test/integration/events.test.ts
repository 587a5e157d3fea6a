import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEventsLog, type EventView, jobEventId } from "../../src/modules/events/index.js";
import { createMetrics } from "../../src/platform/metrics/index.js";
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
import { userContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";
import { settle } from "../fixtures/ingest.js";

/** Every event of the caller's feed (all pages), optionally of one name. */
async function feedOf(
  t: TestApp,
  headers: Record<string, string>,
  query: Record<string, string> = {},
  url = "/api/events",
): Promise<EventView[]> {
  const items: EventView[] = [];
  let cursor: string | undefined;
  for (;;) {
    const qs = new URLSearchParams({ limit: "200", ...query, ...(cursor ? { cursor } : {}) });
    const res = await t.app.inject({ url: `${url}?${qs}`, headers });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    items.push(...body.items);
    if (!body.nextCursor) return items;
    cursor = body.nextCursor;
  }
}

const ofDocument = (items: EventView[], documentId: string) =>
  items.filter((e) => e.data.documentId === documentId);

describe.each(backends)("events feed ($name)", (backend) => {
  let t: TestApp;
  let site: Server;
  let siteUrl: string;
  /** Answers of the test site per path: a list of statuses, used in turn (the last repeats). */
  const answers = new Map<string, number[]>();

  beforeAll(async () => {
    site = createServer((req, res) => {
      const list = answers.get(req.url ?? "") ?? [404];
      const status = list.length > 1 ? (list.shift() as number) : (list[0] as number);
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(status === 200 ? `Page ${req.url}: opening hours are nine to five.` : "no");
    });
    await new Promise<void>((r) => site.listen(0, "127.0.0.1", r));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    t = await startApp(
      backend,
      { ALLOW_PRIVATE_URLS: "true", JOB_BACKOFF_MS: "20" },
      { workers: true },
    );
  });
  afterAll(async () => {
    await t.close();
    await new Promise((r) => site.close(r));
  });

  const owner = (s: SignedUp) => bearer(s.token);
  const ingest = async (s: SignedUp, payload: Record<string, unknown>) => {
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: owner(s),
      payload,
    });
    expect(res.statusCode, res.body).toBe(202);
    return res.json() as { documentId: string; status: string; version: number };
  };

  it("an ingested document's events are in the tenant's feed, in order, with who asked", async () => {
    const a = await signup(t.app);
    const doc = await ingest(a, { title: "Hours", content: "We open at nine." });
    await settle(t.app, a.token, doc.documentId);
    const events = ofDocument(await feedOf(t, owner(a)), doc.documentId);
    // The submission's two events commit together, then the job's two (same instant each).
    expect(events.map((e) => e.name).sort()).toEqual([
      "document_activated",
      "document_created",
      "ingest_completed",
      "ingest_started",
    ]);
    const at = (name: string) => events.find((e) => e.name === name)?.createdAt as string;
    expect(at("ingest_started") <= at("ingest_completed")).toBe(true);
    expect(at("document_created")).toBe(at("ingest_started"));
    expect(at("document_activated")).toBe(at("ingest_completed"));
    const started = events.find((e) => e.name === "ingest_started");
    expect(started?.data).toEqual({
      sourceType: "text",
      url: null,
      documentId: doc.documentId,
      version: 1,
    });
    const completed = events.find((e) => e.name === "ingest_completed");
    expect(completed?.data).toMatchObject({ sourceType: "text", docs: 1, version: 1 });
    expect(completed?.data.chunks).toBeGreaterThanOrEqual(1);
    // The job acted for the owner's request: the owner is the event's user either way.
    for (const e of events) {
      expect(e.userId).toBe(a.userId);
      expect(e.tenantId).toBe(a.tenantId);
    }
    // The name filter, and deletion's event.
    const del = await t.app.inject({
      method: "DELETE",
      url: `/api/documents/${doc.documentId}`,
      headers: owner(a),
    });
    expect(del.statusCode, del.body).toBeLessThan(300);
    const deleted = await feedOf(t, owner(a), { name: "document_deleted" });
    expect(deleted.map((e) => e.data)).toEqual([{ documentId: doc.documentId }]);
  });

  it("knowledge items record their lifecycle; their documents record ingestion only", async () => {
    const a = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/knowledge/faqs",
      headers: owner(a),
      payload: { question: "Vegan?", answer: "Yes." },
    });
    expect(res.statusCode, res.body).toBe(202);
    const item = res.json() as { id: string };
    const upd = await t.app.inject({
      method: "PUT",
      url: `/api/knowledge/faqs/${item.id}`,
      headers: owner(a),
      payload: { question: "Vegan?", answer: "Yes, ask for the seasonal plate." },
    });
    expect(upd.statusCode, upd.body).toBeLessThan(300);
    const gone = await t.app.inject({
      method: "DELETE",
      url: `/api/knowledge/faqs/${item.id}`,
      headers: owner(a),
    });
    expect(gone.statusCode, gone.body).toBeLessThan(300);
    const feed = await feedOf(t, owner(a));
    const lifecycle = feed.filter((e) => e.data.itemId === item.id).map((e) => e.name);
    expect(lifecycle.reverse()).toEqual([
      "knowledge_item_created",
      "knowledge_item_updated",
      "knowledge_item_deleted",
    ]);
    const started = feed.filter((e) => e.name === "ingest_started");
    expect(started.length).toBe(2);
    for (const e of started) expect(e.data.sourceType).toBe("knowledge");
    expect(feed.filter((e) => e.name === "document_created")).toEqual([]);
  });

  it("a rolled-back write leaves no event, and nothing of the events it wrote", async () => {
    const a = await signup(t.app);
    const ctx = userContext(a.tenantId, a.userId);
    await expect(
      t.ctx.db.transaction(async (tx) => {
        await t.ctx.knowledge.create(
          ctx,
          { type: "faq", fields: { question: "Rolled back?", answer: "Yes." } },
          { tx },
        );
        throw new Error("the caller's own write failed");
      }),
    ).rejects.toThrow("the caller's own write failed");
    expect(await feedOf(t, owner(a))).toEqual([]);
    // The same write, committed, is there: the test above could have seen it.
    await t.ctx.db.transaction((tx) =>
      t.ctx.knowledge.create(
        ctx,
        { type: "faq", fields: { question: "Kept?", answer: "Yes." } },
        { tx },
      ),
    );
    const names = (await feedOf(t, owner(a))).map((e) => e.name).sort();
    expect(names).toEqual(["ingest_started", "knowledge_item_created"]);
  });

  it("an event's deterministic id writes it once, however often the job runs", async () => {
    const a = await signup(t.app);
    const ctx = userContext(a.tenantId, a.userId);
    const jobId = randomUUID();
    const documentId = randomUUID();
    const write = () =>
      t.ctx.db.transaction((tx) =>
        t.ctx.events.log(
          ctx,
          "document_activated",
          { documentId, version: 1, chunks: 3 },
          { tx, id: jobEventId(jobId, "document_activated") },
        ),
      );
    const first = await write();
    const again = await Promise.all([write(), write()]);
    expect(first.written).toBe(true);
    expect(again.map((r) => r.written)).toEqual([false, false]);
    expect(again.map((r) => r.id)).toEqual([first.id, first.id]);
    expect(ofDocument(await feedOf(t, owner(a)), documentId)).toHaveLength(1);
  });

  it("a job retried after failures emits ingest_completed once and no ingest_failed", async () => {
    const a = await signup(t.app);
    const path = `/flaky-${randomBytes(4).toString("hex")}`;
    answers.set(path, [503, 503, 200]);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/url",
      headers: owner(a),
      payload: { url: `${siteUrl}${path}`, title: "Flaky page" },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { documentId } = res.json();
    const status = await settle(t.app, a.token, documentId);
    expect(status.status).toBe("completed");
    expect(status.job?.attempts).toBe(3);
    const events = ofDocument(await feedOf(t, owner(a)), documentId);
    const count = (name: string) => events.filter((e) => e.name === name).length;
    expect(count("ingest_started")).toBe(1);
    expect(count("ingest_completed")).toBe(1);
    expect(count("ingest_failed")).toBe(0);
    expect(events.find((e) => e.name === "ingest_completed")?.data).toMatchObject({
      sourceType: "url",
      url: `${siteUrl}${path}`,
    });
  });

  it("a job that fails for good emits one ingest_failed with its error code", async () => {
    const a = await signup(t.app);
    const path = `/gone-${randomBytes(4).toString("hex")}`;
    answers.set(path, [404]);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/url",
      headers: owner(a),
      payload: { url: `${siteUrl}${path}`, title: "Missing page" },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { documentId } = res.json();
    expect((await settle(t.app, a.token, documentId)).status).toBe("failed");
    const failed = ofDocument(await feedOf(t, owner(a), { name: "ingest_failed" }), documentId);
    expect(failed.map((e) => e.data)).toEqual([
      {
        sourceType: "url",
        url: `${siteUrl}${path}`,
        errorCode: "ingestion.url_http_error",
        documentId,
        version: 1,
        attempts: 1,
      },
    ]);
  });

  it("concurrent submissions each give exactly one ingest_started", async () => {
    const a = await signup(t.app);
    const distinct = await Promise.all(
      Array.from({ length: 8 }, (_, i) => ingest(a, { title: `Doc ${i}`, content: `Text ${i}.` })),
    );
    // The same document eight times at once: one version, the others its duplicates.
    const same = await Promise.all(
      Array.from({ length: 8 }, () =>
        ingest(a, { title: "Same", content: "Same text.", externalId: "same-1" }),
      ),
    );
    const started = await feedOf(t, owner(a), { name: "ingest_started" });
    const perDoc = new Map<string, number>();
    for (const e of started)
      perDoc.set(String(e.data.documentId), (perDoc.get(String(e.data.documentId)) ?? 0) + 1);
    for (const d of distinct) expect(perDoc.get(d.documentId)).toBe(1);
    const sameId = same[0]?.documentId as string;
    expect(new Set(same.map((s) => s.documentId))).toEqual(new Set([sameId]));
    expect(same.filter((s) => s.status === "processing")).toHaveLength(1);
    expect(perDoc.get(sameId)).toBe(1);
    expect(started).toHaveLength(9);
  });

  it("quota refusals are recorded although the refused work rolls back", async () => {
    const a = await signup(t.app);
    const admin = await platformAdminToken(t);
    const set = await t.app.inject({
      method: "PUT",
      url: `/api/admin/customers/${a.tenantId}/quotas`,
      headers: bearer(admin),
      payload: { overrides: { documents: 1, searches: 1 } },
    });
    expect(set.statusCode, set.body).toBe(200);
    await ingest(a, { title: "One", content: "The only one." });
    const second = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: owner(a),
      payload: { title: "Two", content: "One too many." },
    });
    expectError(second, 429, "quota.exceeded");
    const search = () =>
      t.app.inject({
        method: "POST",
        url: "/api/search",
        headers: owner(a),
        payload: { query: "only", mode: "text" },
      });
    expect((await search()).statusCode).toBe(200);
    expectError(await search(), 429, "quota.exceeded");
    await t.ctx.events.drain();
    const refused = await feedOf(t, owner(a), { name: "quota_exceeded" });
    expect(
      refused
        .map((e) => e.data)
        .sort((x, y) => String(x.quotaType).localeCompare(String(y.quotaType))),
    ).toEqual([
      { quotaType: "documents", limit: 1, attempted: 1, used: 1 },
      expect.objectContaining({ quotaType: "searches", limit: 1, attempted: 1, used: 1 }),
    ]);
    // The refused document left no event of its own.
    expect(await feedOf(t, owner(a), { name: "document_created" })).toHaveLength(1);
  });

  it("refuses oversized data in development, and truncates it (counted) in production", async () => {
    const a = await signup(t.app);
    const ctx = userContext(a.tenantId, a.userId);
    const data = {
      workflowId: "w1",
      runId: "r1",
      errorCode: "step_failed",
      details: { log: "x".repeat(4000) },
    };
    await expect(
      t.ctx.db.transaction((tx) => t.ctx.events.log(ctx, "workflow_failed", data, { tx })),
    ).rejects.toMatchObject({ code: "events.payload_too_large" });
    expect(await feedOf(t, owner(a))).toEqual([]);

    const metrics = createMetrics();
    const production = createEventsLog({
      db: t.ctx.db,
      clock: t.ctx.clock,
      logger: pino({ level: "silent" }),
      metrics,
      oversize: "truncate",
      messageSentSampleRate: 1,
    });
    await t.ctx.db.transaction((tx) => production.log(ctx, "workflow_failed", data, { tx }));
    const [stored] = await feedOf(t, owner(a));
    expect(stored?.data).toMatchObject({ workflowId: "w1", runId: "r1", errorCode: "step_failed" });
    expect(stored?.data._truncated).toBeGreaterThan(4000);
    expect(stored?.data).not.toHaveProperty("details");
    const counted = await metrics.registry.getSingleMetricAsString(
      "tenantrag_events_truncated_total",
    );
    expect(counted).toContain('tenantrag_events_truncated_total{name="workflow_failed"} 1');
  });

  it("samples message_sent by message id, so a retried write decides the same", async () => {
    const a = await signup(t.app);
    const ctx = userContext(a.tenantId, a.userId);
    const sampledLog = createEventsLog({
      db: t.ctx.db,
      clock: t.ctx.clock,
      logger: pino({ level: "silent" }),
      oversize: "refuse",
      messageSentSampleRate: 0.25,
    });
    const ids = Array.from({ length: 200 }, (_, i) => `m-${i}`);
    const send = (messageId: string) =>
      t.ctx.db.transaction((tx) =>
        sampledLog.log(
          ctx,
          "message_sent",
          { conversationId: "c1", messageId, role: "user" },
          { tx, id: jobEventId(messageId, "message_sent") },
        ),
      );
    const first = await Promise.all(ids.map(send));
    const second = await Promise.all(ids.map(send));
    const kept = first.filter((r) => r.id !== null).length;
    expect(kept).toBeGreaterThan(20);
    expect(kept).toBeLessThan(80);
    expect(second.map((r) => r.id)).toEqual(first.map((r) => r.id));
    expect(await feedOf(t, owner(a), { name: "message_sent" })).toHaveLength(kept);
  });

  it("never shows a tenant another's events, nor lets it name another tenant", async () => {
    const a = await signup(t.app);
    const b = await signup(t.app);
    const doc = await ingest(a, { title: "A only", content: "A's secret menu." });
    await settle(t.app, a.token, doc.documentId);
    const bFeed = await feedOf(t, owner(b));
    expect(JSON.stringify(bFeed)).not.toContain(doc.documentId);
    expect(JSON.stringify(bFeed)).not.toContain(a.tenantId);
    const bKey = await apiKeyWithScopes(t.app, b, ["admin"]);
    const viaKey = await feedOf(t, { "x-api-key": bKey });
    expect(JSON.stringify(viaKey)).not.toContain(doc.documentId);
    expectError(
      await t.app.inject({ url: `/api/events?tenantId=${a.tenantId}`, headers: owner(b) }),
      400,
      "validation.failed",
    );
    const aFeed = await feedOf(t, owner(a));
    expect(ofDocument(aFeed, doc.documentId).length).toBe(4);
  });

  it("answers bad filters with 400 validation.failed", async () => {
    const a = await signup(t.app);
    for (const qs of [
      "name=user_clicked",
      "from=yesterday",
      "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
      "cursor=not-a-cursor",
      "limit=0",
      "limit=1000",
      "tenantId=x",
      "color=blue",
    ]) {
      const res = await t.app.inject({ url: `/api/events?${qs}`, headers: owner(a) });
      expectError(res, 400, "validation.failed");
    }
    for (const url of [
      "/api/analytics/conversations?period=hour",
      "/api/analytics/conversations?buckets=0",
      "/api/analytics/escalation-rate?days=0",
      "/api/analytics/ingestion?days=401",
      "/api/analytics/quota-friction?days=abc",
      "/api/analytics/plan-funnel?from=now",
    ]) {
      expectError(await t.app.inject({ url, headers: owner(a) }), 400, "validation.failed");
    }
  });

  it("pages the feed with cursors and filters it by time", async () => {
    const a = await signup(t.app);
    const ctx = userContext(a.tenantId, a.userId);
    for (let i = 0; i < 5; i++) {
      await t.ctx.db.transaction((tx) =>
        t.ctx.events.log(ctx, "document_deleted", { documentId: randomUUID() }, { tx }),
      );
    }
    const first = await t.app.inject({ url: "/api/events?limit=2", headers: owner(a) });
    const body = first.json();
    expect(body.items).toHaveLength(2);
    expect(body.nextCursor).toEqual(expect.any(String));
    const all = await feedOf(t, owner(a), { limit: "2" });
    expect(all).toHaveLength(5);
    expect(new Set(all.map((e) => e.id)).size).toBe(5);
    const times = all.map((e) => e.createdAt);
    expect([...times].sort().reverse()).toEqual(times);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect(await feedOf(t, owner(a), { from: future })).toEqual([]);
    expect(await feedOf(t, owner(a), { to: future })).toHaveLength(5);
  });

  it("lets platform admins read one tenant's events or every tenant's; no one else", async () => {
    const a = await signup(t.app);
    const b = await signup(t.app);
    const since = new Date(Date.now() - 1000).toISOString();
    const da = await ingest(a, { title: "A", content: "Alpha." });
    const db = await ingest(b, { title: "B", content: "Beta." });
    const admin = bearer(await platformAdminToken(t));
    const onlyA = await feedOf(t, admin, { tenantId: a.tenantId }, "/api/admin/events");
    expect(onlyA.length).toBeGreaterThan(0);
    expect(new Set(onlyA.map((e) => e.tenantId))).toEqual(new Set([a.tenantId]));
    const every = await feedOf(
      t,
      admin,
      { name: "ingest_started", from: since },
      "/api/admin/events",
    );
    const docs = every.map((e) => e.data.documentId);
    expect(docs).toEqual(expect.arrayContaining([da.documentId, db.documentId]));
    const funnel = await t.app.inject({
      url: `/api/admin/analytics/ingestion?tenantId=${b.tenantId}`,
      headers: admin,
    });
    expect(funnel.statusCode, funnel.body).toBe(200);
    expect(funnel.json().started).toBe(1);
    // A tenant's owner is not a platform admin.
    expectError(
      await t.app.inject({ url: "/api/admin/events", headers: owner(a) }),
      403,
      "auth.platform_admin_required",
    );
  });

  it("the feed is for owners, admins and admin keys; analytics for read keys too; members neither", async () => {
    const a = await signup(t.app);
    const email = uniqueEmail("member");
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const made = await t.app.inject({
      method: "POST",
      url: "/api/customers/users",
      headers: owner(a),
      payload: { email, password, role: "member" },
    });
    expect(made.statusCode, made.body).toBe(201);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password },
    });
    const member = bearer(login.json().token);
    const routes = ["/api/events", "/api/analytics/ingestion", "/api/analytics/plan-funnel"];
    for (const url of routes) {
      expectError(await t.app.inject({ url, headers: member }), 403, "auth.forbidden");
      expect((await t.app.inject({ url, headers: owner(a) })).statusCode).toBe(200);
    }
    const readKey = { "x-api-key": await apiKeyWithScopes(t.app, a, ["read"]) };
    expectError(
      await t.app.inject({ url: "/api/events", headers: readKey }),
      403,
      "auth.scope_required",
    );
    expect(
      (await t.app.inject({ url: "/api/analytics/ingestion", headers: readKey })).statusCode,
    ).toBe(200);
  });

  it("no route creates an event", () => {
    const writes = t.app.routeTable.filter(
      (r) =>
        /\/(events|analytics)(\/|$)/.test(r.url) &&
        [r.method].flat().some((m) => !["GET", "HEAD", "OPTIONS"].includes(m)),
    );
    expect(writes.map((r) => `${r.method} ${r.url}`)).toEqual([]);
  });
});
