import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIL_UUID } from "../../src/modules/audit/index.js";
import type { Db } from "../../src/platform/db/index.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import {
  auditCaller,
  auditChain,
  expectIntactChain,
  type StoredAuditRow,
} from "../fixtures/audit.js";
import { type S3Server, startS3Server } from "../fixtures/blobs.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { backends, type TestBackend } from "../fixtures/db.js";
import { faultyDb } from "../fixtures/faulty-db.js";
import { presignedUpload, settle, uploadFile } from "../fixtures/ingest.js";
import { FAQS, POLICIES } from "../fixtures/knowledge.js";

type AuditRow = StoredAuditRow;

const rand = () => randomBytes(5).toString("hex");
const UA = "audit-content-test/1.0";

const chain = auditChain;

/**
 * A tenant's chain without the rows its signup and its API key's first use from an address
 * write (tenant.create, api_key.new_ip): the content and billing changes this file is about.
 */
async function changes(db: Db, chainId: string): Promise<AuditRow[]> {
  return (await chain(db, chainId)).filter(
    (r) => r.event_type !== "tenant.create" && r.event_type !== "api_key.new_ip",
  );
}

/** The rows of one chain about one entity, oldest first. */
async function rowsOf(db: Db, chainId: string, entityId: string): Promise<AuditRow[]> {
  return (await chain(db, chainId)).filter((r) => r.entity_id === entityId);
}

const caller = (t: () => TestApp) => auditCaller(t, UA);

/** The id of the signup's own API key. */
async function keyIdOf(t: TestApp, s: SignedUp): Promise<string> {
  const res = await t.app.inject({ url: "/api/customers/api-keys", headers: bearer(s.token) });
  const key = res
    .json()
    .items.find((k: { prefix: string; id: string }) => s.apiKey.startsWith(k.prefix));
  return key.id;
}

