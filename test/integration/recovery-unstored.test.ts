import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngestionService } from "../../src/modules/ingestion/index.js";
import { bearer, signup, startApp, type TestApp } from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { claimOfDeadRequest, restartOn } from "../fixtures/crash.js";
import { backends } from "../fixtures/db.js";
import { documentCount, search, settle } from "../fixtures/ingest.js";

// A process that dies between recording a document version and storing its bytes: the request
// was never answered (the 202 comes after the bytes are stored), so crash repair discards the
// version (and the document, if it was its only one) for the client's retry to make it anew,
// rather than failing it and leaving a document the client never had beside the retry's.

describe.each(backends)(
  "crash repair of versions whose content was never stored ($name)",
  (backend) => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(backend, { JOB_BACKOFF_MS: "20" });
    });
    afterAll(() => t?.close());

    /**
     * Submits as a process would that dies while writing the bytes: the version is recorded, the
     * blob write never ends. `release` lets the write go on (a slow request, not a dead one).
     */
    async function strand(
      tenantId: string,
      body: { title: string; content: string; externalId?: string },
      app = t,
    ) {
      let atPut!: (key: string) => void;
      const reached = new Promise<string>((resolve) => {
        atPut = resolve;
      });
      let release!: () => void;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      const dying = createIngestionService({
        db: app.ctx.db,
        tenants: app.ctx.tenants,
        quotas: app.ctx.quotas,
        audit: app.ctx.audit,
        events: app.ctx.events,
        allowPrivateUrls: app.ctx.config.allowPrivateUrls,
        queue: app.ctx.queue,
        blobs: {
          ...app.ctx.blobs,
          put: async (key, bytes, opts) => {
            atPut(key);
            await released;
            return app.ctx.blobs.put(key, bytes, opts);
          },
        },
      });
      const ctx = apiKeyContext(tenantId);
      const submitted = dying.submit(
        ctx,
        { title: body.title, docType: "txt", externalId: body.externalId ?? null },
        { kind: "bytes", bytes: Buffer.from(body.content), format: "txt" },
      );
      submitted.catch(() => {});
      const blobKey = await reached;
      const documentId = blobKey.split("/")[2] as string;
      return { documentId, blobKey, submitted, release };
    }

    async function backdate(documentId: string) {
      await t.ctx.db.query(
        "update document_versions set created_at = now() - interval '10 minutes' where document_id = $1",
        [documentId],
      );
    }

    const versionsOf = (token: string, documentId: string) =>
      t.app.inject({ url: `/api/documents/${documentId}/versions`, headers: bearer(token) });

    const ingest = (token: string, body: object, key?: string) =>
      t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: { ...bearer(token), ...(key ? { "idempotency-key": key } : {}) },
        payload: body,
      });

    // First, while no worker runs: the job must not get to the version before its blob goes.
    it("a version answered 202 whose blob was deleted since still fails, with content_missing", async () => {
      const s = await signup(t.app);
      const res = await ingest(s.token, { title: "Answered", content: "the tide tables for May" });
      expect(res.statusCode, res.body).toBe(202);
      const { documentId } = res.json();
      await t.ctx.blobs.delete(`${s.tenantId}/documents/${documentId}/v1`);
      await backdate(documentId);
      // Not taken for a request that never completed: its content was stored before the 202.
      expect((await t.ctx.recovery.runOnce(120_000)).discarded).toBe(0);
      t.ctx.startWorkers();
      const settled = await settle(t.app, s.token, documentId);
      expect(settled).toMatchObject({
        status: "failed",
        error: { code: "ingestion.content_missing" },
      });
      expect(await documentCount(t.app, s.token)).toBe(1);
    });

    it("discards a new document whose content was never stored; the retry with the same Idempotency-Key makes exactly one", async () => {
      const s = await signup(t.app);
      const body = { title: "Harbour", content: "the harbour master opens the gate at six" };
      const key = randomUUID();
      const dead = await strand(s.tenantId, body);
      // The dead request's claim on its key, its lease run out (server mode: nobody renews it).
      // The request's hash is that of its parsed body: taken from the same request elsewhere.
      const other = await signup(t.app);
      expect((await ingest(other.token, body, key)).statusCode).toBe(202);
      const [{ request_hash }] = (await t.ctx.db.query<{ request_hash: string }>(
        "select request_hash from idempotency_keys where tenant_id = $1",
        [other.tenantId],
      )) as [{ request_hash: string }];
      await t.ctx.db.query(
        `insert into idempotency_keys (tenant_id, key, route, request_hash, claimed_until)
       values ($1, $2, 'document', $3, now() - interval '1 second')`,
        [s.tenantId, key, request_hash],
      );
      // Too recent to touch: its request may still be writing the bytes.
      expect((await t.ctx.recovery.runOnce(120_000)).discarded).toBe(0);
      const recorded = await versionsOf(s.token, dead.documentId);
      expect(recorded.statusCode, recorded.body).toBe(200);
      const [version] = recorded.json().items;
      expect(version).toMatchObject({ jobId: expect.any(String) });
      const jobId: string = version.jobId;
      await backdate(dead.documentId);
      expect((await t.ctx.recovery.runOnce(120_000)).discarded).toBe(1);
      // Nothing of it is left: no versions, and no job was ever queued for it.
      expect((await versionsOf(s.token, dead.documentId)).statusCode).toBe(404);
      expect(await t.ctx.queue.get(s.tenantId, jobId)).toBeUndefined();
      const gone = await t.app.inject({
        url: `/api/documents/${dead.documentId}`,
        headers: bearer(s.token),
      });
      expect(gone.statusCode).toBe(404);
      expect(await documentCount(t.app, s.token)).toBe(0);

      const retry = await ingest(s.token, body, key);
      expect(retry.statusCode, retry.body).toBe(202);
      expect(retry.json().status).toBe("processing");
      const again = await ingest(s.token, body, key);
      expect(again.json()).toEqual(retry.json());
      expect((await settle(t.app, s.token, retry.json().documentId)).status).toBe("completed");
      expect(await documentCount(t.app, s.token)).toBe(1);

      // The request was only slow: its write ends after the discard, and it answers 503 (to be
      // retried) instead of 202 for a version that is no more; its blob does not stay behind.
      dead.release();
      await expect(dead.submitted).rejects.toMatchObject({ code: "service.unavailable" });
      expect(await t.ctx.blobs.get(dead.blobKey)).toBeUndefined();
      expect(await documentCount(t.app, s.token)).toBe(1);
    });

    it("discards only the unstored version of a document that has others; its pointers and status follow", async () => {
      const s = await signup(t.app);
      const first = await ingest(s.token, {
        title: "Menu",
        externalId: "menu",
        content: "soup of the day is leek",
      });
      expect(first.statusCode, first.body).toBe(202);
      const { documentId } = first.json();
      expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
      const dead = await strand(s.tenantId, {
        title: "Menu",
        externalId: "menu",
        content: "soup of the day is fennel",
      });
      expect(dead.documentId).toBe(documentId);
      await backdate(documentId);
      expect((await t.ctx.recovery.runOnce(120_000)).discarded).toBe(1);
      const status = await t.app.inject({
        url: `/api/documents/${documentId}/status`,
        headers: bearer(s.token),
      });
      expect(status.json()).toMatchObject({
        status: "completed",
        activeVersion: 1,
        latestVersion: 1,
      });
      const hits = await search(t.app, s.token, { query: "leek", mode: "text" });
      expect(hits.map((h) => h.documentId)).toEqual([documentId]);

      const retry = await ingest(s.token, {
        title: "Menu",
        externalId: "menu",
        content: "soup of the day is fennel",
      });
      expect(retry.json()).toMatchObject({ documentId, version: 2, status: "processing" });
      expect(await settle(t.app, s.token, documentId)).toMatchObject({
        status: "completed",
        activeVersion: 2,
      });
      expect(await documentCount(t.app, s.token)).toBe(1);
    });

    it("a duplicate of a version whose request died stores the content, so the version is kept and processed", async () => {
      const s = await signup(t.app);
      const body = { title: "Ferry", content: "the last ferry leaves at eleven" };
      const dead = await strand(s.tenantId, body);
      const dup = await ingest(s.token, body);
      expect(dup.json()).toMatchObject({ documentId: dead.documentId, status: "duplicate" });
      await backdate(dead.documentId);
      expect(await t.ctx.recovery.runOnce(120_000)).toMatchObject({ discarded: 0, versions: 1 });
      expect((await settle(t.app, s.token, dead.documentId)).status).toBe("completed");
      expect(await documentCount(t.app, s.token)).toBe(1);
    });

    // Embedded mode: a process starting on PGlite's files knows every request in flight died.
    it.runIf(backend.name === "pglite")(
      "a restarted embedded process discards them before it serves a request",
      async () => {
        const dead = await startApp(backend, { JOB_BACKOFF_MS: "20" });
        const s = await signup(dead.app);
        const body = { title: "Keyed", content: "breakfast is served on the roof terrace" };
        const key = randomUUID();
        const stranded = await strand(s.tenantId, body, dead);
        await claimOfDeadRequest(dead, s.tenantId, key, body);
        const { ctx, app, close } = await restartOn(dead);
        try {
          const gone = await app.inject({
            url: `/api/documents/${stranded.documentId}`,
            headers: bearer(s.token),
          });
          expect(gone.statusCode).toBe(404);
          ctx.startWorkers();
          const retry = await app.inject({
            method: "POST",
            url: "/api/ingest/document",
            headers: { ...bearer(s.token), "idempotency-key": key },
            payload: body,
          });
          expect(retry.statusCode, retry.body).toBe(202);
          expect(retry.json().status).toBe("processing");
          expect((await settle(app, s.token, retry.json().documentId, 10_000)).status).toBe(
            "completed",
          );
          expect(await documentCount(app, s.token)).toBe(1);
        } finally {
          await close();
          await dead.close();
        }
      },
    );
  },
);
