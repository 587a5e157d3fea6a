import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngestionService } from "../../src/modules/ingestion/ingestion.service.js";
import type { TenantContext } from "../../src/tenancy.js";
import { bearer, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { search, settle } from "../fixtures/ingest.js";

// A process that dies between committing a document version and enqueueing its job: the
// document must not stay "processing" forever. The death is simulated by a queue whose enqueue
// never returns, so the version and its blob are written and nothing else happens.

describe.each(backends)("recovery of lost ingestion work ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" });
  });
  afterAll(() => t?.close());

  /** Ingests `content` as a process would that dies once the version is recorded and stored. */
  async function strand(tenantId: string, title: string, content: string): Promise<string> {
    let died!: (payload: { documentId: string }) => void;
    const atEnqueue = new Promise<{ documentId: string }>((resolve) => {
      died = resolve;
    });
    const dying = createIngestionService({
      db: t.ctx.db,
      blobs: t.ctx.blobs,
      tenants: t.ctx.tenants,
      queue: {
        ...t.ctx.queue,
        enqueue: (_type, payload) => {
          died(payload as { documentId: string });
          return new Promise<never>(() => {});
        },
      },
    });
    const ctx: TenantContext = {
      tenantId,
      principal: { kind: "api_key", keyId: "k", tenantId, role: "admin", scopes: ["admin"] },
      requestId: "dying",
    };
    void dying.submit(
      ctx,
      { title, docType: "txt" },
      { kind: "bytes", bytes: Buffer.from(content), format: "txt" },
    );
    return (await atEnqueue).documentId;
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
    const jobs = await t.ctx.db.query<{ n: number }>(
      "select count(*)::int as n from jobs where tenant_id = $1 and type = 'ingest.process'",
      [s.tenantId],
    );
    expect(jobs[0]?.n).toBe(1);

    // The recent one was left alone, and is picked up once it is old enough.
    const waiting = await t.app.inject({
      url: `/api/documents/${recent}/status`,
      headers: bearer(s.token),
    });
    expect(waiting.json().status).toBe("processing");
    expect((await t.ctx.recovery.runOnce(0)).versions).toBe(1);
    expect((await settle(t.app, s.token, recent)).status).toBe("completed");
  });
});