describe.each(backends)("audit rows of content and billing ($name)", (backend) => {
  let t: TestApp;
  let admin: string;
  const call = caller(() => t);
  const user = (s: SignedUp) => bearer(s.token);
  const asAdmin = () => bearer(admin);

  beforeAll(async () => {
    t = await startApp(
      backend,
      { JOB_BACKOFF_MS: "20", ALLOW_PRIVATE_URLS: "true" },
      { workers: true },
    );
    admin = await platformAdminToken(t);
  });
  afterAll(() => t?.close());

  /** Asserts the request's one row: who, from where, which request. */
  function expectRequestRow(
    row: AuditRow | undefined,
    want: {
      eventType: string;
      entityType: string;
      entityId: string;
      action: string;
      actor: [string, string];
      requestId: string;
    },
  ) {
    expect(row).toMatchObject({
      event_type: want.eventType,
      entity_type: want.entityType,
      entity_id: want.entityId,
      action: want.action,
      actor_type: want.actor[0],
      actor_id: want.actor[1],
      result: "success",
      request_id: want.requestId,
      ip_address: "127.0.0.1",
      user_agent: UA,
    });
  }

  it("a text document: one document.create row for the user's request, the content as hash and size; the job's activation as the system for that request", async () => {
    const s = await signup(t.app);
    const content = "The kitchen closes at ten on weekdays.";
    const res = await call(user(s), "POST", "/api/ingest/document", {
      title: "Hours",
      content,
      metadata: { team: "kitchen" },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { documentId } = res.json();
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");

    const rows = await rowsOf(t.ctx.db, s.tenantId, documentId);
    expect(rows.map((r) => r.event_type)).toEqual(["document.create", "document.activate"]);
    const [created, activated] = rows;
    expectRequestRow(created, {
      eventType: "document.create",
      entityType: "document",
      entityId: documentId,
      action: "create",
      actor: ["user", s.userId],
      requestId: res.requestId,
    });
    expect(created?.tenant_id).toBe(s.tenantId);
    expect(created?.new_values).toMatchObject({
      title: "Hours",
      docType: "txt",
      metadata: { team: "kitchen" },
      version: 1,
      contentHash: expect.stringMatching(/^[0-9a-f]{64}$/),
      sizeBytes: Buffer.byteLength(content),
      source: "text",
    });
    expect(JSON.stringify(created)).not.toContain("kitchen closes");

    expect(activated).toMatchObject({
      action: "update",
      actor_type: "system",
      request_id: null,
      ip_address: null,
      caused_by: { actor: { kind: "user", userId: s.userId }, requestId: res.requestId },
      old_values: { activeVersion: null },
      new_values: { activeVersion: 1, contentHash: created?.new_values?.contentHash },
    });
    expect(activated?.actor_id).toMatch(/^ingest\.process:/);
  });

  it("an API key's batch: one row per accepted document (refused items none), as the key", async () => {
    const s = await signup(t.app);
    const keyId = await keyIdOf(t, s);
    const res = await call({ "x-api-key": s.apiKey }, "POST", "/api/ingest/batch", {
      documents: [
        { title: "One", content: "First of the batch." },
        { title: "", content: "an invalid item" },
        { title: "Two", content: "Second of the batch." },
      ],
    });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toMatchObject({ accepted: 2, rejected: 1 });
    const ids = res
      .json()
      .results.filter((r: { ok: boolean }) => r.ok)
      .map((r: { result: { documentId: string } }) => r.result.documentId);
    const rows = (await chain(t.ctx.db, s.tenantId)).filter(
      (r) => r.event_type === "document.create",
    );
    // The items are submitted side by side: their rows are in the order they committed.
    expect(rows.map((r) => r.entity_id).sort()).toEqual([...ids].sort());
    for (const row of rows) {
      expectRequestRow(row, {
        eventType: "document.create",
        entityType: "document",
        entityId: row.entity_id as string,
        action: "create",
        actor: ["api_key", keyId],
        requestId: res.requestId,
      });
      expect(row.new_values).toMatchObject({ source: "batch" });
    }
  });

  it("a URL and a file: one row each, with their source; an unchanged re-submission none", async () => {
    const s = await signup(t.app);
    const url = `http://127.0.0.1:9/page-${rand()}`;
    const byUrl = await call(user(s), "POST", "/api/ingest/url", { url, title: "A page" });
    expect(byUrl.statusCode, byUrl.body).toBe(202);
    const file = await uploadFile(
      t.app,
      s.token,
      { name: "notes.md", type: "text/markdown", body: Buffer.from("# Notes\n\nTerrace open.") },
      { title: "Notes" },
    );
    expect(file.statusCode, file.body).toBe(202);
    const again = await uploadFile(
      t.app,
      s.token,
      { name: "notes.md", type: "text/markdown", body: Buffer.from("# Notes\n\nTerrace open.") },
      { title: "Notes" },
    );
    expect(again.json().status).toBe("duplicate");
    const rows = (await chain(t.ctx.db, s.tenantId)).filter(
      (r) => r.event_type === "document.create",
    );
    expect(rows.map((r) => [r.entity_id, r.new_values?.source])).toEqual([
      [byUrl.json().documentId, "url"],
      [file.json().documentId, "file"],
    ]);
    expect(rows[0]?.new_values).toMatchObject({
      sourceUrl: url,
      contentHash: null,
      sizeBytes: null,
    });
    expectRequestRow(rows[0], {
      eventType: "document.create",
      entityType: "document",
      entityId: byUrl.json().documentId,
      action: "create",
      actor: ["user", s.userId],
      requestId: byUrl.requestId,
    });
  });

  it("new content for a document: document.update with the fields that changed; delete: document.delete", async () => {
    const s = await signup(t.app);
    const made = await call(user(s), "POST", "/api/ingest/document", {
      title: "Menu",
      content: "Soup of the day.",
      metadata: { a: "1", b: "2" },
    });
    const id = made.json().documentId;
    await settle(t.app, s.token, id);
    const put = await call(user(s), "PUT", `/api/documents/${id}`, {
      title: "Lunch menu",
      content: "Soup and bread.",
      metadata: { a: "1", b: "3", c: "4" },
    });
    expect(put.statusCode, put.body).toBe(202);
    // The same content again is a duplicate: nothing changed, nothing recorded.
    const dup = await call(user(s), "PUT", `/api/documents/${id}`, {
      title: "Lunch menu",
      content: "Soup and bread.",
      metadata: { a: "1", b: "3", c: "4" },
    });
    expect(dup.json().status).toBe("duplicate");
    await settle(t.app, s.token, id);
    const del = await call(user(s), "DELETE", `/api/documents/${id}`);
    expect(del.statusCode, del.body).toBe(204);

    const rows = await rowsOf(t.ctx.db, s.tenantId, id);
    expect(rows.map((r) => r.event_type)).toEqual([
      "document.create",
      "document.activate",
      "document.update",
      "document.activate",
      "document.delete",
    ]);
    const update = rows[2];
    expectRequestRow(update, {
      eventType: "document.update",
      entityType: "document",
      entityId: id,
      action: "update",
      actor: ["user", s.userId],
      requestId: put.requestId,
    });
    expect(update?.old_values).toMatchObject({
      title: "Menu",
      metadata: { b: "2", c: null },
      latestVersion: 1,
      activeVersion: 1,
    });
    expect(update?.new_values).toMatchObject({
      title: "Lunch menu",
      metadata: { b: "3", c: "4" },
      version: 2,
      sizeBytes: Buffer.byteLength("Soup and bread."),
      source: "content_update",
    });
    expect(update?.changes_summary).toContain("title");
    const deleted = rows[4];
    expectRequestRow(deleted, {
      eventType: "document.delete",
      entityType: "document",
      entityId: id,
      action: "delete",
      actor: ["user", s.userId],
      requestId: del.requestId,
    });
    expect(deleted?.old_values).toMatchObject({ title: "Lunch menu", activeVersion: 2 });
    expect(deleted?.new_values).toBeNull();
    expectIntactChain(await chain(t.ctx.db, s.tenantId));
  });

  it("knowledge items: create, update and delete rows with the body as its hash; an unchanged update none; the item's document none of its own", async () => {
    const s = await signup(t.app);
    const answer = "We deliver within five kilometres of the restaurant.";
    const created = await call(user(s), "POST", FAQS, { question: "Delivery?", answer });
    expect(created.statusCode, created.body).toBe(202);
    const item = created.json();
    const same = await call(user(s), "PUT", `${FAQS}/${item.id}`, {
      question: "Delivery?",
      answer,
    });
    expect(same.json().ingest.status).toBe("duplicate");
    const updated = await call(user(s), "PUT", `${FAQS}/${item.id}`, {
      question: "Do you deliver?",
      answer,
      tags: ["delivery"],
    });
    expect(updated.statusCode, updated.body).toBe(202);
    const deleted = await call(user(s), "DELETE", `${FAQS}/${item.id}`);
    expect(deleted.statusCode, deleted.body).toBe(204);

    const rows = await rowsOf(t.ctx.db, s.tenantId, item.id);
    expect(rows.map((r) => r.event_type)).toEqual([
      "knowledge_item.create",
      "knowledge_item.update",
      "knowledge_item.delete",
    ]);
    const [c, u, d] = rows;
    const hashed = { sha256: expect.stringMatching(/^[0-9a-f]{64}$/), chars: answer.length };
    expectRequestRow(c, {
      eventType: "knowledge_item.create",
      entityType: "knowledge_item",
      entityId: item.id,
      action: "create",
      actor: ["user", s.userId],
      requestId: created.requestId,
    });
    expect(c?.new_values).toMatchObject({
      type: "faq",
      question: "Delivery?",
      answer: hashed,
      documentId: item.documentId,
      documentVersion: 1,
    });
    expect(u?.request_id).toBe(updated.requestId);
    expect(u?.old_values).toEqual({ type: "faq", question: "Delivery?", tags: null });
    expect(u?.new_values).toMatchObject({
      type: "faq",
      question: "Do you deliver?",
      tags: ["delivery"],
      documentVersion: 2,
    });
    expect(u?.new_values).not.toHaveProperty("answer");
    expect(d).toMatchObject({ action: "delete", request_id: deleted.requestId, new_values: null });
    expect(d?.old_values).toMatchObject({ question: "Do you deliver?", answer: hashed });
    expect(JSON.stringify(rows)).not.toContain("five kilometres");
    // The item's document is the item's index: its submissions are the item's rows.
    const docRows = await rowsOf(t.ctx.db, s.tenantId, item.documentId);
    expect(docRows.map((r) => r.event_type)).not.toContain("document.create");
    expect(docRows.map((r) => r.event_type)).not.toContain("document.delete");
  });

  it("refused changes leave no row: validation 400, a quota refusal, another tenant's document", async () => {
    const s = await signup(t.app);
    const other = await signup(t.app);
    expectError(
      await call(user(s), "POST", "/api/ingest/document", { title: "", content: "x" }),
      400,
      "validation.failed",
    );
    expectError(await call(user(s), "POST", FAQS, { question: "Q?" }), 400, "validation.failed");
    expectError(
      await call(user(s), "PUT", "/api/alerts/settings", { errorRate: { threshold: 2 } }),
      400,
      "validation.failed",
    );
    // The documents quota at 1 (a platform admin's override, recorded on the tenant's chain).
    const o = await call(asAdmin(), "PUT", `/api/admin/customers/${s.tenantId}/quotas`, {
      overrides: { documents: 1 },
    });
    expect(o.statusCode, o.body).toBe(200);
    const first = await call(user(s), "POST", "/api/ingest/document", {
      title: "One",
      content: "The only document this tenant may keep.",
    });
    expect(first.statusCode, first.body).toBe(202);
    expectError(
      await call(user(s), "POST", "/api/ingest/document", { title: "Two", content: "One more." }),
      429,
      "quota.exceeded",
    );
    expectError(
      await call(user(s), "POST", POLICIES, { title: "Returns", content: "Within 30 days." }),
      429,
      "quota.exceeded",
    );
    // Another tenant cannot delete it: 404, and no row on either chain.
    expectError(
      await call(user(other), "DELETE", `/api/documents/${first.json().documentId}`),
      404,
      "not_found",
    );
    // The one document's job may have activated it meanwhile: that row is the system's.
    const rows = (await changes(t.ctx.db, s.tenantId)).filter(
      (r) => r.event_type !== "document.activate",
    );
    expect(rows.map((r) => r.event_type)).toEqual(["quota_override.update", "document.create"]);
    expect((await chain(t.ctx.db, other.tenantId)).map((r) => r.event_type)).toEqual([
      "tenant.create",
    ]);
  });

  it("plans, prices and re-rating: platform admin rows on the platform's chain; overrides and re-rated costs on the tenant's", async () => {
    const s = await signup(t.app);
    const planId = "free";
    const before = (await call(asAdmin(), "GET", "/api/admin/plans")).json();
    const freeBefore = before.plans.find((p: { id: string }) => p.id === planId).quotas.searches;
    const next = (freeBefore ?? 1000) + 1;
    const plan = await call(asAdmin(), "PUT", `/api/admin/plans/${planId}`, {
      quotas: { searches: next },
    });
    expect(plan.statusCode, plan.body).toBe(200);
    expectError(
      await call(asAdmin(), "PUT", "/api/admin/plans/no-such-plan", { quotas: { searches: 1 } }),
      404,
      "plan.not_found",
    );
    const planRows = await rowsOf(t.ctx.db, NIL_UUID, planId);
    const planRow = planRows.at(-1);
    expect(planRow).toMatchObject({
      tenant_id: null,
      event_type: "plan.update",
      entity_type: "plan",
      action: "update",
      actor_type: "platform_admin",
      request_id: plan.requestId,
      user_agent: UA,
      old_values: { searches: freeBefore },
      new_values: { searches: next },
    });
    expect(planRow?.actor_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await rowsOf(t.ctx.db, NIL_UUID, "no-such-plan")).toEqual([]);

    const override = await call(asAdmin(), "PUT", `/api/admin/customers/${s.tenantId}/quotas`, {
      overrides: { searches: 5, chat_messages: null },
    });
    expect(override.statusCode, override.body).toBe(200);
    const [o] = (await rowsOf(t.ctx.db, s.tenantId, s.tenantId)).filter(
      (r) => r.event_type !== "tenant.create",
    );
    expect(o).toMatchObject({
      tenant_id: s.tenantId,
      event_type: "quota_override.update",
      entity_type: "quota_override",
      actor_type: "platform_admin",
      request_id: override.requestId,
      old_values: { overrides: {} },
      new_values: { overrides: { searches: 5, chat_messages: null } },
    });

    // A provider of this test's own, so that the re-rating touches only this tenant's events.
    const provider = `p-${rand()}`;
    const at = new Date(Date.now() - 3_600_000);
    const first = await call(asAdmin(), "POST", "/api/admin/prices", {
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.001",
      effectiveFrom: new Date(at.getTime() - 3_600_000).toISOString(),
    });
    expect(first.statusCode, first.body).toBe(201);
    expectError(
      await call(asAdmin(), "POST", "/api/admin/prices", {
        provider,
        model: "m",
        unit: "input_token",
        usdPerUnit: "0.002",
        effectiveFrom: new Date(at.getTime() - 3_600_000).toISOString(),
      }),
      409,
      "price.duplicate",
    );
    const [priceRow, ...more] = await rowsOf(t.ctx.db, NIL_UUID, first.json().id);
    expect(more).toEqual([]);
    expect(priceRow).toMatchObject({
      event_type: "price.create",
      entity_type: "price",
      action: "create",
      actor_type: "platform_admin",
      request_id: first.requestId,
      new_values: {
        provider,
        model: "m",
        unit: "input_token",
        usdPerUnit: expect.stringMatching(/^0\.0010*$/),
      },
    });

    await t.ctx.usage.record(apiKeyContext(s.tenantId), [
      {
        metric: "embedding_tokens",
        quantity: 1000,
        provider,
        model: "m",
        payer: "platform",
        subject: { type: "document_version", id: randomUUID() },
        occurredAt: at,
      },
    ]);
    await call(asAdmin(), "POST", "/api/admin/prices", {
      provider,
      model: "m",
      unit: "input_token",
      usdPerUnit: "0.003",
      effectiveFrom: new Date(at.getTime() - 60_000).toISOString(),
    });
    const rerate = await call(asAdmin(), "POST", "/api/admin/usage/rerate", {
      from: new Date(at.getTime() - 7_200_000).toISOString(),
      to: new Date(at.getTime() + 60_000).toISOString(),
      provider,
    });
    expect(rerate.statusCode, rerate.body).toBe(200);
    const runId = rerate.json().id;
    const [platformRun] = await rowsOf(t.ctx.db, NIL_UUID, runId);
    expect(platformRun).toMatchObject({
      event_type: "usage.rerate",
      entity_type: "rerate",
      action: "update",
      actor_type: "platform_admin",
      request_id: rerate.requestId,
      new_values: { provider, changed: 1, tenants: 1 },
    });
    const [tenantRun] = await rowsOf(t.ctx.db, s.tenantId, runId);
    expect(tenantRun).toMatchObject({
      tenant_id: s.tenantId,
      event_type: "usage.rerate",
      actor_type: "platform_admin",
      request_id: rerate.requestId,
      old_values: { costUsd: expect.stringMatching(/^1(\.0+)?$/) },
      new_values: { changed: 1, costUsd: expect.stringMatching(/^3(\.0+)?$/) },
    });
    expectIntactChain(await chain(t.ctx.db, s.tenantId));
    expectIntactChain(await chain(t.ctx.db, NIL_UUID));
  });

  it("alert settings and acknowledgements: a row per change, none for a repeat; usage exports: an access row each", async () => {
    const s = await signup(t.app);
    const settings = { errorRate: { threshold: 0.1, minCalls: 50 }, costUsdMonthly: null };
    const put = await call(user(s), "PUT", "/api/alerts/settings", settings);
    expect(put.statusCode, put.body).toBe(200);
    const repeat = await call(user(s), "PUT", "/api/alerts/settings", settings);
    expect(repeat.statusCode).toBe(200);
    const { alert } = await t.ctx.alerts.raise(s.tenantId, {
      kind: "cost_threshold",
      severity: "warning",
      dedupeKey: `cost:${rand()}`,
      message: "cost above threshold",
      details: {},
    });
    const ack = await call(user(s), "POST", `/api/alerts/${alert?.id}/ack`);
    expect(ack.statusCode, ack.body).toBe(200);
    expect((await call(user(s), "POST", `/api/alerts/${alert?.id}/ack`)).statusCode).toBe(200);

    const csv = await call(user(s), "GET", "/api/metrics/export?kind=events&format=csv");
    expect(csv.statusCode, csv.body).toBe(200);
    const jsonl = await call(
      { "x-api-key": s.apiKey },
      "GET",
      "/api/metrics/export?kind=usage&period=day&format=jsonl",
    );
    expect(jsonl.statusCode, jsonl.body).toBe(200);
    expectError(
      await call(user(s), "GET", "/api/metrics/export?kind=nothing"),
      400,
      "validation.failed",
    );

    const rows = await changes(t.ctx.db, s.tenantId);
    expect(rows.map((r) => r.event_type)).toEqual([
      "alert_settings.update",
      "alert.acknowledge",
      "usage.export",
      "usage.export",
    ]);
    const [set, acked, e1, e2] = rows;
    expectRequestRow(set, {
      eventType: "alert_settings.update",
      entityType: "alert_settings",
      entityId: s.tenantId,
      action: "update",
      actor: ["user", s.userId],
      requestId: put.requestId,
    });
    expect(set?.old_values).toEqual({});
    expect(set?.new_values).toEqual(settings);
    expectRequestRow(acked, {
      eventType: "alert.acknowledge",
      entityType: "alert",
      entityId: alert?.id as string,
      action: "update",
      actor: ["user", s.userId],
      requestId: ack.requestId,
    });
    expect(e1).toMatchObject({
      entity_type: "usage_export",
      action: "access",
      actor_type: "user",
      request_id: csv.requestId,
      new_values: { kind: "events", format: "csv" },
    });
    expect(e2).toMatchObject({
      action: "access",
      actor_type: "api_key",
      actor_id: await keyIdOf(t, s),
      request_id: jsonl.requestId,
      new_values: { kind: "usage", format: "jsonl", period: "day" },
    });
  });

  it("concurrent mutations of one tenant leave one row each, on one unforked chain (seq 1..n)", async () => {
    const s = await signup(t.app);
    const n = 12;
    const results = await Promise.all([
      ...Array.from({ length: n }, (_, i) =>
        call(user(s), "POST", "/api/ingest/document", {
          title: `Doc ${i}`,
          content: `Concurrent document number ${i} ${rand()}.`,
        }),
      ),
      ...Array.from({ length: n / 2 }, (_, i) =>
        call({ "x-api-key": s.apiKey }, "POST", FAQS, { question: `Q${i}?`, answer: `A${i}.` }),
      ),
      call(user(s), "PUT", "/api/alerts/settings", { costUsdMonthly: 5 }),
    ]);
    for (const r of results) expect(r.statusCode, r.body).toBeLessThan(300);
    const rows = (await changes(t.ctx.db, s.tenantId)).filter(
      (r) => r.event_type !== "document.activate",
    );
    const byRequest = new Map(rows.map((r) => [r.request_id, r]));
    expect(rows).toHaveLength(results.length);
    for (const r of results) expect(byRequest.get(r.requestId)).toBeDefined();
    expectIntactChain(await chain(t.ctx.db, s.tenantId));
  });
});

/** The backend with every audit row's insert made to fail on demand. */
function withFaultyAudit(backend: TestBackend) {
  let faults: ReturnType<typeof faultyDb> | undefined;
  const wrapped: TestBackend = {
    name: backend.name,
    async open() {
      const opened = await backend.open();
      faults = faultyDb(opened.db, /insert into "audit_events"/i);
      return { db: faults.db, dispose: opened.dispose };
    },
  };
  return { backend: wrapped, faults: () => faults as ReturnType<typeof faultyDb> };
}

describe.each(backends)("a failing audit write rolls the change back ($name)", (backend) => {
  let t: TestApp;
  const faulty = withFaultyAudit(backend);
  const call = caller(() => t);

  beforeAll(async () => {
    t = await startApp(faulty.backend);
  });
  afterAll(() => t?.close());

  it("no document, item, settings or chain advance when the row cannot be written; the next change continues the chain", async () => {
    const s = await signup(t.app);
    const auth = bearer(s.token);
    const count = async (sql: string) =>
      (await t.ctx.db.query<{ n: number }>(sql, [s.tenantId]))[0]?.n;
    const documents = () => count("select count(*)::int as n from documents where tenant_id = $1");

    faulty.faults().failNext(1);
    expect(
      (await call(auth, "POST", "/api/ingest/document", { title: "A", content: "a" })).statusCode,
    ).toBe(503);
    // The row was written and then the answer lost: the transaction still rolls back.
    faulty.faults().failNextAfterCommit(1);
    expect((await call(auth, "POST", FAQS, { question: "Q?", answer: "A." })).statusCode).toBe(500);
    faulty.faults().failNext(1);
    expect(
      (await call(auth, "PUT", "/api/alerts/settings", { costUsdMonthly: 1 })).statusCode,
    ).toBe(500);
    expect(await documents()).toBe(0);
    expect(await count("select count(*)::int as n from knowledge_items where tenant_id = $1")).toBe(
      0,
    );
    expect(await count("select count(*)::int as n from alert_settings where tenant_id = $1")).toBe(
      0,
    );
    // Only the signup's own row: none of the three changes moved the chain on.
    expect((await chain(t.ctx.db, s.tenantId)).map((r) => [r.seq, r.event_type])).toEqual([
      [1, "tenant.create"],
    ]);

    const ok = await call(auth, "POST", "/api/ingest/document", { title: "B", content: "b" });
    expect(ok.statusCode, ok.body).toBe(202);
    const rows = await chain(t.ctx.db, s.tenantId);
    expect(rows.map((r) => [r.seq, r.event_type, r.request_id])).toEqual([
      [1, "tenant.create", expect.any(String)],
      [2, "document.create", ok.requestId],
    ]);
    expectIntactChain(rows);
  });
});

describe.each(backends)("audit rows of direct uploads ($name)", (backend) => {
  let s3: S3Server;
  let t: TestApp;
  const prefix = `audit-uploads-${rand()}`;

  beforeAll(async () => {
    s3 = await startS3Server();
    t = await startApp(backend, s3.env(prefix));
  });
  afterAll(async () => {
    await t?.close();
    await s3?.dispose();
  });

  it("signing an upload is upload.create; completing it is the document's create, naming the upload", async () => {
    const s = await signup(t.app);
    const done = await presignedUpload(t.app, s.token, {
      name: "hours.txt",
      body: Buffer.from("Open every day from nine."),
      title: "Hours",
    });
    expect(done.statusCode, done.body).toBe(202);
    const rows = await changes(t.ctx.db, s.tenantId);
    expect(rows.map((r) => r.event_type)).toEqual(["upload.create", "document.create"]);
    const [signed, created] = rows;
    expect(signed).toMatchObject({
      entity_type: "upload",
      action: "create",
      actor_type: "user",
      actor_id: s.userId,
      new_values: { filename: "hours.txt", title: "Hours", sizeBytes: 25, docType: "txt" },
    });
    expect(JSON.stringify(signed)).not.toContain("X-Amz-Signature");
    expect(created).toMatchObject({
      entity_id: done.json().documentId,
      new_values: { source: "upload", uploadId: signed?.entity_id, title: "Hours" },
    });
    // A repeated completion answers the first one's result and records nothing.
    const again = await t.app.inject({
      method: "POST",
      url: `/api/ingest/uploads/${signed?.entity_id}/complete`,
      headers: bearer(s.token),
    });
    expect(again.statusCode).toBe(202);
    expect(await changes(t.ctx.db, s.tenantId)).toHaveLength(2);
  });
});
