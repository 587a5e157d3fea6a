import { once } from "node:events";
import { type IncomingMessage, request } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { documentCount, jsonBody, multipart } from "../fixtures/ingest.js";

const MB = 1024 * 1024;
const CRLF = "\r\n";

/** A multipart body built part by part, for forms the `multipart` fixture cannot express. */
function form(
  parts: Array<{ name: string; value?: string; file?: { name: string; body: Buffer } }>,
) {
  const boundary = `----tenantrag${Math.random().toString(16).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = p.file
      ? `form-data; name="${p.name}"; filename="${p.file.name}"${CRLF}Content-Type: text/plain`
      : `form-data; name="${p.name}"`;
    chunks.push(
      Buffer.from(`--${boundary}${CRLF}Content-Disposition: ${disposition}${CRLF}${CRLF}`),
    );
    chunks.push(p.file ? p.file.body : Buffer.from(p.value ?? ""));
    chunks.push(Buffer.from(CRLF));
  }
  chunks.push(Buffer.from(`--${boundary}--${CRLF}`));
  return {
    payload: Buffer.concat(chunks),
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
  };
}

/**
 * Sends the body as a stream: no Content-Length, as a chunked upload arrives. With `pauseAt`,
 * one chunk ends exactly there and the next comes a moment later, as a network may deliver it.
 */
function chunked(body: Buffer, pauseAt?: number) {
  return Readable.from(
    (async function* () {
      const cuts = [...(pauseAt === undefined ? [] : [pauseAt]), body.length];
      let from = 0;
      for (const cut of cuts) {
        for (let i = from; i < cut; i += 64 * 1024)
          yield body.subarray(i, Math.min(i + 64 * 1024, cut));
        from = cut;
        await new Promise((r) => setTimeout(r, 50));
      }
    })(),
  );
}

describe.each(backends)("POST /api/ingest/file limits ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend);
  });
  afterAll(() => t.close());

  const send = (
    s: SignedUp,
    body: { payload: Buffer; headers: Record<string, string> },
    opts = { stream: true },
  ) =>
    t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: { ...bearer(s.token), ...body.headers },
      payload: opts.stream ? chunked(body.payload) : body.payload,
    });

  async function tenantWithLimit(mb: number) {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxFileSizeMb: mb },
    });
    expect(res.statusCode, res.body).toBe(200);
    return s;
  }

  const text = (size: number) => ({
    name: "notes.txt",
    type: "text/plain",
    body: Buffer.alloc(size, "a"),
  });

  it("a chunked body over the limit is refused with 413, even when a chunk ends exactly at the limit; exactly the limit is accepted whole", async () => {
    const s = await tenantWithLimit(1);
    expectError(await send(s, multipart({}, text(MB + 1))), 413, "ingestion.file_too_large");
    const over = multipart({}, text(2 * MB));
    const fileStart = over.payload.indexOf("\r\n\r\n") + 4;
    const atLimit = await t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: { ...bearer(s.token), ...over.headers },
      payload: chunked(over.payload, fileStart + MB),
    });
    expectError(atLimit, 413, "ingestion.file_too_large");
    expect(await documentCount(t.app, s.token)).toBe(0);
    const ok = await send(s, multipart({}, text(MB)));
    expect(ok.statusCode, ok.body).toBe(202);
    const doc = await t.app.inject({
      url: `/api/documents/${ok.json().documentId}/versions`,
      headers: bearer(s.token),
    });
    expect(doc.json().items).toHaveLength(1);
    const blobs = t.ctx.blobs;
    const stored = await blobs.get(`${s.tenantId}/documents/${ok.json().documentId}/v1`);
    expect(stored?.length).toBe(MB);
  });

  it("a 30 MB file sent chunked over a real connection is refused with 413, never cut to the limit", async () => {
    const s = await signup(t.app); // the plan's default limit: 25 MB
    if (!t.app.server.listening) await t.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = t.app.server.address() as AddressInfo;
    const body = multipart({}, text(30 * MB));
    const req = request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/api/ingest/file",
      headers: { ...bearer(s.token), ...body.headers }, // no Content-Length: chunked
    });
    req.on("error", () => {}); // the server may close on us once it has answered: expected
    const answered = once(req, "response") as Promise<[IncomingMessage]>;
    for (let i = 0; i < body.payload.length; i += MB) {
      if (!req.write(body.payload.subarray(i, i + MB))) {
        const drained = await Promise.race([
          once(req, "drain").then(() => true),
          answered.then(() => false),
        ]);
        if (!drained) break;
      }
    }
    req.end();
    const [res] = await answered;
    const body413 = await jsonBody(res);
    req.destroy();
    expect(res.statusCode).toBe(413);
    expect(body413.error.code).toBe("ingestion.file_too_large");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("a second file is refused with 413 ingestion.too_many_files", async () => {
    const s = await signup(t.app);
    const body = form([
      { name: "file", file: { name: "a.txt", body: Buffer.from("first") } },
      { name: "file2", file: { name: "b.txt", body: Buffer.from("second") } },
    ]);
    expectError(await send(s, body), 413, "ingestion.too_many_files");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("unknown, repeated and surplus fields are refused with 400 naming the field", async () => {
    const s = await signup(t.app);
    const file = { name: "file", file: { name: "a.txt", body: Buffer.from("hello") } };
    const path = async (parts: Parameters<typeof form>[0]) =>
      expectError(await send(s, form(parts)), 400, "validation.failed").error.details.issues[0]
        .path;
    expect(await path([{ name: "colour", value: "red" }, file])).toBe("colour");
    expect(await path([{ name: "title", value: "A" }, { name: "title", value: "B" }, file])).toBe(
      "title",
    );
    const many = Array.from({ length: 8 }, (_, i) => ({ name: `f${i}`, value: "x" }));
    expectError(await send(s, form([...many, file])), 400, "validation.failed");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("an over-long title or field is refused with 400, not cut", async () => {
    const s = await signup(t.app);
    const file = { name: "file", file: { name: "a.txt", body: Buffer.from("hello") } };
    const long = await send(s, form([{ name: "title", value: "t".repeat(501) }, file]));
    expect(expectError(long, 400, "validation.failed").error.details.issues[0].path).toBe("title");
    const huge = await send(s, form([{ name: "metadata", value: "m".repeat(200_000) }, file]));
    expect(expectError(huge, 400, "validation.failed").error.details.issues[0].path).toBe(
      "metadata",
    );
    const name = await send(
      s,
      form([{ name: "file", file: { name: `${"n".repeat(600)}.txt`, body: Buffer.from("hi") } }]),
    );
    expectError(name, 400, "validation.failed");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("multipart without a boundary, or cut short, is 400 request.malformed_multipart", async () => {
    const s = await signup(t.app);
    const noBoundary = await t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: { ...bearer(s.token), "content-type": "multipart/form-data" },
      payload: "--x\r\n",
    });
    expectError(noBoundary, 400, "request.malformed_multipart");
    const whole = multipart({}, text(1000));
    const cut = { ...whole, payload: whole.payload.subarray(0, 300) };
    expectError(await send(s, cut, { stream: false }), 400, "request.malformed_multipart");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("metadata with __proto__ or constructor.prototype is refused, as the JSON routes refuse it", async () => {
    const s = await signup(t.app);
    const file = { name: "file", file: { name: "a.txt", body: Buffer.from("hello") } };
    for (const value of [
      '{"__proto__":{"x":"1"},"a":"b"}',
      '{"a":"b","constructor":{"prototype":{"x":"1"}}}',
    ]) {
      const res = await send(s, form([{ name: "metadata", value }, file]));
      const body = expectError(res, 400, "validation.failed");
      expect(body.error.details.issues[0].path).toBe("metadata");
    }
    expect(await documentCount(t.app, s.token)).toBe(0);
    // A key merely named constructor is fine: only its prototype poisons.
    const ok = await send(s, form([{ name: "metadata", value: '{"constructor":"Ada"}' }, file]));
    expect(ok.statusCode, ok.body).toBe(202);
  });

  it("a text or Markdown file with a NUL byte is refused at submit with 400", async () => {
    const s = await signup(t.app);
    for (const name of ["a.txt", "a.md", "a.html"]) {
      const body = multipart({}, { name, type: "text/plain", body: Buffer.from("one\u0000two") });
      expectError(await send(s, body), 400, "ingestion.invalid_text");
    }
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  // Lone surrogates cannot arrive here: a form is bytes, and bytes that are not UTF-8 decode to
  // U+FFFD.
  it("form fields and the file name follow the API's text rule: NUL (and in a title control characters) is 400", async () => {
    const s = await signup(t.app);
    const file = { name: "a.txt", type: "text/plain", body: Buffer.from("hello") };
    for (const [fields, part, path] of [
      [{ docType: "t\u0000xt" }, file, "docType"],
      [{ title: "a\u0007b" }, file, "title"],
      [{}, { ...file, name: "a\u0000.txt" }, "file"],
    ] as const) {
      const body = expectError(await send(s, multipart(fields, part)), 400, "validation.failed");
      expect(body.error.details.issues[0].path).toBe(path);
    }
    expect(await documentCount(t.app, s.token)).toBe(0);
  });
});
