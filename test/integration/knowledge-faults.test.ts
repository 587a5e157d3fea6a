import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { expectError, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";
import { FAQS, knowledgeApi, POLICIES } from "../fixtures/knowledge.js";

/** Knowledge items when indexing fails or is refused: the item must say so, never hang. */
describe.each(backends)("knowledge item failures ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // No OpenAI-compatible endpoint configured.
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" }, { workers: true });
  });
  afterAll(() => t.close());
  const { call, ok, settle, search } = knowledgeApi(() => t.app);

  it("shows a failed embedding on the item with its code, not stuck processing, and recovers on the next update", async () => {
    const s = await signup(t.app);
    // This server has no OpenAI-compatible endpoint: the job cannot embed, and retrying cannot help.
    await ok(s, "PUT", "/api/customers/config", 200, { embeddingProvider: "openai" });
    const fields = { question: "Do you deliver?", answer: "Within five kilometres." };
    const item = await ok(s, "POST", FAQS, 202, fields);
    const failed = await settle(s, `${FAQS}/${item.id}`);
    expect(failed).toMatchObject({
      status: "failed",
      error: { code: "embedding.not_configured" },
      activeVersion: null,
    });
    // Not retried: a retry cannot configure the endpoint.
    expect(failed.job).toMatchObject({ status: "failed", attempts: 1 });
    expect((await ok(s, "GET", FAQS, 200)).items[0]).toMatchObject({
      status: "failed",
      error: { code: "embedding.not_configured" },
    });

    await ok(s, "PUT", "/api/customers/config", 200, { embeddingProvider: "local" });
    // The same fields again: a failed version is no duplicate, so this retries the embedding.
    const retry = await ok(s, "PUT", `${FAQS}/${item.id}`, 202, fields);
    expect(retry.ingest.status).toBe("processing");
    expect(await settle(s, `${FAQS}/${item.id}`)).toMatchObject({
      status: "completed",
      error: null,
    });
  });

  it("counts items against the tenant's document limit and leaves nothing behind when refused", async () => {
    const s = await signup(t.app);
    await ok(s, "PUT", "/api/customers/config", 200, { maxDocuments: 1 });
    await ok(s, "POST", POLICIES, 202, { title: "Returns", content: "Within 30 days." });
    expectError(
      await call(s.token, "POST", FAQS, { question: "Q?", answer: "A." }),
      422,
      "ingestion.max_documents",
    );
    expect((await ok(s, "GET", FAQS, 200)).items).toEqual([]);
    expect((await ok(s, "GET", "/api/documents", 200)).items).toHaveLength(1);
  });

  it("says so when the backing document was deleted elsewhere, and an update indexes the item again", async () => {
    const s = await signup(t.app);
    const fields = { question: "Is the garden open?", answer: "The garden opens in May." };
    const item = await ok(s, "POST", FAQS, 202, fields);
    await settle(s, `${FAQS}/${item.id}`);
    // The documents API refuses (knowledge-documents.test.ts); the row goes as an older release
    // let it go, through that API, or as an operator's delete would.
    expectError(
      await call(s.token, "DELETE", `/api/documents/${item.documentId}`),
      409,
      "document.managed_by_knowledge",
    );
    await t.ctx.db.query("delete from documents where tenant_id = $1 and id = $2", [
      s.tenantId,
      item.documentId,
    ]);
    expect(await ok(s, "GET", `${FAQS}/${item.id}`, 200)).toMatchObject({
      status: "failed",
      documentId: null,
      error: { code: "knowledge.document_missing" },
    });
    const put = await ok(s, "PUT", `${FAQS}/${item.id}`, 202, fields);
    expect(put.documentId).not.toBe(item.documentId);
    expect((await settle(s, `${FAQS}/${item.id}`)).status).toBe("completed");
    expect((await search(s, { query: "garden opens May", mode: "hybrid" }))[0]?.documentId).toBe(
      put.documentId,
    );
  });
});

describe.each(backends)("knowledge items over a failing embedding provider ($name)", (backend) => {
  const key = `sk-fake-${randomBytes(8).toString("hex")}`;
  let t: TestApp;
  let fake: FakeOpenAI;
  beforeAll(async () => {
    fake = await startFakeOpenAI({ keys: [key] });
    t = await startApp(
      backend,
      { JOB_BACKOFF_MS: "20", OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: key },
      { workers: true },
    );
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());
  const { ok, settle, search } = knowledgeApi(() => t.app);

  async function openaiTenant(): Promise<SignedUp> {
    const s = await signup(t.app);
    await ok(s, "PUT", "/api/customers/config", 200, { embeddingProvider: "openai" });
    return s;
  }

  it("retries a failed embedding job, and the item completes when the provider recovers", async () => {
    const s = await openaiTenant();
    // The embedder makes 5 requests per job attempt (4 retries of its own): the first attempt
    // fails, the queue runs the job again, and that one gets vectors.
    fake.failNext({ status: 503, retryAfterMs: "1" }, 5);
    const item = await ok(s, "POST", FAQS, 202, {
      question: "Wine?",
      answer: "The house red is a Rioja.",
    });
    const done = await settle(s, `${FAQS}/${item.id}`);
    expect(done).toMatchObject({
      status: "completed",
      error: null,
      job: { status: "completed", attempts: 2 },
    });
    expect((await search(s, { query: "house red Rioja", mode: "vector" }))[0]?.documentId).toBe(
      item.documentId,
    );
  });

  it("fails the item with the embedding error once the queue has used up its attempts", async () => {
    const s = await openaiTenant();
    fake.failNext({ status: 500, retryAfterMs: "1" });
    const item = await ok(s, "POST", FAQS, 202, {
      question: "Beer?",
      answer: "Two local lagers on tap.",
    });
    expect(await settle(s, `${FAQS}/${item.id}`)).toMatchObject({
      status: "failed",
      error: { code: "ingestion.embedding_failed" },
      activeVersion: null,
      job: { status: "dead", attempts: 3, maxAttempts: 3 },
    });
  });
});
