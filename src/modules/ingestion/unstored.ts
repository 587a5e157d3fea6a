import { AppError } from "../../errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import { documentsStore as store } from "./documents.store.js";

/**
 * Versions whose request never completed: the version was recorded, but its bytes never
 * reached the blob store (the request failed there, or its process died), so the client never
 * got a 202. Such a version is discarded, not failed: failing it would leave a document the
 * client never had (listed for good, counted against maxDocuments), and the client's retry
 * would then make a second one.
 */

/** A version, and where its bytes go. */
export interface VersionRef {
  tenantId: string;
  documentId: string;
  versionId: string;
  version: number;
  blobKey: string | null;
}

export const unstoredVersions = {
  /**
   * Stores the version's bytes and marks it stored: the step that precedes the 202. `stored`
   * runs in the transaction of the mark (the ingestion service enqueues the version's job
   * there, so a stored version always has its job). If any of it fails, the version is
   * discarded (it was never answered for) and the request answers 503, to be retried.
   *
   * With `callerTx` (the version was recorded in a caller's transaction, which is still open)
   * the mark and `stored` run in it, and a failure only answers 503: the caller's rollback
   * takes the version away, and nothing else sees it before the commit. If the caller commits
   * anyway, the version stays unstored and is discarded as abandoned later (recovery.ts).
   */
  async store(
    db: Db,
    blobs: BlobStore,
    v: VersionRef,
    bytes: Buffer,
    contentType: string,
    stored?: (tx: Queryable) => Promise<unknown>,
    callerTx?: Queryable,
  ) {
    const mark = async (tx: Queryable) => {
      if (!(await unstoredVersions.markStored(tx, v.tenantId, v.versionId)))
        throw new Error("the version was discarded as abandoned before its content was stored");
      await stored?.(tx);
    };
    try {
      if (!v.blobKey) throw new Error("the version has no blob key");
      await blobs.put(v.blobKey, bytes, { contentType });
      await (callerTx ? mark(callerTx) : db.transaction(mark));
    } catch (err) {
      if (callerTx) {
        if (err instanceof AppError) throw err;
        throw storeFailed(err);
      }
      await unstoredVersions.discard(db, blobs, v);
      throw storeFailed(err);
    }
  },

  /**
   * Marks the version's bytes as stored: with its job, the last step before the request is
   * answered. False when the version is gone: crash repair took it for abandoned (see
   * recovery.ts); the request must then fail rather than answer for a version that is no more.
   */
  async markStored(q: Queryable, tenantId: string, versionId: string): Promise<boolean> {
    return store.markVersionStored(q, tenantId, versionId);
  },

  /**
   * Discards the version if it is still unstored and unprocessed, in one transaction: the
   * document's only version takes the document with it (nothing of it was ever indexed, and it
   * has no job); otherwise the document's latest version and status follow the newest version
   * that remains. Its blob, if any was written, goes under the document's lock: once the lock
   * is let go, a new submission may record the same version number, and its blob the same key.
   * For the same reason a request whose version was discarded under it calls this too, to drop
   * the blob it wrote only while no version of that number exists. Returns whether the version
   * (and the document) went; false when it was stored, or had gone, meanwhile.
   */
  async discard(
    db: Db,
    blobs: BlobStore,
    v: VersionRef,
  ): Promise<{ version: boolean; document: boolean }> {
    const { tenantId, documentId } = v;
    const dropBlob = async () => {
      if (v.blobKey) await blobs.delete(v.blobKey);
    };
    return db.transaction(async (tx) => {
      // The document first, as a submission does, so that the two take turns.
      if (!(await store.documentForUpdate(tx, tenantId, documentId))) {
        // Gone with all its versions: its id, hence its keys, is never used again.
        await dropBlob();
        return { version: false, document: false };
      }
      const gone = await store.deleteUnstoredVersion(tx, tenantId, v.versionId);
      if (!gone) {
        if (!(await store.version(tx, tenantId, documentId, v.version))) await dropBlob();
        return { version: false, document: false };
      }
      await dropBlob();
      const last = await store.newestVersion(tx, tenantId, documentId);
      if (!last) {
        await store.removeDocument(tx, tenantId, documentId);
        return { version: true, document: true };
      }
      // As the pipeline leaves it: the document shows the state of its newest version.
      const inFlight = last.status === "pending" || last.status === "processing";
      const failed = last.status === "failed";
      await store.updateDocument(tx, tenantId, documentId, {
        latest_version: last.version,
        status: inFlight ? "processing" : failed ? "failed" : "completed",
        error_code: failed ? last.error_code : null,
        error_message: failed ? last.error_message : null,
      });
      return { version: true, document: false };
    });
  },
};

function storeFailed(err: unknown): AppError {
  return new AppError("service.unavailable", "the content could not be stored; retry", {
    reason: (err as Error).message,
  });
}
