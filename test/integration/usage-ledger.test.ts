import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { kysely, sql } from "../../src/platform/db/index.js";
import { countTokens } from "../../src/platform/embeddings/tokens.js";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";
import { settle } from "../fixtures/ingest.js";
import { waitFor } from "../fixtures/queue.js";
import { costUnits, units, usageEvents } from "../fixtures/usage.js";

const PLATFORM_KEY = `sk-platform-${randomBytes(8).toString("hex")}`;
const TENANT_KEY = `sk-tenant-${randomBytes(8).toString("hex")}`;
/** The seeded public price of the default OpenAI embedding model. */
const SMALL_PRICE = "0.00000002";

describe.each(backends)("usage ledger: billable facts ($name)", (backend) => {
  let t: TestApp;
  let fake: FakeOpenAI;

  beforeAll(async () => {
    fake = await startFakeOpenAI({ keys: [PLATFORM_KEY, TENANT_KEY] });
    t = await startApp(
      backend,
      { JOB_BACKOFF_MS: "20", OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: PLATFORM_KEY },
      { workers: true },
    );
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  async function call(
    s: SignedUp,
    method: "GET" | "POST" | "PUT" | "DELETE",
    url: string,
    payload?: unknown,
  ) {
    const res = await t.app.inject({
      method,
      url,
      headers: bearer(s.token),
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    expect(res.statusCode, `${method} ${url}: ${res.body}`).toBeLessThan(300);
    return res;
  }

  async function openaiTenant(ownKey = false): Promise<SignedUp> {
    const s = await signup(t.app);
    await call(s, "PUT", "/api/customers/config", {
      embeddingProvider: "openai",
      ...(ownKey ? { providerApiKey: TENANT_KEY } : {}),
    });
    return s;
  }

  async function ingest(s: SignedUp, title: string, content: string) {
    const res = await call(s, "POST", "/api/ingest/document", { title, content });
    return { documentId: res.json().documentId as string, requestId: res.headers["x-request-id"] };
  }

  async function versionsOf(s: SignedUp, id: string) {
    return (await call(s, "GET", `/api/documents/${id}/versions`)).json().items as Array<{
      version: number;
      status: string;
      embeddingTokens: number;
      embeddingCostUsd: string;
    }>;
  }

  async function versionId(tenantId: string, documentId: string, version: number) {
    const row = await kysely(t.ctx.db)
      .selectFrom("document_versions")
      .select("id")
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .where("version", "=", version)
      .executeTakeFirstOrThrow();
    return row.id;
  }

  it("bills a version's embedding in its activation, at the price in force, paid by the platform", async () => {
    const s = await openaiTenant();
    const { documentId, requestId } = await ingest(
      s,
      "Opening hours",
      "The bistro opens at nine and closes at eleven. Breakfast is served until noon.",
    );
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
    const doc = (await call(s, "GET", `/api/documents/${documentId}`)).json();
    const [v1] = await versionsOf(s, documentId);
    const vId = await versionId(s.tenantId, documentId, 1);

    const events = await usageEvents(t.ctx, { tenantId: s.tenantId, metric: "embedding_tokens" });
    expect(events).toHaveLength(1);
    const e = events[0] as (typeof events)[number];
    expect(e).toMatchObject({
      quantity: v1?.embeddingTokens,
      unit: "input_token",
      provider: "openai",
      model: "text-embedding-3-small",
      payer: "platform",
      subject_type: "document_version",
      subject_id: vId,
      document_id: documentId,
      actor_type: "system",
      // The job acts for the request that asked for the version.
      request_id: requestId,
      metadata: { version: 1 },
    });
    expect(e.quantity).toBeGreaterThan(0);
    expect(e.price_id).not.toBeNull();
    expect(units(e.cost_usd)).toBe(costUnits(e.quantity, SMALL_PRICE));
    // The document's and the version's figures are the ledger's, to the last decimal.
    expect(units(doc.embeddingCostUsd)).toBe(units(e.cost_usd));
    expect(units(v1?.embeddingCostUsd as string)).toBe(units(e.cost_usd));
    expect(doc.embeddingTokens).toBe(e.quantity);

    // The storage gauges, taken in the same activation.
    const gauges = await usageEvents(t.ctx, {
      tenantId: s.tenantId,
      subjectType: "storage_change",
      subjectId: `activation:${vId}`,
    });
    expect(Object.fromEntries(gauges.map((g) => [g.metric, g.quantity]))).toEqual({
      documents_stored: 1,
      storage_bytes: doc.fileSizeBytes,
    });
  });

  it("records the tenant as payer when its own provider key embedded", async () => {
    const own = await openaiTenant(true);
    const { documentId } = await ingest(own, "Menu", "Soup of the day, bread, and cheese.");
    expect((await settle(t.app, own.token, documentId)).status).toBe("completed");
    expect(fake.requests.every((r) => r.apiKey === TENANT_KEY)).toBe(true);
    const [e] = await usageEvents(t.ctx, { tenantId: own.tenantId, metric: "embedding_tokens" });
    expect(e).toMatchObject({ payer: "tenant", provider: "openai" });
    // The cost is still computed (the operator may bill or show it), at the same price.
    expect(units(e?.cost_usd as string)).toBe(costUnits(e?.quantity as number, SMALL_PRICE));
  });

  it("a job run again for the same version bills it exactly once", async () => {
    const s = await openaiTenant();
    const { documentId } = await ingest(s, "Policy", "Refunds within thirty days of purchase.");
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
    const before = await usageEvents(t.ctx, { tenantId: s.tenantId });
    // As after a crash between the commit and the job's completion: the version is processed
    // from the start again by another run of its job.
    const vId = await versionId(s.tenantId, documentId, 1);
    await kysely(t.ctx.db)
      .updateTable("document_versions")
      .set({ status: "pending" })
      .where("id", "=", vId)
      .execute();
    const requestsBefore = fake.requests.length;
    const job = await t.ctx.queue.enqueue(
      "ingest.process",
      { tenantId: s.tenantId, documentId, version: 1 },
      { jobId: randomUUID() },
    );
    await waitFor(
      "the second run of the job",
      async () => {
        const j = await t.ctx.queue.get(s.tenantId, job.id);
        return j?.status === "completed" ? j : undefined;
      },
      20_000,
    );
    // It really embedded again: the provider was called, and the ledger kept one event.
    expect(fake.requests.length).toBeGreaterThan(requestsBefore);
    const after = await usageEvents(t.ctx, { tenantId: s.tenantId });
    expect(after.map((e) => [e.id, e.cost_usd])).toEqual(before.map((e) => [e.id, e.cost_usd]));
    const [v1] = await versionsOf(s, documentId);
    expect(v1?.status).toBe("active");
    expect(units(v1?.embeddingCostUsd as string)).toBe(
      units((after.find((e) => e.metric === "embedding_tokens")?.cost_usd as string) ?? "x"),
    );
  });

  it("an activation that fails leaves no event: the ledger rolls back with the business write", async () => {
    const db = kysely(t.ctx.db);
    await sql`
      create or replace function test_refuse_activation() returns trigger language plpgsql as $$
      begin
        if new.title like 'explode-%' and new.active_version is not null
           and old.active_version is distinct from new.active_version then
          raise exception 'activation refused by the test';
        end if;
        return new;
      end $$`.execute(db);
    await sql`create trigger test_refuse_activation before update on documents
      for each row execute function test_refuse_activation()`.execute(db);
    try {
      const s = await openaiTenant();
      const { documentId } = await ingest(
        s,
        `explode-${randomBytes(4).toString("hex")}`,
        "Never live.",
      );
      const done = await settle(t.app, s.token, documentId);
      expect(done.status).toBe("failed");
      expect(done.job?.attempts).toBe(3);
      // The provider embedded three times; nothing of it, nor of storage, reached the ledger.
      expect(fake.requests.length).toBeGreaterThanOrEqual(3);
      expect(await usageEvents(t.ctx, { tenantId: s.tenantId })).toEqual([]);
      const [v1] = await versionsOf(s, documentId);
      expect(v1?.embeddingCostUsd).toMatch(/^0(\.0+)?$/);
    } finally {
      await sql`drop trigger test_refuse_activation on documents`.execute(db);
      await sql`drop function test_refuse_activation()`.execute(db);
    }
  });

  it("a knowledge item's embedding names the item", async () => {
    const s = await openaiTenant();
    const item = (
      await call(s, "POST", "/api/knowledge/faqs", {
        question: "Do you deliver?",
        answer: "Within five kilometres, every day.",
      })
    ).json();
    expect((await settle(t.app, s.token, item.documentId)).status).toBe("completed");
    const [e] = await usageEvents(t.ctx, { tenantId: s.tenantId, metric: "embedding_tokens" });
    expect(e).toMatchObject({
      document_id: item.documentId,
      metadata: { knowledgeItemId: item.id, version: 1 },
    });
  });

  it("a search bills its query tokens and one search, as two facts of one search", async () => {
    const s = await signup(t.app); // the local embedder: tokens counted with cl100k
    const { documentId } = await ingest(s, "Hours", "We open at nine on weekdays.");
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
    const query = "When do you open on weekdays?";
    const res = await call(s, "POST", "/api/search", { query, mode: "hybrid" });
    const searches = await usageEvents(t.ctx, { tenantId: s.tenantId, metric: "search_queries" });
    expect(searches).toHaveLength(1);
    const searchEvent = searches[0] as (typeof searches)[number];
    expect(searchEvent).toMatchObject({
      quantity: 1,
      unit: "call",
      provider: "tenantrag",
      model: "search",
      payer: "platform",
      subject_type: "search",
      actor_type: "user",
      actor_id: s.userId,
      request_id: res.headers["x-request-id"],
      metadata: { mode: "hybrid" },
    });
    const tokens = await usageEvents(t.ctx, {
      tenantId: s.tenantId,
      metric: "embedding_tokens",
      subjectType: "search",
    });
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({
      subject_id: searchEvent.subject_id,
      quantity: countTokens(query),
      provider: "local",
      payer: "platform",
      cost_usd: expect.stringMatching(/^0(\.0+)?$/),
    });
    expect(tokens[0]?.price_id).not.toBeNull();

    // A text search embeds nothing: one more search, no more tokens.
    await call(s, "POST", "/api/search", { query: "nine", mode: "text" });
    expect(
      await usageEvents(t.ctx, { tenantId: s.tenantId, metric: "search_queries" }),
    ).toHaveLength(2);
    expect(
      await usageEvents(t.ctx, {
        tenantId: s.tenantId,
        metric: "embedding_tokens",
        subjectType: "search",
      }),
    ).toHaveLength(1);
  });

  it("a search through the tenant's own key bills tokens as the provider reported them, paid by the tenant", async () => {
    const own = await openaiTenant(true);
    fake.usage = () => 7; // what the provider says it billed wins over our count
    await call(own, "POST", "/api/search", { query: "anything at all", mode: "vector" });
    const [e] = await usageEvents(t.ctx, { tenantId: own.tenantId, metric: "embedding_tokens" });
    expect(e).toMatchObject({ quantity: 7, payer: "tenant", provider: "openai" });
    expect(units(e?.cost_usd as string)).toBe(costUnits(7, SMALL_PRICE));
  });

  it("a delete records the storage gauges; the daily snapshot records each tenant once a day", async () => {
    const s = await signup(t.app);
    const a = await ingest(s, "One", "First document of the tenant.");
    const b = await ingest(s, "Two", "Second document of the tenant.");
    await settle(t.app, s.token, a.documentId);
    await settle(t.app, s.token, b.documentId);
    const kept = (await call(s, "GET", `/api/documents/${b.documentId}`)).json();
    await call(s, "DELETE", `/api/documents/${a.documentId}`);
    const gauges = await usageEvents(t.ctx, {
      tenantId: s.tenantId,
      subjectType: "storage_change",
      subjectId: `delete:${a.documentId}`,
    });
    expect(Object.fromEntries(gauges.map((g) => [g.metric, g.quantity]))).toEqual({
      documents_stored: 1,
      storage_bytes: kept.fileSizeBytes,
    });
    expect(gauges.every((g) => g.actor_type === "user" && g.actor_id === s.userId)).toBe(true);

    const empty = await signup(t.app);
    for (let i = 0; i < 2; i++) await t.ctx.queue.enqueue("usage.snapshot", { tenantId: null });
    const day = new Date(t.ctx.clock.now()).toISOString().slice(0, 10);
    const snapshot = (tenantId: string) =>
      waitFor(
        "the day's snapshot",
        async () => {
          const rows = await usageEvents(t.ctx, {
            tenantId,
            subjectType: "tenant_day",
            subjectId: day,
          });
          return rows.length === 2 ? rows : undefined;
        },
        20_000,
      );
    const mine = await snapshot(s.tenantId);
    expect(Object.fromEntries(mine.map((g) => [g.metric, g.quantity]))).toEqual({
      documents_stored: 1,
      storage_bytes: kept.fileSizeBytes,
    });
    // A tenant without documents gets its zero level stated too.
    const none = await snapshot(empty.tenantId);
    expect(none.map((g) => g.quantity)).toEqual([0, 0]);
    // Both runs are done once the jobs are: still two events (one per gauge) per tenant and day.
    await waitFor(
      "both snapshot runs",
      async () => {
        const rows = await kysely(t.ctx.db)
          .selectFrom("jobs")
          .select("status")
          .where("type", "=", "usage.snapshot")
          .execute();
        return rows.length >= 2 && rows.every((r) => r.status === "completed") ? rows : undefined;
      },
      20_000,
    );
    expect(
      await usageEvents(t.ctx, { tenantId: s.tenantId, subjectType: "tenant_day" }),
    ).toHaveLength(2);
  });
});
