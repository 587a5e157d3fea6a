import { randomUUID } from "node:crypto";
import { AppError, notFound } from "../../errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import type { Clock } from "../../platform/clock.js";
import { type Db, kysely, type Queryable, type Row, sql } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import { contentTypeOf } from "./content.js";
import { type DocType, fileDocType } from "./doc-types.js";
import { assertDeclaredType } from "./file-ingest.js";
import type { IngestResult, UploadTicket } from "./ingestion.schemas.js";
import type { IngestionService } from "./ingestion.service.js";

/** How long a presigned upload URL stays valid. */
export const UPLOAD_URL_TTL_SECONDS = 15 * 60;
/** How long a completion holds its upload; one cut short by a crash can be retried after it. */
const CLAIM_SECONDS = 5 * 60;

const UPLOAD_COLUMNS = [
  "id",
  "tenant_id",
  "blob_key",
  "filename",
  "title",
  "doc_type",
  "content_type",
  "size_bytes",
  "external_id",
  "status",
  "result",
] as const;

type Stored = Row<"uploads", (typeof UPLOAD_COLUMNS)[number]>;

/** An upload as stored; `doc_type` and `result` (jsonb) were written by this module only. */
export type UploadRow = Omit<Stored, "doc_type" | "result"> & {
  doc_type: DocType;
  result: IngestResult | null;
};

const asUpload = (row: Stored | undefined): UploadRow | undefined =>
  row && { ...row, doc_type: row.doc_type as DocType, result: row.result as IngestResult | null };

