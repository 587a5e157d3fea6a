import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import {
  documentCount,
  multipart,
  search as searchAs,
  settle as settleDocument,
} from "../fixtures/ingest.js";
import { buildPdf } from "../fixtures/pdf.js";

const WAIT_MS = 20_000;

const settle = (t: TestApp, s: SignedUp, documentId: string) =>
  settleDocument(t.app, s.token, documentId, WAIT_MS);
const search = (t: TestApp, s: SignedUp, body: Record<string, unknown>) =>
  searchAs(t.app, s.token, body);

async function ingest(t: TestApp, s: SignedUp, payload: Record<string, unknown>, headers = {}) {
  return t.app.inject({
    method: "POST",
    url: "/api/ingest/document",
    headers: { ...bearer(s.token), ...headers },
    payload,
  });
}

describe.each(backends)("ingestion and search ($name)", (backend) => {
  let t: TestApp;
  let site: Server;
  let siteUrl: string;

  beforeAll(async () => {
    t = await startApp(
      backend,
      { ALLOW_PRIVATE_URLS: "true", JOB_BACKOFF_MS: "20", ANN_THRESHOLD: "256" },
      { workers: true },
    );
    site = createServer((req, res) => {
      if (req.url === "/article") {
        res.setHeader("content-type", "text/html; charset=utf-8");
        res.end(
          "<html><head><title>Opening hours</title></head><body><nav>Home | Menu</nav><article><h1>Opening hours</h1>" +
            "<p>The bistro opens at nine in the morning and serves breakfast until eleven.</p>" +
            "<p>On Sundays the kitchen closes early, at four in the afternoon.</p></article><footer>©</footer></body></html>",
        );
        return;
      }
      res.statusCode = 404;
      res.end("nope");
    });
    await new Promise<void>((r) => site.listen(0, "127.0.0.1", r));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => site.close(r));
    await t.close();
  });

  it("ingests a document, processes it in the background, and finds it by vector, text and hybrid search", async () => {
    const s = await signup(t.app);
    const res = await ingest(t, s, {
      title: "Refund policy",
      content:
        "Refunds are issued within fourteen days of purchase when the receipt is shown.\n\nGift cards are never refundable.",
      docType: "md",
      metadata: { team: "support" },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { documentId, version, jobId, status } = res.json();
    expect({ version, status }).toEqual({ version: 1, status: "processing" });
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);

    const st = await settle(t, s, documentId);
    expect(st).toMatchObject({
      status: "completed",
      activeVersion: 1,
      job: { status: "completed", attempts: 1 },
    });

    for (const mode of ["vector", "text", "hybrid"]) {
      const results = await search(t, s, { query: "refundable gift cards", mode, limit: 5 });
      expect(results.length, mode).toBeGreaterThan(0);
      expect(results[0]).toMatchObject({ documentId, version: 1, title: "Refund policy" });
    }
    const doc = (
      await t.app.inject({ url: `/api/documents/${documentId}`, headers: bearer(s.token) })
    ).json();
    expect(doc).toMatchObject({
      status: "completed",
      chunkCount: expect.any(Number),
      metadata: { team: "support" },
    });
    expect(doc.embeddingTokens).toBeGreaterThan(0);
  });

  it("answers unchanged content as a duplicate, and changed content as a new version that replaces the old in search", async () => {
    const s = await signup(t.app);
    const first = await ingest(t, s, {
      title: "Menu",
      content: "Soup of the day: tomato basil.",
      externalId: "menu",
    });
    const id = first.json().documentId;
    await settle(t, s, id);

    const again = await ingest(t, s, {
      title: "Menu",
      content: "Soup of the day: tomato basil.",
      externalId: "menu",
    });
    expect(again.json()).toMatchObject({ documentId: id, version: 1, status: "duplicate" });

    const changed = await ingest(t, s, {
      title: "Menu",
      content: "Soup of the day: pumpkin ginger.",
      externalId: "menu",
    });
    expect(changed.json()).toMatchObject({ documentId: id, version: 2, status: "processing" });
    expect((await settle(t, s, id)).activeVersion).toBe(2);

    const results = await search(t, s, { query: "soup of the day", mode: "hybrid" });
    expect(results.every((r) => r.version === 2)).toBe(true);
    expect(results.map((r) => r.text).join(" ")).toContain("pumpkin");
    expect(results.map((r) => r.text).join(" ")).not.toContain("tomato");
    const versions = (
      await t.app.inject({ url: `/api/documents/${id}/versions`, headers: bearer(s.token) })
    ).json();
    expect(
      versions.items.map((v: { version: number; status: string }) => [v.version, v.status]),
    ).toEqual([
      [2, "active"],
      [1, "superseded"],
    ]);
  });

  it("PUT /api/documents/:id makes a new version; DELETE removes it from search at once", async () => {
    const s = await signup(t.app);
    const id = (
      await ingest(t, s, { title: "Parking", content: "Guests park behind the building for free." })
    ).json().documentId;
    await settle(t, s, id);
    const put = await t.app.inject({
      method: "PUT",
      url: `/api/documents/${id}`,
      headers: bearer(s.token),
      payload: { content: "Guests park in the public garage across the street." },
    });
    expect(put.statusCode, put.body).toBe(202);
    expect(put.json().version).toBe(2);
    await settle(t, s, id);
    expect((await search(t, s, { query: "garage", mode: "text" }))[0]?.documentId).toBe(id);

    const del = await t.app.inject({
      method: "DELETE",
      url: `/api/documents/${id}`,
      headers: bearer(s.token),
    });
    expect(del.statusCode).toBe(204);
    expect(await search(t, s, { query: "garage", mode: "hybrid" })).toEqual([]);
    expectError(
      await t.app.inject({ url: `/api/documents/${id}`, headers: bearer(s.token) }),
      404,
      "not_found",
    );
  });

  it("keeps tenants apart: another tenant's search, status and documents show nothing of them", async () => {
    const a = await signup(t.app);
    const b = await signup(t.app);
    const id = (
      await ingest(t, a, {
        title: "Secret",
        content: "The vault combination is kept by the manager.",
      })
    ).json().documentId;
    await settle(t, a, id);
    expect(await search(t, b, { query: "vault combination", mode: "hybrid" })).toEqual([]);
    expectError(
      await t.app.inject({ url: `/api/documents/${id}/status`, headers: bearer(b.token) }),
      404,
      "not_found",
    );
    const list = await t.app.inject({ url: "/api/documents", headers: bearer(b.token) });
    expect(list.json().items).toEqual([]);
  });

  it("ingests a batch item by item: one bad item does not sink the rest", async () => {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/batch",
      headers: bearer(s.token),
      payload: {
        documents: [
          { title: "One", content: "first document" },
          { title: "", content: "no title" },
          { title: "Three", content: "third document", docType: "exe" },
          { title: "Four", content: "fourth document" },
        ],
      },
    });
    expect(res.statusCode, res.body).toBe(202);
    const body = res.json();
    expect(body).toMatchObject({ accepted: 2, rejected: 2 });
    expect(body.results.map((r: { ok: boolean }) => r.ok)).toEqual([true, false, false, true]);
    expect(body.results[1].error.code).toBe("validation.failed");
  });

  it("answers a batch item by item in its order, items of one identity taking turns", async () => {
    const s = await signup(t.app);
    const documents = [
      ...Array.from({ length: 10 }, (_, i) => ({ title: `Doc ${i}`, content: `content ${i}` })),
      { title: "Ext", content: "first text", externalId: "ext-1" },
      { title: "Same", content: "identical content" },
      { title: "Ext", content: "second text", externalId: "ext-1" },
      { title: "Same again", content: "identical content" },
    ];
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/batch",
      headers: bearer(s.token),
      payload: { documents },
    });
    expect(res.statusCode, res.body).toBe(202);
    const body = res.json();
    expect(body).toMatchObject({ accepted: 14, rejected: 0 });
    const results = body.results as Array<{
      index: number;
      result: { documentId: string; version: number; status: string };
    }>;
    expect(results.map((r) => r.index)).toEqual(documents.map((_, i) => i));
    expect(new Set(results.slice(0, 10).map((r) => r.result.documentId)).size).toBe(10);
    // One externalId: the first item makes version 1, the later one version 2.
    expect(results[12]?.result.documentId).toBe(results[10]?.result.documentId);
    expect([results[10]?.result.version, results[12]?.result.version]).toEqual([1, 2]);
    // The same content without a name: the later item is the earlier one's duplicate.
    expect(results[11]?.result.status).toBe("processing");
    expect(results[13]?.result).toMatchObject({
      documentId: results[11]?.result.documentId,
      status: "duplicate",
    });
  });

  it("accepts a batch's first items up to the document limit and refuses the rest", async () => {
    const s = await signup(t.app);
    const cfg = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxDocuments: 3 },
    });
    expect(cfg.statusCode).toBe(200);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/batch",
      headers: bearer(s.token),
      payload: {
        documents: Array.from({ length: 6 }, (_, i) => ({ title: `d${i}`, content: `text ${i}` })),
      },
    });
    expect(res.statusCode, res.body).toBe(202);
    const body = res.json();
    expect(body.results.map((r: { ok: boolean }) => r.ok)).toEqual([
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
    expect(body.results[3].error.code).toBe("ingestion.max_documents");
  });

  it("refuses a batch larger than the limit as a whole", async () => {
    const s = await signup(t.app);
    const documents = Array.from({ length: 10_000 }, (_, i) => ({ title: `d${i}`, content: "x" }));
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/batch",
      headers: bearer(s.token),
      payload: { documents },
    });
    expectError(res, 400, "validation.failed");
    expect(
      (await t.app.inject({ url: "/api/documents", headers: bearer(s.token) })).json().items,
    ).toEqual([]);
  });

  it("refuses text content declared as a PDF at submit, naming docType", async () => {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { title: "Menu", content: "Tomato soup", docType: "pdf" },
    });
    expect(expectError(res, 400, "validation.failed").error.details.issues[0].path).toBe("docType");
    expect(
      (await t.app.inject({ url: "/api/documents", headers: bearer(s.token) })).json().items,
    ).toEqual([]);
  });

  it("an Idempotency-Key makes a retried request return the first answer", async () => {
    const s = await signup(t.app);
    const payload = { title: "Hours", content: "Open every day from nine to five." };
    const first = await ingest(t, s, payload, { "idempotency-key": "req-1" });
    const second = await ingest(t, s, payload, { "idempotency-key": "req-1" });
    expect(second.statusCode).toBe(202);
    expect(second.json()).toEqual(first.json());
    const other = await ingest(
      t,
      s,
      { ...payload, content: "Different" },
      { "idempotency-key": "req-1" },
    );
    expectError(other, 422, "idempotency.key_reused");
  });

  it("uploads a file as multipart and refuses types the tenant does not allow", async () => {
    const s = await signup(t.app);
    const up = multipart(
      { title: "FAQ" },
      {
        name: "faq.md",
        type: "text/markdown",
        body: Buffer.from("# FAQ\n\nDogs are welcome on the terrace."),
      },
    );
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: { ...bearer(s.token), ...up.headers },
      payload: up.payload,
    });
    expect(res.statusCode, res.body).toBe(202);
    const st = await settle(t, s, res.json().documentId);
    expect(st.status).toBe("completed");
    expect((await search(t, s, { query: "dogs terrace", mode: "text" }))[0]?.title).toBe("FAQ");

    const exe = multipart(
      {},
      { name: "tool.exe", type: "application/octet-stream", body: Buffer.from("MZ") },
    );
    const bad = await t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: { ...bearer(s.token), ...exe.headers },
      payload: exe.payload,
    });
    expectError(bad, 415, "ingestion.unsupported_type");
  });

  it("a file whose bytes do not match its declared type is refused at submit with its code", async () => {
    const s = await signup(t.app);
    const cases = [
      [{ name: "fake.pdf", body: Buffer.from("just text") }, 415, "ingestion.type_mismatch"],
      [{ name: "doc.txt", body: buildPdf(["Hello"]) }, 415, "ingestion.type_mismatch"],
      // Binary without a NUL byte, valid UTF-8: what the control-character rule is for.
      [
        { name: "blob.txt", body: Buffer.from("\u0001\u0002\u0003\u0004abc\u0005\u0006") },
        400,
        "ingestion.invalid_text",
      ],
      [
        { name: "latin1.md", body: Buffer.from([0x63, 0x61, 0x66, 0xe9]) },
        400,
        "ingestion.invalid_text",
      ],
    ] as const;
    for (const [file, status, code] of cases) {
      const up = multipart({}, { ...file, type: "application/octet-stream" });
      const res = await t.app.inject({
        method: "POST",
        url: "/api/ingest/file",
        headers: { ...bearer(s.token), ...up.headers },
        payload: up.payload,
      });
      expectError(res, status, code);
    }
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("a document's JSON content is text: escape and control characters complete, and its words are searchable", async () => {
    const s = await signup(t.app);
    const colored = await ingest(t, s, {
      title: "Terminal",
      content:
        "Colored output: \u001b[31mcrimson\u001b[0m and \u001b[1;32mviridian\u001b[0m, a bell \u0007 and a backspace \b.",
    });
    expect(colored.statusCode, colored.body).toBe(202);
    // Short content that is mostly control characters: still text, since it came as a string.
    const controls = await ingest(t, s, {
      title: "Controls",
      content: "\u0001\u0002\u0003\u0004 ok \u0005\u0006\u0007",
      docType: "md",
    });
    expect(controls.statusCode, controls.body).toBe(202);
    for (const res of [colored, controls]) {
      const st = await settle(t, s, res.json().documentId);
      expect(st, res.body).toMatchObject({ status: "completed", job: { attempts: 1 } });
    }
    const hits = await search(t, s, { query: "crimson viridian", mode: "text" });
    expect(hits[0]).toMatchObject({ documentId: colored.json().documentId, title: "Terminal" });
    expect(hits[0]?.text).toContain("Colored output: crimson and viridian");
  });

  it("a .txt terminal log with colour codes is text, not binary: it completes and is searchable", async () => {
    const s = await signup(t.app);
    const log = Array.from(
      { length: 40 },
      (_, i) => `\u001b[32mPASS\u001b[0m test/case-${i}.ts \u001b[2m(${i} ms)\u001b[22m\n`,
    ).join("");
    const up = multipart(
      {},
      {
        name: "run.txt",
        type: "text/plain",
        body: Buffer.from(`${log}\u001b[31mFAIL\u001b[0m quokka\n`),
      },
    );
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: { ...bearer(s.token), ...up.headers },
      payload: up.payload,
    });
    expect(res.statusCode, res.body).toBe(202);
    expect((await settle(t, s, res.json().documentId)).status).toBe("completed");
    const hits = await search(t, s, { query: "quokka", mode: "text" });
    expect(hits[0]?.text).toContain("FAIL quokka");
  });

  it("fetches a URL, extracts the article and makes it searchable", async () => {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/url",
      headers: bearer(s.token),
      payload: { url: `${siteUrl}/article` },
    });
    expect(res.statusCode, res.body).toBe(202);
    const st = await settle(t, s, res.json().documentId);
    expect(st.status).toBe("completed");
    const hit = (await search(t, s, { query: "Sunday kitchen closes", mode: "text" }))[0];
    expect(hit?.text).toContain("four in the afternoon");
    expect(hit?.text).not.toContain("Home | Menu");
  });

  it("a URL that answers 404 fails the document with the HTTP status, without retrying", async () => {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/url",
      headers: bearer(s.token),
      payload: { url: `${siteUrl}/missing` },
    });
    const st = await settle(t, s, res.json().documentId);
    expect(st).toMatchObject({
      status: "failed",
      error: { code: "ingestion.url_http_error" },
      job: { attempts: 1 },
    });
  });

  it("builds the ANN index in a background job once a tenant passes the threshold, and search keeps working", async () => {
    const s = await signup(t.app);
    await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { chunkSize: 100, chunkOverlap: 0, chunkStrategy: "fixed" },
    });
    const words = [
      "harbour",
      "lantern",
      "copper",
      "meadow",
      "violet",
      "granite",
      "saffron",
      "orchard",
      "falcon",
      "quarry",
    ];
    const content = Array.from({ length: 6000 }, (_, i) => `${words[(i * 7) % 10]}${i % 97}`).join(
      " ",
    );
    // The index build is asked for from inside the vector store: its job's id is seen only
    // where it is enqueued.
    const enqueue = vi.spyOn(t.ctx.queue, "enqueue");
    let docId: string;
    let optimizeJobs: string[];
    try {
      docId = (await ingest(t, s, { title: "Long catalogue", content })).json().documentId;
      expect((await settle(t, s, docId)).status).toBe("completed");
      const enqueued = await Promise.all(
        enqueue.mock.calls.flatMap(([type, payload], i) =>
          type === "index.optimize" && payload.tenantId === s.tenantId
            ? [enqueue.mock.results[i]?.value as Promise<{ id: string }>]
            : [],
        ),
      );
      optimizeJobs = enqueued.map((job) => job.id);
    } finally {
      enqueue.mockRestore();
    }
    expect(optimizeJobs.length, "index.optimize jobs enqueued").toBeGreaterThan(0);
    const deadline = performance.now() + WAIT_MS;
    let statuses: Array<string | undefined> = [];
    while (performance.now() < deadline) {
      statuses = await Promise.all(
        optimizeJobs.map(async (jobId) => (await t.ctx.queue.get(s.tenantId, jobId))?.status),
      );
      if (statuses.includes("completed")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(statuses).toContain("completed");
    const results = await search(t, s, { query: "saffron42 lantern", mode: "vector", limit: 3 });
    expect(results[0]?.documentId).toBe(docId);
  });

  it("enforces the tenant's maximum number of documents", async () => {
    const s = await signup(t.app);
    const cfg = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxDocuments: 1 },
    });
    expect(cfg.statusCode).toBe(200);
    expect((await ingest(t, s, { title: "a", content: "first" })).statusCode).toBe(202);
    expectError(
      await ingest(t, s, { title: "b", content: "second" }),
      422,
      "ingestion.max_documents",
    );
  });
});

describe.each(backends)("URL ingestion safety ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend);
  });
  afterAll(() => t.close());

  it("refuses loopback and private targets unless ALLOW_PRIVATE_URLS is set", async () => {
    const s = await signup(t.app);
    for (const url of [
      "http://127.0.0.1:1/x",
      "http://10.0.0.5/",
      "http://169.254.169.254/latest/meta-data",
      "http://[::1]/",
    ]) {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/ingest/url",
        headers: bearer(s.token),
        payload: { url },
      });
      expectError(res, 422, "ingestion.url_forbidden");
    }
    const ftp = await t.app.inject({
      method: "POST",
      url: "/api/ingest/url",
      headers: bearer(s.token),
      payload: { url: "ftp://example.com/x" },
    });
    expectError(ftp, 400, "validation.failed");
  });
});
