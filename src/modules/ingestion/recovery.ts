import type { Logger } from "pino";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import { type Db, isUniqueViolation, kysely, sql } from "../../platform/db/index.js";
import type { JobQueue } from "../../platform/queue/queue.js";
import { releaseAbandonedClaims } from "./idempotency.js";
import { enqueueProcessing, type IngestionJobs } from "./ingestion.jobs.js";
import { unstoredVersions } from "./unstored.js";
import { uploadsStore } from "./uploads.js";

/** How long after its URL expired an upload that was never completed is swept. */
const ABANDONED_UPLOAD_GRACE_SECONDS = 3_600;

export interface RecoveryDeps {
  db: Db;
  blobs: BlobStore;
  queue: Pick<JobQueue<IngestionJobs>, "enqueue" | "recover">;
  logger: Pick<Logger, "info" | "warn" | "error">;
}

/**
 * Finds work that a crash left without a way forward, and puts it back on track:
 * - a document version recorded as pending without its job: recorded before versions and
 *   their jobs were committed together (the process died between storing its content and
 *   enqueueing); enqueued now, under the job id recorded with it, so the document does not
 *   stay `processing` forever;
 * - such a version whose content was never stored (the process died between recording it and
 *   storing the bytes, so the request was never answered): discarded, with its document if it
 *   was the only version, so that the client's retry makes one document, not a second one
 *   beside a failed one. A version whose content was stored but has vanished since is not
 *   this: its job fails it with `ingestion.content_missing`, for all to see;
 * - jobs recorded as queued that the broker lost (`JobQueue.recover`; those it never received
 *   are the queue's own relay's);
 * - direct uploads never completed: their staging object and record go an hour after the
 *   upload URL expired.
 * Safe to run from several worker processes at once: enqueueing a recorded id twice fails the
 * second time, and re-submitting a job the broker holds does nothing.
 */
export function createIngestionRecovery(deps: RecoveryDeps) {
  const { db, queue, logger } = deps;

  /** Pending versions without a job older than the age, whose content was stored or not. */
  async function strandedVersions(olderThanMs: number, stored: boolean) {
    // The one query of this module on the queue's table: a version is stranded when no jobs
    // row has the id it recorded, which only the two tables together can say.
    return kysely(db)
      .selectFrom("document_versions as v")
      .select(["v.id", "v.tenant_id", "v.document_id", "v.version", "v.job_id", "v.blob_key"])
      .where("v.status", "=", "pending")
      .where("v.job_id", "is not", null)
      .where("v.content_stored_at", stored ? "is not" : "is", null)
      .where("v.created_at", "<", sql<Date>`now() - make_interval(secs => ${olderThanMs / 1000})`)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("jobs as j").select(sql.lit(1).as("one")).whereRef("j.id", "=", "v.job_id"),
          ),
        ),
      )
      .orderBy("v.created_at")
      .limit(100)
      .$narrowType<{ job_id: string }>()
      .execute();
  }

  /**
   * Their request died before storing the bytes, so it never answered 202: the client retries,
   * and the version is discarded for the retry to make it anew (unstored.ts). In server mode
   * its request may still be at work in another process. Not likely at the age recovery waits
   * for (REQUEST_TIMEOUT_MS bounds receiving the body, which comes before the version is
   * recorded; only the blob write is left after it), and not harmful either: the discard and
   * the request's marking of the version take turns on its row, and a request that finds its
   * version gone answers 503, to be retried. The job never finds such a version: it is
   * enqueued only after the marking, so a blob missing then was stored and went missing since
   * (ingestion.content_missing, shown on the document).
   */
  async function discardUnstored(olderThanMs: number): Promise<number> {
    let discarded = 0;
    for (const v of await strandedVersions(olderThanMs, false)) {
      const gone = await unstoredVersions.discard(db, deps.blobs, {
        tenantId: v.tenant_id,
        documentId: v.document_id,
        versionId: v.id,
        version: v.version,
        blobKey: v.blob_key,
      });
      if (!gone.version) continue;
      discarded++;
      logger.warn(
        {
          tenantId: v.tenant_id,
          documentId: v.document_id,
          version: v.version,
          document: gone.document,
        },
        "discarded a version whose request died before storing its content",
      );
    }
    return discarded;
  }

  return {
    /**
     * For a database that one process alone can open (PGlite), before it serves requests: every
     * request claim it finds (Idempotency-Keys without an answer, upload completions under way)
     * was held by a process that died, and is dropped so that a retry runs at once; and every
     * version whose content was never stored goes, lest the retry find it (as a duplicate, or
     * as a second document beside it).
     */
    async releaseRequestClaims(): Promise<{
      idempotencyKeys: number;
      uploads: number;
      versions: number;
    }> {
      const idempotencyKeys = await releaseAbandonedClaims(db);
      const uploads = await uploadsStore.releaseAllClaims(db);
      let versions = 0;
      // Age 0: everything recorded before now, which no live request can be writing; in
      // batches, until one is not full.
      let batch: number;
      do {
        batch = await discardUnstored(0);
        versions += batch;
      } while (batch === 100);
      if (idempotencyKeys + uploads + versions > 0) {
        logger.warn(
          { idempotencyKeys, uploads, versions },
          "released the claims of requests interrupted by a restart",
        );
      }
      return { idempotencyKeys, uploads, versions };
    },

    /**
     * One repair pass over what is older than `olderThanMs` (long enough for a request in
     * flight to have enqueued its job): the `ingest.repair` job. Returns what it repaired.
     */
    async repair(
      olderThanMs: number,
    ): Promise<{ versions: number; discarded: number; queuedChecked: number }> {
      let versions = 0;
      const discarded = await discardUnstored(olderThanMs);
      for (const v of await strandedVersions(olderThanMs, true)) {
        try {
          await enqueueProcessing(queue, {
            tenantId: v.tenant_id,
            documentId: v.document_id,
            version: v.version,
            jobId: v.job_id,
            // Versions do not record who sent them: the lost job's cause is lost with it.
            causedBy: null,
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
      return { versions, discarded, queuedChecked };
    },

    /** Removes direct uploads never completed (the `uploads.sweep` job); returns how many. */
    async sweepUploads(): Promise<number> {
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
      return uploads;
    },

    /** Both passes at once: what a process that has just started runs. */
    async runOnce(
      olderThanMs: number,
    ): Promise<{ versions: number; discarded: number; queuedChecked: number; uploads: number }> {
      const repaired = await this.repair(olderThanMs);
      return { ...repaired, uploads: await this.sweepUploads() };
    },
  };
}

export type IngestionRecovery = ReturnType<typeof createIngestionRecovery>;
