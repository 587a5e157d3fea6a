import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { type S3Server, startS3Server } from "../fixtures/blobs.js";
import { backends } from "../fixtures/db.js";
import { documentCount, presignedUpload, search, settle } from "../fixtures/ingest.js";
import { buildPdf } from "../fixtures/pdf.js";

const rand = () => randomBytes(5).toString("hex");

function presign(t: TestApp, s: SignedUp, query: Record<string, string>) {
  return t.app.inject({ url: "/api/ingest/presigned-url", headers: bearer(s.token), query });
}

function complete(t: TestApp, s: SignedUp, id: string) {
  return t.app.inject({
    method: "POST",
    url: `/api/ingest/uploads/${id}/complete`,
    headers: bearer(s.token),
  });
}

async function put(ticket: { uploadUrl: string; headers: Record<string, string> }, body: Buffer) {
  const res = await fetch(ticket.uploadUrl, { method: "PUT", headers: ticket.headers, body });
  expect(res.status).toBe(200);
}

describe.each(backends)("direct uploads through presigned URLs ($name)", (backend) => {
  let s3: S3Server;
  let t: TestApp;
  const prefix = `uploads-${rand()}`;

  beforeAll(async () => {
    s3 = await startS3Server();
    t = await startApp(backend, { ...s3.env(prefix), JOB_BACKOFF_MS: "20" }, { workers: true });
  });
  afterAll(async () => {
    await t?.close();
    await s3?.dispose();
  });

  it("signs a URL a plain PUT uploads to; completing ingests the file and removes the staging object", async () => {
    const s = await signup(t.app);
    const pdf = buildPdf(["The terrace heaters run from October to April."]);
    const res = await presign(t, s, { filename: "terrace.pdf", size: String(pdf.length) });
    expect(res.statusCode, res.body).toBe(200);
    const ticket = res.json();
    expect(ticket).toMatchObject({
      method: "PUT",
      headers: { "content-type": "application/pdf" },
      uploadId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(Date.parse(ticket.expiresAt)).toBeGreaterThan(Date.now());
    await put(ticket, pdf);
    expect(await s3.keys(`${prefix}/${s.tenantId}/`)).toEqual([
      `${prefix}/${s.tenantId}/uploads/${ticket.uploadId}`,
    ]);

    const done = await complete(t, s, ticket.uploadId);
    expect(done.statusCode, done.body).toBe(202);
    const { documentId } = done.json();
    expect(await settle(t.app, s.token, documentId)).toMatchObject({ status: "completed" });
    const hits = await search(t.app, s.token, { query: "terrace heaters", mode: "text" });
    expect(hits[0]).toMatchObject({ documentId, title: "terrace.pdf" });
    expect(await s3.keys(`${prefix}/${s.tenantId}/`)).toEqual([
      `${prefix}/${s.tenantId}/documents/${documentId}/v1`,
    ]);

    // A retried completion gets the first answer, not a second document.
    const again = await complete(t, s, ticket.uploadId);
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual(done.json());
    expect(await documentCount(t.app, s.token)).toBe(1);
  });

  it("refuses what the tenant's settings do not allow before signing anything", async () => {
    const s = await signup(t.app);
    await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxFileSizeMb: 1, allowedDocumentTypes: ["txt", "md"] },
    });
    const big = String(1024 * 1024 + 1);
    expectError(
      await presign(t, s, { filename: "a.txt", size: big }),
      413,
      "ingestion.file_too_large",
    );
    expectError(
      await presign(t, s, { filename: "a.pdf", size: "10" }),
      422,
      "ingestion.type_not_allowed",
    );
    expectError(
      await presign(t, s, { filename: "a.exe", size: "10" }),
      415,
      "ingestion.unsupported_type",
    );
    expectError(
      await presign(t, s, { filename: "a.txt", size: "0" }),
      400,
      "ingestion.empty_content",
    );
    expectError(await presign(t, s, { filename: "a.txt" }), 400, "validation.failed");
    expectError(await presign(t, s, { filename: "a.txt", size: "-1" }), 400, "validation.failed");
    expectError(
      await presign(t, s, { filename: "a.txt", size: "10", contentType: "text/plain\r\n; x=y" }),
      400,
      "validation.failed",
    );
    expect(await s3.keys(`${prefix}/${s.tenantId}/`)).toEqual([]);
  });

  it("refuses to complete before the file is there, or when it is not the file announced", async () => {
    const s = await signup(t.app);
    const text = Buffer.from("Late checkout is possible until one o'clock on request.");
    const ticket = (
      await presign(t, s, { filename: "stay.txt", size: String(text.length) })
    ).json();
    expectError(await complete(t, s, ticket.uploadId), 409, "ingestion.upload_missing");

    await put(ticket, Buffer.concat([text, Buffer.from(" And more than announced.")]));
    const mismatch = expectError(
      await complete(t, s, ticket.uploadId),
      422,
      "ingestion.upload_size_mismatch",
    );
    expect(mismatch.error.details).toMatchObject({ announcedBytes: text.length });
    expect(await documentCount(t.app, s.token)).toBe(0);

    // The upload stays pending: the right file, sent again, completes it.
    await put(ticket, text);
    const done = await complete(t, s, ticket.uploadId);
    expect(done.statusCode, done.body).toBe(202);
    expect((await settle(t.app, s.token, done.json().documentId)).status).toBe("completed");
  });

  it("refuses to complete an upload whose bytes are not of the type its name declares, and keeps it pending", async () => {
    const s = await signup(t.app);
    const binary = Buffer.from("\u0001\u0002\u0003\u0004abc\u0005\u0006");
    const ticket = (
      await presign(t, s, { filename: "blob.txt", size: String(binary.length) })
    ).json();
    await put(ticket, binary);
    expectError(await complete(t, s, ticket.uploadId), 400, "ingestion.invalid_text");
    expect(await documentCount(t.app, s.token)).toBe(0);

    const notPdf = Buffer.from("just text");
    const pdfTicket = (
      await presign(t, s, { filename: "fake.pdf", size: String(notPdf.length) })
    ).json();
    await put(pdfTicket, notPdf);
    expectError(await complete(t, s, pdfTicket.uploadId), 415, "ingestion.type_mismatch");

    // Pending still: the right file (of the announced size), sent again, completes it.
    await put(ticket, Buffer.from("Hi there!"));
    const done = await complete(t, s, ticket.uploadId);
    expect(done.statusCode, done.body).toBe(202);
  });

  it("refuses an uploaded object over the tenant's size limit without ingesting it", async () => {
    const s = await signup(t.app);
    await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxFileSizeMb: 1 },
    });
    const ticket = (await presign(t, s, { filename: "small.txt", size: "100" })).json();
    // The signature binds the key and type, not the length: a client can send more than it said.
    await put(ticket, Buffer.alloc(2 * 1024 * 1024, "a"));
    expectError(await complete(t, s, ticket.uploadId), 413, "ingestion.file_too_large");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("sweeps an upload never completed an hour after its URL expired, object and record", async () => {
    const s = await signup(t.app);
    const body = Buffer.from("# Draft\n\nNever finished.");
    const ticket = (
      await presign(t, s, { filename: "draft.md", size: String(body.length) })
    ).json();
    const kept = (await presign(t, s, { filename: "kept.md", size: String(body.length) })).json();
    await put(ticket, body);
    await put(kept, body);
    await t.ctx.db.query(
      "update uploads set expires_at = now() - interval '61 minutes' where id = $1",
      [ticket.uploadId],
    );
    expect((await t.ctx.recovery.runOnce(120_000)).uploads).toBe(1);
    expect(await s3.keys(`${prefix}/${s.tenantId}/`)).toEqual([
      `${prefix}/${s.tenantId}/uploads/${kept.uploadId}`,
    ]);
    expectError(await complete(t, s, ticket.uploadId), 404, "not_found");
    // The upload still in its time completes as usual.
    expect((await complete(t, s, kept.uploadId)).statusCode).toBe(202);
    expect((await t.ctx.recovery.runOnce(120_000)).uploads).toBe(0);
  });

  it("answers 404 for an upload that does not exist", async () => {
    const s = await signup(t.app);
    const res = await complete(t, s, "5f0c3c1e-8d4b-4a8e-9c51-1b2f3a4d5e6f");
    expectError(res, 404, "not_found");
    expectError(await complete(t, s, "not-a-uuid"), 400, "validation.failed");
  });

  it("takes the title the client gives, and the type from the file name", async () => {
    const s = await signup(t.app);
    const md = Buffer.from("# Parking\n\nBicycles go in the courtyard.");
    const done = await presignedUpload(t.app, s.token, {
      name: "parking.md",
      body: md,
      title: "Parking rules",
    });
    expect(done.statusCode, done.body).toBe(202);
    await settle(t.app, s.token, done.json().documentId);
    const hits = await search(t.app, s.token, { query: "bicycles courtyard", mode: "text" });
    expect(hits[0]?.title).toBe("Parking rules");
  });
});

describe.each(backends)("direct uploads without object storage ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend);
  });
  afterAll(() => t?.close());

  it("answers 409 saying that direct uploads need BLOB_URL, and records nothing", async () => {
    const s = await signup(t.app);
    const res = await presign(t, s, { filename: "a.pdf", size: "1000" });
    const body = expectError(res, 409, "ingestion.presign_unavailable");
    expect(body.error.message).toContain("BLOB_URL");
    const rows = await t.ctx.db.query("select 1 from uploads where tenant_id = $1", [s.tenantId]);
    expect(rows).toEqual([]);
  });
});
