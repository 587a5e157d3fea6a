import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type AppContext, createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { generateSigningKeyPem } from "../../src/platform/crypto/signing.js";
import { bearer, dropQueueKeys, GENEROUS_RATE_LIMITS, signup } from "../fixtures/app.js";
import { type S3Server, startS3Server } from "../fixtures/blobs.js";
import { TEST_DATABASE_URL, TEST_REDIS_URL } from "../fixtures/db.js";
import { presignedUpload, search, settle, uploadFile } from "../fixtures/ingest.js";
import { buildPdf } from "../fixtures/pdf.js";

const rand = () => randomBytes(5).toString("hex");

/**
 * Server mode as it is deployed: `tenantrag serve --no-worker` and `tenantrag worker` are two
 * contexts that share nothing but PostgreSQL, Redis, the S3 bucket and LANCE_URI. Each has a
 * DATA_DIR of its own, so nothing can pass between them through local files by accident.
 */
describe.skipIf(!TEST_DATABASE_URL || !TEST_REDIS_URL)("server mode: API and worker apart", () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tenantrag-server-"));
    dirs.push(dir);
    return dir;
  };
  const database = `tr_srv_${rand()}`;
  const blobPrefix = `server-${rand()}`;
  const queuePrefix = `tenantrag-test-${rand()}`;
  let admin: pg.Client;
  let s3: S3Server;
  let api: AppContext;
  let worker: AppContext;
  let app: FastifyInstance;
  let lanceDir: string;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`create database ${database}`);
    const url = new URL(TEST_DATABASE_URL as string);
    url.pathname = `/${database}`;
    s3 = await startS3Server();
    lanceDir = tempDir();
    const shared = {
      DATABASE_URL: url.toString(),
      REDIS_URL: TEST_REDIS_URL as string,
      QUEUE_PREFIX: queuePrefix,
      LANCE_URI: lanceDir,
      JWT_SECRET: randomBytes(32).toString("hex"),
      MASTER_KEY: randomBytes(32).toString("hex"),
      AUDIT_SIGNING_KEY: generateSigningKeyPem(),
      JOB_BACKOFF_MS: "50",
      LOG_LEVEL: "silent",
      ...s3.env(blobPrefix),
    };
    const logger = pino({ level: "silent" });
    // The API migrates (as `tenantrag migrate` would); the worker refuses an unmigrated database.
    api = await createContext(loadConfig({ ...shared, DATA_DIR: tempDir() }), {
      logger,
      migrations: "auto",
      tenantRateLimits: GENEROUS_RATE_LIMITS,
    });
    worker = await createContext(loadConfig({ ...shared, DATA_DIR: tempDir() }), { logger });
    worker.startWorkers();
    app = await buildApp(api);
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
    await api?.close();
    await worker?.close();
    await dropQueueKeys(TEST_REDIS_URL as string, queuePrefix);
    await s3?.dispose();
    await admin?.query(`drop database if exists ${database} with (force)`);
    await admin?.end();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("the worker process ingests a document, a file and a presigned upload; their blobs live in the bucket; DELETE removes blobs and chunks", async () => {
    const s = await signup(app);
    const doc = await app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { title: "Opening hours", content: "The bakery opens at six on weekdays." },
    });
    expect(doc.statusCode, doc.body).toBe(202);
    const file = await uploadFile(app, s.token, {
      name: "dogs.md",
      type: "text/markdown",
      body: Buffer.from("# Dogs\n\nWell-behaved dogs are welcome on the terrace."),
    });
    expect(file.statusCode, file.body).toBe(202);
    const upload = await presignedUpload(app, s.token, {
      name: "heating.pdf",
      body: buildPdf(["The sauna heater warms up in forty minutes."]),
    });
    expect(upload.statusCode, upload.body).toBe(202);

    const cases = [
      { id: doc.json().documentId as string, query: "bakery weekdays" },
      { id: file.json().documentId as string, query: "dogs terrace" },
      { id: upload.json().documentId as string, query: "sauna heater" },
    ];
    for (const c of cases) {
      expect(await settle(app, s.token, c.id), c.query).toMatchObject({
        status: "completed",
        activeVersion: 1,
        job: { status: "completed" },
      });
      const hits = await search(app, s.token, { query: c.query, mode: "hybrid" });
      expect(hits[0]?.documentId, c.query).toBe(c.id);
    }
    const tenantPrefix = `${blobPrefix}/${s.tenantId}/`;
    expect((await s3.keys(tenantPrefix)).sort()).toEqual(
      cases.map((c) => `${tenantPrefix}documents/${c.id}/v1`).sort(),
    );
    // The local blob directories stayed empty: the bytes went through the bucket.
    for (const ctx of [api, worker]) {
      expect(readdirSync(ctx.config.dataDir).filter((f) => f === "blobs")).toEqual([]);
    }

    for (const c of cases) {
      const del = await app.inject({
        method: "DELETE",
        url: `/api/documents/${c.id}`,
        headers: bearer(s.token),
      });
      expect(del.statusCode, del.body).toBe(204);
    }
    expect(await s3.keys(tenantPrefix)).toEqual([]);
    for (const c of cases) {
      expect(await search(app, s.token, { query: c.query, mode: "hybrid" }), c.query).toEqual([]);
    }
    expect(await api.vectors.count(s.tenantId)).toBe(0);
  });
});
