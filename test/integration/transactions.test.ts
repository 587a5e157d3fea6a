import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";
import { FAQS, knowledgeApi } from "../fixtures/knowledge.js";

/**
 * The services' writes join a caller's transaction (`{ tx }`): they commit with the caller's
 * own writes, and a caller that throws takes them back with its own.
 */
describe.each(backends)("writes in a caller's transaction ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, {}, { workers: true });
  });
  afterAll(() => t.close());

  class Abort extends Error {}
  /** Runs `fn` in a transaction that then throws, so that it rolls back. */
  const rolledBack = (fn: Parameters<TestApp["ctx"]["db"]["transaction"]>[0]) =>
    expect(
      t.ctx.db.transaction(async (tx) => {
        await fn(tx);
        throw new Abort("the caller's own write failed");
      }),
    ).rejects.toBeInstanceOf(Abort);

  const profile = async (s: SignedUp) =>
    (await t.app.inject({ url: "/api/customers/profile", headers: bearer(s.token) })).json();
  const config = async (s: SignedUp) =>
    (await t.app.inject({ url: "/api/customers/config", headers: bearer(s.token) })).json();
  const documentStatus = async (s: SignedUp, id: string) =>
    (await t.app.inject({ url: `/api/documents/${id}`, headers: bearer(s.token) })).statusCode;
  const { settle } = knowledgeApi(() => t.app);
  const faqs = async (s: SignedUp) =>
    (await t.app.inject({ url: FAQS, headers: bearer(s.token) })).json().items;
  const documentCount = async (s: SignedUp) =>
    (await t.app.inject({ url: "/api/documents", headers: bearer(s.token) })).json().items.length;
  const faq = (question: string, answer: string) => ({
    type: "faq" as const,
    fields: { question, answer },
  });

  it("leaves no tenant change behind when the transaction rolls back, and keeps one that commits", async () => {
    const s = await signup(t.app, { companyName: "Before Ltd" });
    const ctx = apiKeyContext(s.tenantId);
    const { maxDocuments } = await config(s);

    await rolledBack(async (tx) => {
      await t.ctx.tenants.rename(ctx, "Rolled Back Ltd", { tx });
      await t.ctx.tenants.updateConfig(ctx, { maxDocuments: 3 }, { tx });
    });
    expect((await profile(s)).tenant.name).toBe("Before Ltd");
    expect((await config(s)).maxDocuments).toBe(maxDocuments);

    await t.ctx.db.transaction(async (tx) => {
      await t.ctx.tenants.rename(ctx, "Committed Ltd", { tx });
      await t.ctx.tenants.updateConfig(ctx, { maxDocuments: 3 }, { tx });
    });
    expect((await profile(s)).tenant.name).toBe("Committed Ltd");
    expect((await config(s)).maxDocuments).toBe(3);
  });

  it("keeps a document deleted in a transaction that rolls back, and deletes it when it commits", async () => {
    const s = await signup(t.app);
    const ctx = apiKeyContext(s.tenantId);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: { "x-api-key": s.apiKey },
      payload: { title: "Opening hours", content: "Open every day from nine to five." },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { documentId } = res.json();

    await rolledBack((tx) => t.ctx.documents.delete(ctx, documentId, { tx }));
    expect(await documentStatus(s, documentId)).toBe(200);
    const versions = await t.app.inject({
      url: `/api/documents/${documentId}/versions`,
      headers: bearer(s.token),
    });
    expect(versions.json().items).toMatchObject([{ version: 1 }]);

    await t.ctx.db.transaction((tx) => t.ctx.documents.delete(ctx, documentId, { tx }));
    expect(await documentStatus(s, documentId)).toBe(404);
  });

  it("keeps a knowledge item deleted in a transaction that rolls back, with its document", async () => {
    const s = await signup(t.app);
    const ctx = apiKeyContext(s.tenantId);
    const res = await t.app.inject({
      method: "POST",
      url: FAQS,
      headers: bearer(s.token),
      payload: { question: "Is there parking?", answer: "Yes, behind the building." },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { id, documentId } = res.json();
    const item = async () =>
      (await t.app.inject({ url: `${FAQS}/${id}`, headers: bearer(s.token) })).statusCode;

    await rolledBack((tx) => t.ctx.knowledge.delete(ctx, "faq", id, { tx }));
    expect(await item()).toBe(200);
    expect(await documentStatus(s, documentId)).toBe(200);

    await t.ctx.db.transaction((tx) => t.ctx.knowledge.delete(ctx, "faq", id, { tx }));
    expect(await item()).toBe(404);
    expect(await documentStatus(s, documentId)).toBe(404);
  });

  it("creates a knowledge item in a caller's transaction: nothing of it after a rollback, all of it after the commit", async () => {
    const s = await signup(t.app);
    const ctx = apiKeyContext(s.tenantId);

    let jobId = "";
    await rolledBack(async (tx) => {
      const made = await t.ctx.knowledge.create(ctx, faq("Do you deliver?", "Within 5 km."), {
        tx,
      });
      // Answered as the transaction sees it: the version and its job are there, not yet run.
      expect(made).toMatchObject({ status: "processing", ingest: { status: "processing" } });
      expect(made.job).toMatchObject({ id: made.ingest.jobId, status: "queued" });
      jobId = made.ingest.jobId ?? "";
    });
    expect(await faqs(s)).toEqual([]);
    expect(await documentCount(s)).toBe(0);
    // The job went with the transaction: it was never handed to a worker.
    expect(await t.ctx.queue.get(s.tenantId, jobId)).toBeUndefined();

    const made = await t.ctx.db.transaction((tx) =>
      t.ctx.knowledge.create(ctx, faq("Do you deliver?", "Within 5 km."), { tx }),
    );
    const done = await settle(s, `${FAQS}/${made.id}`);
    expect(done).toMatchObject({
      status: "completed",
      activeVersion: 1,
      documentId: made.documentId,
    });
    expect(done.job).toMatchObject({ id: made.ingest.jobId, status: "completed" });
  });

  it("updates a knowledge item in a caller's transaction: the old fields and version after a rollback", async () => {
    const s = await signup(t.app);
    const ctx = apiKeyContext(s.tenantId);
    const made = await t.ctx.knowledge.create(ctx, faq("Open on Sunday?", "No."));
    await settle(s, `${FAQS}/${made.id}`);

    await rolledBack(async (tx) => {
      const changed = await t.ctx.knowledge.update(
        ctx,
        made.id,
        faq("Open on Sunday?", "Yes, 10-4."),
        {
          tx,
        },
      );
      expect(changed).toMatchObject({ latestVersion: 2, fields: { answer: "Yes, 10-4." } });
    });
    expect(await settle(s, `${FAQS}/${made.id}`)).toMatchObject({
      fields: { answer: "No." },
      status: "completed",
      activeVersion: 1,
      latestVersion: 1,
    });

    await t.ctx.db.transaction((tx) =>
      t.ctx.knowledge.update(ctx, made.id, faq("Open on Sunday?", "Yes, 10-4."), { tx }),
    );
    expect(await settle(s, `${FAQS}/${made.id}`)).toMatchObject({
      fields: { answer: "Yes, 10-4." },
      status: "completed",
      activeVersion: 2,
      latestVersion: 2,
    });
  });

  it("refuses a knowledge item past the document limit inside the transaction, which the caller rolls back", async () => {
    const s = await signup(t.app);
    const ctx = apiKeyContext(s.tenantId);
    await t.ctx.tenants.updateConfig(ctx, { maxDocuments: 1 });
    await t.ctx.knowledge.create(ctx, faq("First?", "Yes."));
    await expect(
      t.ctx.db.transaction((tx) => t.ctx.knowledge.create(ctx, faq("Second?", "No."), { tx })),
    ).rejects.toMatchObject({ code: "ingestion.max_documents" });
    expect(await faqs(s)).toHaveLength(1);
    expect(await documentCount(s)).toBe(1);
  });
});