/** SQL for the `uploads` table. Every query filters by tenant id. */
export const uploadsStore = {
  async insert(
    q: Queryable,
    u: Omit<UploadRow, "status" | "result"> & { expiresAt: Date },
  ): Promise<void> {
    await kysely(q)
      .insertInto("uploads")
      .values({
        id: u.id,
        tenant_id: u.tenant_id,
        blob_key: u.blob_key,
        filename: u.filename,
        title: u.title,
        doc_type: u.doc_type,
        content_type: u.content_type,
        size_bytes: u.size_bytes,
        external_id: u.external_id,
        expires_at: u.expiresAt,
      })
      .execute();
  },

  async get(q: Queryable, tenantId: string, id: string): Promise<UploadRow | undefined> {
    const row = await kysely(q)
      .selectFrom("uploads")
      .select(UPLOAD_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .executeTakeFirst();
    return asUpload(row);
  },

  /** Takes a pending upload (or one whose completion died) for completion; one taker wins. */
  async claim(q: Queryable, tenantId: string, id: string): Promise<UploadRow | undefined> {
    const row = await kysely(q)
      .updateTable("uploads")
      .set({
        status: "completing",
        claimed_until: sql<Date>`now() + make_interval(secs => ${CLAIM_SECONDS})`,
      })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .where((eb) =>
        eb.or([
          eb("status", "=", "pending"),
          eb.and([eb("status", "=", "completing"), eb("claimed_until", "<", sql<Date>`now()`)]),
        ]),
      )
      .returning(UPLOAD_COLUMNS)
      .executeTakeFirst();
    return asUpload(row);
  },

  /** Releases every completion under way: at start-up, when only this process opens the db. */
  async releaseAllClaims(q: Queryable): Promise<number> {
    const res = await kysely(q)
      .updateTable("uploads")
      .set({ status: "pending", claimed_until: null })
      .where("status", "=", "completing")
      .executeTakeFirstOrThrow();
    return Number(res.numUpdatedRows);
  },

  async release(q: Queryable, tenantId: string, id: string): Promise<void> {
    await kysely(q)
      .updateTable("uploads")
      .set({ status: "pending", claimed_until: null })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .where("status", "=", "completing")
      .execute();
  },

  /**
   * Uploads never completed whose URL ran out more than `graceSeconds` ago (a PUT started just
   * before expiry may still be arriving), oldest first. Across tenants: for the sweep only.
   */
  async abandoned(
    q: Queryable,
    graceSeconds: number,
    limit: number,
  ): Promise<Array<Pick<UploadRow, "id" | "tenant_id" | "blob_key">>> {
    return kysely(q)
      .selectFrom("uploads")
      .select(["id", "tenant_id", "blob_key"])
      .where("status", "=", "pending")
      .where("expires_at", "<", sql<Date>`now() - make_interval(secs => ${graceSeconds})`)
      .orderBy("expires_at")
      .limit(limit)
      .execute();
  },

  /** Forgets an upload that is still pending (a completion that started keeps it). */
  async removePending(q: Queryable, tenantId: string, id: string): Promise<boolean> {
    const res = await kysely(q)
      .deleteFrom("uploads")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .where("status", "=", "pending")
      .executeTakeFirstOrThrow();
    return res.numDeletedRows > 0n;
  },

  async complete(q: Queryable, tenantId: string, id: string, result: IngestResult) {
    await kysely(q)
      .updateTable("uploads")
      .set({
        status: "completed",
        result: JSON.stringify(result),
        claimed_until: null,
        completed_at: sql<Date>`now()`,
      })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .execute();
  },
};

export interface UploadRequest {
  filename: string;
  /** Bytes the client will upload; checked against the tenant's limit now, and the object later. */
  size: number;
  contentType?: string | undefined;
  docType?: string | undefined;
  title?: string | undefined;
  externalId?: string | undefined;
}

export interface UploadsDeps {
  db: Db;
  blobs: BlobStore;
  ingestion: Pick<IngestionService, "submit" | "limits">;
  /** Dates the expiry shown with a URL; the URL's own is signed by the blob store's clock. */
  clock: Clock;
  /** Records a signed upload (its completion is the document's own row). */
  audit: Pick<AuditLog, "record">;
}

/**
 * Direct uploads to object storage, for files a client would rather not stream through the
 * API: `create` checks the announced file against the tenant's limits and signs a PUT URL for
 * a staging key under the tenant's prefix; `complete` checks what arrived and ingests it as an
 * uploaded file would be, then removes the staging object. Only S3-compatible blob storage
 * signs URLs; with local files, `create` answers 409.
 */
export function createUploadsService(deps: UploadsDeps) {
  const { db, blobs } = deps;

  /** Reads the uploaded object after checking it against the tenant's limits and the announcement. */
  async function uploadedBytes(ctx: TenantContext, upload: UploadRow): Promise<Buffer> {
    const limits = await deps.ingestion.limits(ctx);
    // The tenant's settings may have changed since the URL was signed.
    limits.assertType(upload.doc_type);
    const missing = () =>
      new AppError(
        "ingestion.upload_missing",
        "nothing has been uploaded for this upload yet: PUT the file to its uploadUrl first",
      );
    // The size first: an object far larger than announced is refused without reading it.
    const size = await blobs.size(upload.blob_key);
    if (size === undefined) throw missing();
    limits.assertFileSize(size);
    const bytes = await blobs.get(upload.blob_key);
    if (!bytes) throw missing();
    if (bytes.length === 0) throw new AppError("ingestion.empty_content", "the file is empty");
    if (bytes.length !== upload.size_bytes) {
      throw new AppError(
        "ingestion.upload_size_mismatch",
        `the uploaded file has ${bytes.length} bytes, but ${upload.size_bytes} were announced`,
        { announcedBytes: upload.size_bytes, uploadedBytes: bytes.length },
      );
    }
    return bytes;
  }

  return {
    async create(ctx: TenantContext, req: UploadRequest): Promise<UploadTicket> {
      const limits = await deps.ingestion.limits(ctx);
      const docType = fileDocType(req.docType, req.filename);
      limits.assertType(docType);
      if (req.size === 0) throw new AppError("ingestion.empty_content", "the file is empty");
      limits.assertFileSize(req.size);
      const id = randomUUID();
      const key = `${ctx.tenantId}/uploads/${id}`;
      const contentType = req.contentType ?? contentTypeOf(docType);
      const url = await blobs.presignPut(key, {
        contentType,
        expiresInSeconds: UPLOAD_URL_TTL_SECONDS,
      });
      if (!url) {
        throw new AppError(
          "ingestion.presign_unavailable",
          "direct uploads need S3-compatible blob storage (BLOB_URL); this server keeps files locally, so send the file to POST /api/ingest/file",
        );
      }
      const expiresAt = new Date(deps.clock.now() + UPLOAD_URL_TTL_SECONDS * 1000);
      const upload = {
        id,
        tenant_id: ctx.tenantId,
        blob_key: key,
        filename: req.filename,
        title: req.title ?? req.filename,
        doc_type: docType,
        content_type: contentType,
        size_bytes: req.size,
        external_id: req.externalId ?? null,
        expiresAt,
      };
      await db.transaction(async (tx) => {
        await uploadsStore.insert(tx, upload);
        // The signed URL is a credential for its lifetime: the row names the upload, not it.
        await deps.audit.record(
          ctx,
          {
            eventType: "upload.create",
            entityType: "upload",
            entityId: id,
            action: "create",
            newValues: {
              filename: upload.filename,
              title: upload.title,
              docType,
              contentType,
              sizeBytes: req.size,
              externalId: upload.external_id,
              expiresAt: expiresAt.toISOString(),
            },
          },
          { tx },
        );
      });
      return {
        uploadUrl: url,
        uploadId: id,
        method: "PUT",
        headers: { "content-type": contentType },
        expiresAt: expiresAt.toISOString(),
      };
    },

    /**
     * Ingests the uploaded object. Idempotent: completing a completed upload answers what the
     * first completion did; a completion already under way elsewhere answers 409. A refused
     * object leaves the upload pending, so the client may PUT the right file and try again.
     */
    async complete(ctx: TenantContext, id: string): Promise<IngestResult> {
      const upload = await uploadsStore.claim(db, ctx.tenantId, id);
      if (!upload) {
        const row = await uploadsStore.get(db, ctx.tenantId, id);
        if (!row) throw notFound("upload");
        if (row.status === "completed" && row.result) {
          // The first completion may have stopped before removing the staging object.
          await blobs.delete(row.blob_key);
          return row.result;
        }
        throw new AppError(
          "ingestion.upload_in_progress",
          "this upload is being completed by another request; retry in a moment",
        );
      }
      let result: IngestResult;
      try {
        const bytes = await uploadedBytes(ctx, upload);
        assertDeclaredType(bytes, upload.doc_type);
        result = await deps.ingestion.submit(
          ctx,
          { title: upload.title, docType: upload.doc_type, externalId: upload.external_id },
          { kind: "bytes", bytes, format: upload.doc_type },
          { source: "upload", uploadId: upload.id },
        );
        await uploadsStore.complete(db, ctx.tenantId, id, result);
      } catch (err) {
        await uploadsStore.release(db, ctx.tenantId, id);
        throw err;
      }
      // The document keeps its own copy of the bytes; the staging object has served.
      await blobs.delete(upload.blob_key);
      return result;
    },
  };
}

export type UploadsService = ReturnType<typeof createUploadsService>;
