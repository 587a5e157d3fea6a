import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";
import {
  documentCount,
  jsonBody,
  multipart,
  search,
  settle,
  uploadFile,
} from "../fixtures/ingest.js";
import { buildPdf } from "../fixtures/pdf.js";

const OPENAI_KEY = `sk-fake-${randomBytes(8).toString("hex")}`;
/** A tenant's own provider key, which the fake can rate-limit alone. */
const TENANT_KEY = `sk-own-${randomBytes(8).toString("hex")}`;
const MB = 1024 * 1024;

async function ingestText(t: TestApp, s: SignedUp, title: string, content: string) {
  const res = await t.app.inject({
    method: "POST",
    url: "/api/ingest/document",
    headers: bearer(s.token),
    payload: { title, content },
  });
  expect(res.statusCode, res.body).toBe(202);
  return res.json().documentId as string;
}

describe.each(backends)("ingestion faults ($name)", (backend) => {
  let t: TestApp;
  let fake: FakeOpenAI;
  /** Accepts connections and never answers them. */
  let silent: Server;
  let silentUrl: string;

  beforeAll(async () => {
    fake = await startFakeOpenAI({ keys: [OPENAI_KEY, TENANT_KEY] });
    silent = createServer(() => {});
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/slow`;
    t = await startApp(
      backend,
      {
        ALLOW_PRIVATE_URLS: "true",
        JOB_BACKOFF_MS: "20",
        FETCH_TIMEOUT_MS: "500",
        OPENAI_BASE_URL: fake.url,
        OPENAI_API_KEY: OPENAI_KEY,
        // A tenant's jobs take one of the two worker slots at most: another tenant keeps one.
        JOB_TENANT_CONCURRENCY: "1",
      },
      { workers: true },
    );
  });
  afterAll(async () => {
    await t?.close();
    silent?.closeAllConnections();
    await new Promise((r) => silent?.close(r));
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  /** A tenant whose embeddings come from the fake OpenAI server (with its own key, if given). */
  async function openaiTenant(providerApiKey?: string): Promise<SignedUp> {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { embeddingProvider: "openai", ...(providerApiKey ? { providerApiKey } : {}) },
    });
    expect(res.statusCode, res.body).toBe(200);
    return s;
  }

  it.each([
    [
      "a corrupt",
      buildPdf(["The bistro opens at nine."]).subarray(0, 200),
      "ingestion.pdf_corrupt",
    ],
    ["an encrypted", buildPdf(["The safe code"], { encrypt: true }), "ingestion.pdf_encrypted"],
  ])(
    "%s PDF fails once, with its code, and the worker goes on with the next document",
    async (_label, pdf, code) => {
      const s = await signup(t.app);
      const res = await uploadFile(t.app, s.token, {
        name: "x.pdf",
        type: "application/pdf",
        body: pdf,
      });
      expect(res.statusCode, res.body).toBe(202);
      expect(await settle(t.app, s.token, res.json().documentId)).toMatchObject({
        status: "failed",
        error: { code },
        job: { status: "failed", attempts: 1 },
      });
      const next = await ingestText(t, s, "Hours", "Breakfast is served until eleven.");
      expect((await settle(t.app, s.token, next)).status).toBe("completed");
    },
  );

  it("refuses an empty file with 400 and creates no document", async () => {
    const s = await signup(t.app);
    const res = await uploadFile(t.app, s.token, {
      name: "empty.txt",
      type: "text/plain",
      body: Buffer.alloc(0),
    });
    expectError(res, 400, "ingestion.empty_content");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("refuses a file over the tenant's size limit with 413 and creates no document", async () => {
    const s = await signup(t.app);
    const cfg = await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxFileSizeMb: 1 },
    });
    expect(cfg.statusCode, cfg.body).toBe(200);
    const big = { name: "big.txt", type: "text/plain", body: Buffer.alloc(2 * MB, "a") };
    const res = await uploadFile(t.app, s.token, big);
    expectError(res, 413, "ingestion.file_too_large");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("answers 413 to an announced oversize upload before the client has sent the body", async () => {
    const s = await signup(t.app);
    await t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { maxFileSizeMb: 1 },
    });
    if (!t.app.server.listening) await t.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = t.app.server.address() as AddressInfo;
    const body = multipart(
      {},
      { name: "big.txt", type: "text/plain", body: Buffer.alloc(2 * MB, "a") },
    );
    const req = request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/api/ingest/file",
      headers: { ...bearer(s.token), ...body.headers, "content-length": body.payload.length },
    });
    const socketErrors: Error[] = [];
    req.on("error", (err) => socketErrors.push(err)); // the server may close on us: expected
    // Only the first 64 KB leave; the rest is never sent.
    req.write(body.payload.subarray(0, 64 * 1024));
    const [res] = (await Promise.race([
      once(req, "response"),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer in 5 s")), 5000)),
    ])) as [import("node:http").IncomingMessage];
    const body413 = await jsonBody(res);
    req.destroy();
    expect(res.statusCode).toBe(413);
    expect(body413.error.code).toBe("ingestion.file_too_large");
    expect(await documentCount(t.app, s.token)).toBe(0);
  });

  it("a URL that never answers fails with url_timeout after every attempt; the job is dead", async () => {
    const s = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/url",
      headers: bearer(s.token),
      payload: { url: silentUrl },
    });
    expect(res.statusCode, res.body).toBe(202);
    expect(await settle(t.app, s.token, res.json().documentId)).toMatchObject({
      status: "failed",
      error: { code: "ingestion.url_timeout" },
      job: { status: "dead", attempts: 3, maxAttempts: 3 },
    });
  });

  it("an embedding provider that fails with 500 forever fails the document; the job is dead after 3 attempts", async () => {
    const s = await openaiTenant();
    // Retry-After-ms keeps the embedder's own retries quick; each attempt still makes them all.
    fake.failNext({ status: 500, retryAfterMs: "1" });
    const id = await ingestText(t, s, "Menu", "Soup of the day: tomato.");
    expect(await settle(t.app, s.token, id)).toMatchObject({
      status: "failed",
      error: { code: "ingestion.embedding_failed" },
      job: { status: "dead", attempts: 3 },
    });
    const callers = new Set(fake.requests.map((r) => r.apiKey));
    expect(callers).toEqual(new Set([OPENAI_KEY]));
    expect(fake.requests.length).toBeGreaterThanOrEqual(3);
  });

  it("a 429 for one tenant's key slows that tenant alone: its documents complete, after the Retry-After, and another tenant's are not held", async () => {
    const a = await openaiTenant(TENANT_KEY);
    const b = await openaiTenant();
    // A's provider refuses its first two requests, asking for a second each time.
    fake.failNextFor(TENANT_KEY, { status: 429, retryAfter: "1" }, 2);
    const order: string[] = [];
    const follow = (who: string, s: SignedUp, id: string) =>
      settle(t.app, s.token, id).then((st) => {
        order.push(who);
        return st;
      });
    const aIds = [];
    for (const n of [1, 2, 3]) aIds.push(await ingestText(t, a, `A ${n}`, `Alpha fact ${n}.`));
    await expect.poll(() => fake.requests.some((r) => r.apiKey === TENANT_KEY)).toBe(true);
    const bIds = [];
    for (const n of [1, 2]) bIds.push(await ingestText(t, b, `B ${n}`, `Bravo fact ${n}.`));
    const settled = await Promise.all([
      ...aIds.map((id) => follow("a", a, id)),
      ...bIds.map((id) => follow("b", b, id)),
    ]);
    // Nothing failed, and no job needed a second attempt: the embedder waited the 429s out.
    for (const st of settled) {
      expect(st).toMatchObject({ status: "completed", job: { status: "completed", attempts: 1 } });
    }
    // B's documents were done while A's key was paused.
    expect(order.slice(0, 2)).toEqual(["b", "b"]);
    const ofA = fake.requests.filter((r) => r.apiKey === TENANT_KEY).map((r) => r.at);
    const [first, second, third] = ofA as [number, number, number];
    // Each retry on A's key came no sooner than the second it was told to wait.
    expect(second - first).toBeGreaterThanOrEqual(990);
    expect(third - second).toBeGreaterThanOrEqual(990);
  });

  it("an embedding provider that answers 503 twice, then works, completes the document", async () => {
    const s = await openaiTenant();
    fake.failNext({ status: 503, retryAfterMs: "1" }, 2);
    const id = await ingestText(t, s, "Wine list", "The house red is a Rioja from 2019.");
    expect(await settle(t.app, s.token, id)).toMatchObject({
      status: "completed",
      job: { status: "completed" },
    });
    // Both failures were really served, and the third request got the vectors.
    expect(fake.requests.filter((r) => r.path.startsWith("/v1/embeddings")).length).toBe(3);
    const hits = await search(t.app, s.token, { query: "house red Rioja", mode: "vector" });
    expect(hits[0]?.documentId).toBe(id);
  });
});
