import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { documentsStore } from "../../src/modules/ingestion/documents.store.js";
import { createIngestionService } from "../../src/modules/ingestion/index.js";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";
import { documentCount, settle } from "../fixtures/ingest.js";

// The tenant's document figures (count and stored bytes) are a maintained row, read by the
// document limit and the storage quota instead of a scan: it must equal what a scan counts
// after every kind of write, and the limit must hold under concurrent submissions.

describe.each(backends)("the tenant's maintained document figures ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" }, { workers: true });
  });
  afterAll(() => t?.close());

  const ingest = (s: SignedUp, payload: Record<string, unknown>) =>
    t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload,
    });
  const setMax = async (s: SignedUp, maxDocuments: number) => {
    const res = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxDocuments },
    });
    expect(res.statusCode, res.body).toBe(200);
  };
  const figures = (tenantId: string) =>
    Promise.all([
      documentsStore.storageLevel(t.ctx.db, tenantId),
      documentsStore.countedLevel(t.ctx.db, tenantId),
    ]);

  it("equals the documents' own count and bytes after creates, duplicates, versions, refusals, failed stores and deletes", async () => {
    const s = await signup(t.app);
    await setMax(s, 7);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await ingest(s, {
        title: `d${i}`,
        content: `document number ${i} `.repeat(i + 1),
      });
      expect(res.statusCode, res.body).toBe(202);
      ids.push(res.json().documentId);
    }
    // A duplicate of the first (same content, no name): no new document.
    const dup = await ingest(s, { title: "again", content: "document number 0 " });
    expect(dup.json()).toMatchObject({ documentId: ids[0], status: "duplicate" });
    // A named document, then new content for it: one document, its size that of version 2.
    const named = await ingest(s, { title: "n", content: "short", externalId: "ext-1" });
    expect(named.statusCode, named.body).toBe(202);
    await settle(t.app, s.token, named.json().documentId);
    const v2 = await ingest(s, {
      title: "n",
      content: "much longer content ".repeat(20),
      externalId: "ext-1",
    });
    expect(v2.json()).toMatchObject({ documentId: named.json().documentId, version: 2 });
    // A submission whose bytes cannot be stored: its document is discarded.
    const failing = createIngestionService({
      db: t.ctx.db,
      tenants: t.ctx.tenants,
      quotas: t.ctx.quotas,
      audit: t.ctx.audit,
      events: t.ctx.events,
      allowPrivateUrls: false,
      queue: t.ctx.queue,
      blobs: {
        ...t.ctx.blobs,
        put: async () => {
          throw new Error("disk full");
        },
      },
    });
    await expect(
      failing.submitText(apiKeyContext(s.tenantId), {
        title: "lost",
        content: "never stored",
        docType: "txt",
      }),
    ).rejects.toMatchObject({ code: "service.unavailable" });
    expect((await figures(s.tenantId))[0].documents).toBe(6);
    // Refused at the limit: rolled back, not counted.
    await setMax(s, 6);
    expectError(
      await ingest(s, { title: "over", content: "one too many" }),
      422,
      "ingestion.max_documents",
    );
    // A delete frees a place.
    const del = await t.app.inject({
      method: "DELETE",
      url: `/api/documents/${ids[1]}`,
      headers: bearer(s.token),
    });
    expect(del.statusCode, del.body).toBe(204);
    for (const id of [...ids.filter((_, i) => i !== 1), named.json().documentId]) {
      await settle(t.app, s.token, id);
    }
    const [kept, counted] = await figures(s.tenantId);
    expect(counted.documents).toBe(5);
    expect(await documentCount(t.app, s.token)).toBe(5);
    expect(counted.bytes).toBeGreaterThan(0);
    expect(kept).toEqual(counted);
    // Another tenant's figures are its own.
    const other = await signup(t.app);
    expect((await figures(other.tenantId))[0]).toEqual({ documents: 0, bytes: 0 });
  });

  it("lets concurrent submissions at the limit create no more documents than it allows", async () => {
    const s = await signup(t.app);
    await setMax(s, 4);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        ingest(s, { title: `c${i}`, content: `concurrent ${i}` }),
      ),
    );
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes.filter((c) => c === 202)).toHaveLength(4);
    for (const r of results.filter((r) => r.statusCode !== 202)) {
      expectError(r, 422, "ingestion.max_documents");
    }
    expect(await documentCount(t.app, s.token)).toBe(4);
    const [kept, counted] = await figures(s.tenantId);
    expect(kept.documents).toBe(4);
    expect(kept.documents).toBe(counted.documents);
  });
  it("lets concurrent batches and single submissions at the limit create no more documents than it allows, first items first", async () => {
    const s = await signup(t.app);
    await setMax(s, 10);
    const batch = (tag: string) =>
      t.app.inject({
        method: "POST",
        url: "/api/ingest/batch",
        headers: bearer(s.token),
        payload: {
          documents: Array.from({ length: 6 }, (_, i) => ({
            title: `${tag}${i}`,
            content: `batch ${tag} item ${i}`,
          })),
        },
      });
    const [a, b, ...singles] = await Promise.all([
      batch("a"),
      batch("b"),
      ...Array.from({ length: 4 }, (_, i) => ingest(s, { title: `s${i}`, content: `single ${i}` })),
    ]);
    let created = 0;
    for (const res of [a, b]) {
      expect(res?.statusCode, res?.body).toBe(202);
      const oks: boolean[] = res?.json().results.map((r: { ok: boolean }) => r.ok);
      // Within a batch, the accepted ones are its first items.
      expect(oks).toEqual([...oks].sort((x, y) => Number(y) - Number(x)));
      for (const r of res?.json().results ?? []) {
        if (!r.ok) expect(r.error.code).toBe("ingestion.max_documents");
      }
      created += oks.filter(Boolean).length;
    }
    created += singles.filter((r) => r.statusCode === 202).length;
    expect(created).toBe(10);
    expect(await documentCount(t.app, s.token)).toBe(10);
    const [kept, counted] = await figures(s.tenantId);
    expect(kept).toEqual(counted);
  });
});
