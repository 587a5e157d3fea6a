import type { Logger } from "pino";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import type { Db } from "../../platform/db/index.js";
import { isUniqueViolation } from "../../platform/db/index.js";
import type { JobQueue } from "../../platform/queue/queue.js";
import { releaseAbandonedClaims } from "./idempotency.js";
import { enqueueProcessing, type IngestionJobs } from "./ingestion.jobs.js";
import { uploadsStore } from "./uploads.js";

/** How long after its URL expired an upload that was never completed is swept. */
const ABANDONED_UPLOAD_GRACE_SECONDS = 3_600;

export interface RecoveryDeps {
  db: Db;
  blobs: BlobStore;
  queue: JobQueue<IngestionJobs>;
  logger: Pick<Logger, "info" | "warn" | "error">;
}

/**
 * Finds work that a crash left without a way forward, and puts it back on track:
 * - a document version recorded as pending whose job never reached the queue (the process
 *   died between committing the version and enqueueing): enqueued now, under the job id
 *   recorded with it, so the document does not stay `processing` forever;
 * - jobs recorded as queued that the broker never received (`JobQueue.recover`);
 * - direct uploads never completed: their staging object and record go an hour after the
 *   upload URL expired.
 * Safe to run from several worker processes at once: enqueueing a recorded id twice fails the
 * second time, and re-submitting a job the broker holds does nothing.
 */
export function createIngestionRecovery(deps: RecoveryDeps) {
  const { db, queue, logger } = deps;

  async function strandedVersions(olderThanMs: number) {
    return db.query<{ tenant_id: string; document_id: string; version: number; job_id: string }>(
      `select v.tenant_id, v.document_id, v.version, v.job_id
       from document_versions v
       where v.status = 'pending' and v.job_id is not null
         and v.created_at < now() - make_interval(secs => $1)
         and not exists (select 1 from jobs j where j.id = v.job_id)
       order by v.created_at limit 100`,
      [olderThanMs / 1000],
    );
  }

  return {
    /**
     * For a database that one process alone can open (PGlite), before it serves requests: every
     * request claim it finds (Idempotency-Keys without an answer, upload completions under way)
     * was held by a process that died, and is dropped so that a retry runs at once.
     */
    async releaseRequestClaims(): Promise<{ idempotencyKeys: number; uploads: number }> {
      const idempotencyKeys = await releaseAbandonedClaims(db);
      const uploads = await uploadsStore.releaseAllClaims(db);
      if (idempotencyKeys + uploads > 0) {
        logger.warn(
          { idempotencyKeys, uploads },
          "released the claims of requests interrupted by a restart",
        );
      }
      return { idempotencyKeys, uploads };
    },

    /**
     * One pass over what is older than `olderThanMs` (long enough for a request in flight to
     * have enqueued its job). Returns what it repaired.
     */
    async runOnce(
      olderThanMs: number,
    ): Promise<{ versions: number; queuedChecked: number; uploads: number }> {
      let versions = 0;
      for (const v of await strandedVersions(olderThanMs)) {
        try {
          await enqueueProcessing(queue, {
            tenantId: v.tenant_id,
            documentId: v.document_id,
            version: v.version,
            jobId: v.job_id,
          });
          versions++;
          logger.warn(
            { tenantId: v.tenant_id, documentId: v.document_id, version: v.version },
            "enqueued the processing of a version whose job had been lost",
          );
        } catch (err) {
          // Another process enqueued it first.
          if (!isUniqueViolation(err)) throw err;
        }
      }
      const queuedChecked = await queue.recover(olderThanMs);
      let uploads = 0;
      for (const u of await uploadsStore.abandoned(db, ABANDONED_UPLOAD_GRACE_SECONDS, 100)) {
        // The record first, so that a completion arriving now finds nothing rather than a
        // record without its object; a completion already under way keeps both.
        if (!(await uploadsStore.removePending(db, u.tenant_id, u.id))) continue;
        uploads++;
        await deps.blobs.delete(u.blob_key).catch((err: unknown) => {
          logger.warn({ err, blobKey: u.blob_key }, "could not delete an abandoned upload");
        });
      }
      return { versions, queuedChecked, uploads };
    },
  };
}

export type IngestionRecovery = ReturnType<typeof createIngestionRecovery>;
