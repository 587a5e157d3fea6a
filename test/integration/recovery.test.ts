import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngestionService } from "../../src/modules/ingestion/index.js";
import { bearer, signup, startApp, type TestApp } from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { claimOfDeadRequest, restartOn } from "../fixtures/crash.js";
import { backends } from "../fixtures/db.js";
import { search, settle } from "../fixtures/ingest.js";

// A document version recorded and stored whose job never reached the queue: what a process
// that died between committing the version and enqueueing its job left behind, before the two
// were committed together. Such rows may still exist; the document must not stay "processing"
// forever. They are made by a queue that answers an enqueue without writing anything.

describe.each(backends)("recovery of lost ingestion work ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" });
  });
  afterAll(() => t?.close());

  /** Ingests `content`, leaving its version recorded and stored, and no job for it. */
  async function strand(tenantId: string, title: string, content: string, app = t) {
    const dying = createIngestionService({
      db: app.ctx.db,
      blobs: app.ctx.blobs,
      tenants: app.ctx.tenants,
      quotas: app.ctx.quotas,
      audit: app.ctx.audit,
      events: app.ctx.events,
      allowPrivateUrls: app.ctx.config.allowPrivateUrls,
      queue: {
        ...app.ctx.queue,
        enqueue: async (_type, _payload, opts) => ({ id: opts?.jobId ?? randomUUID() }),
      },
    });
    const ctx = apiKeyContext(tenantId);
    const submitted = await dying.submit(
      ctx,
      { title, docType: "txt" },
      { kind: "bytes", bytes: Buffer.from(content), format: "txt" },
    );
    return submitted.documentId;
  }

  it("enqueues a version whose job was lost, once, and the document completes", async () => {
    const s = await signup(t.app);
    const lost = await strand(s.tenantId, "Lost", "the lighthouse keeper logbook");
    const recent = await strand(s.tenantId, "Recent", "a fresh harbour timetable");
    // Only work older than the age given is touched: a request may still be enqueueing.
    await t.ctx.db.query(
      "update document_versions set created_at = now() - interval '10 minutes' where document_id = $1",
      [lost],
    );
    const status = await t.app.inject({
      url: `/api/documents/${lost}/status`,
      headers: bearer(s.token),
    });
    expect(status.json().status).toBe("processing");

    expect((await t.ctx.recovery.runOnce(120_000)).versions).toBe(1);
    expect((await t.ctx.recovery.runOnce(120_000)).versions).toBe(0);
    t.ctx.startWorkers();
    const settled = await settle(t.app, s.token, lost);
    expect(settled.status, JSON.stringify(settled)).toBe("completed");
    const hits = await search(t.app, s.token, { query: "lighthouse logbook", mode: "text" });
    expect(hits.map((h) => h.documentId)).toEqual([lost]);
    // One version, one job: the one recorded for it, which the queue ran.
    const versions = await t.app.inject({
      url: `/api/documents/${lost}/versions`,
      headers: bearer(s.token),
    });
    const jobId = settled.job?.id as string;
    expect(versions.json().items.map((v: { jobId: string }) => v.jobId)).toEqual([jobId]);
    expect(await t.ctx.queue.get(s.tenantId, jobId)).toMatchObject({
      type: "ingest.process",
      status: "completed",
    });

    // The recent one was left alone, and is picked up once it is old enough.
    const waiting = await t.app.inject({
      url: `/api/documents/${recent}/status`,
      headers: bearer(s.token),
    });
    expect(waiting.json().status).toBe("processing");
    expect((await t.ctx.recovery.runOnce(0)).versions).toBe(1);
    expect((await settle(t.app, s.token, recent)).status).toBe("completed");
  });

  // Embedded mode: PGlite's files are one process's, so a process that starts on them knows
  // that whatever was in flight belongs to a dead one, and repairs it at once.
  it.runIf(backend.name === "pglite")(
    "a restarted embedded process repairs its interrupted work at start-up: running jobs, lost versions, Idempotency-Key claims",
    async () => {
      const dead = await startApp(backend, { JOB_BACKOFF_MS: "20" });
      const s = await signup(dead.app);
      // A job the dead process was running, its lease still far from over.
      const running = await dead.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: bearer(s.token),
        payload: { title: "Running", content: "the night porter keeps the spare keys" },
      });
      expect(running.statusCode, running.body).toBe(202);
      const { documentId: runningDoc, jobId } = running.json();
      await dead.ctx.db.query(
        `update jobs set status = 'running', attempts = 1, started_at = now(),
           locked_by = 'deadhost:1:dead', locked_until = now() + interval '1 hour'
         where id = $1`,
        [jobId],
      );
      // A version recorded a moment before the crash, whose job never reached the queue.
      const lostDoc = await strand(s.tenantId, "Lost", "the ferry leaves at dawn", dead);
      // A request with an Idempotency-Key that was running when the process died.
      const key = randomUUID();
      const body = { title: "Keyed", content: "breakfast is served on the roof terrace" };
      await claimOfDeadRequest(dead, s.tenantId, key, body);

      const { ctx, app, close } = await restartOn(dead);
      try {
        ctx.startWorkers();
        const retry = await app.inject({
          method: "POST",
          url: "/api/ingest/document",
          headers: { ...bearer(s.token), "idempotency-key": key },
          payload: body,
        });
        expect(retry.statusCode, retry.body).toBe(202);
        // Well within the lease and the recovery age: repaired at start, not when they expire.
        expect(await settle(app, s.token, runningDoc, 10_000)).toMatchObject({
          status: "completed",
          job: { id: jobId, status: "completed", attempts: 2 },
        });
        expect((await settle(app, s.token, lostDoc, 10_000)).status).toBe("completed");
        expect((await settle(app, s.token, retry.json().documentId, 10_000)).status).toBe(
          "completed",
        );
      } finally {
        // Both contexts share one PGlite database, which the first context closed takes with
        // it: the dead app writes its last telemetry first, while the database is open.
        await dead.app.close();
        await close();
        await dead.close();
      }
    },
    // Three documents settled one after another, each allowed 10 s, after a restart whose
    // workers also start every interval schedule at once.
    60_000,
  );
});
