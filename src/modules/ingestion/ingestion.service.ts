import { createHash, randomUUID } from "node:crypto";
import { AppError } from "../../http/errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import type { JobQueue } from "../../platform/queue/queue.js";
import type { TenantContext } from "../../tenancy.js";
import { type DocumentRow, documentsStore as store } from "../documents/documents.store.js";
import type { TenantsService } from "../tenants/index.js";
import { enqueueProcessing, type IngestionJobs } from "./ingestion.jobs.js";

export type IngestStatus = "processing" | "duplicate";

export interface IngestResult {
  documentId: string;
  version: number;
  jobId: string | null;
  status: IngestStatus;
}

/** What identifies a document across re-ingestion, and the fields kept on it. */
export interface DocumentInput {
  title: string;
  docType: string;
  sourceUrl?: string | null;
  externalId?: string | null;
  metadata?: Record<string, string>;
}

/** How the bytes are to be read: the parsers tenantrag has. */
export type ContentFormat = "pdf" | "txt" | "html" | "md";

/**
 * Content known at request time (text, upload) with its format, or a URL the worker will
 * fetch and whose format its Content-Type tells. The format is separate from the document's
 * type, which is a category (e.g. `faq` for knowledge items written as Markdown).
 */
export type ContentInput =
  | { kind: "bytes"; bytes: Buffer; format: ContentFormat }
  | { kind: "url"; url: string };

export function contentHash(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function blobKeyFor(tenantId: string, documentId: string, version: number): string {
  return `${tenantId}/documents/${documentId}/v${version}`;
}

export interface IngestionDeps {
  db: Db;
  blobs: BlobStore;
  queue: JobQueue<IngestionJobs>;
  tenants: TenantsService;
}

/**
 * The request side of ingestion: checks the tenant's limits, records a new version (or
 * recognises unchanged content as a duplicate of the version that has it), stores the raw
 * bytes, and enqueues the processing job. The API answers without waiting for the work.
 */
export function createIngestionService(deps: IngestionDeps) {
  const { db } = deps;

  async function findOrCreate(
    tx: Queryable,
    ctx: TenantContext,
    input: DocumentInput,
    existingId?: string,
  ): Promise<DocumentRow> {
    if (existingId) {
      const doc = await store.documentForUpdate(tx, ctx.tenantId, existingId);
      if (!doc) throw new AppError("not_found", "document not found");
      return doc;
    }
    const found = await store.documentByIdentity(tx, ctx.tenantId, input);
    if (found) return found;
    // Counting under the tenant's config row lock keeps concurrent creations from overshooting.
    const limit = await tx.query<{ max_documents: number }>(
      "select max_documents from tenant_config where tenant_id = $1 for update",
      [ctx.tenantId],
    );
    const maxDocuments = limit[0]?.max_documents ?? 0;
    if ((await store.countDocuments(tx, ctx.tenantId)) >= maxDocuments) {
      throw new AppError(
        "ingestion.max_documents",
        `this tenant may keep at most ${maxDocuments} documents`,
        {
          maxDocuments,
        },
      );
    }
    return store.insertDocument(tx, {
      tenantId: ctx.tenantId,
      externalId: input.externalId ?? null,
      title: input.title,
      docType: input.docType,
      sourceUrl: input.sourceUrl ?? null,
      metadata: input.metadata ?? {},
    });
  }

  /**
   * Records the content as the document's next version and starts processing it. Unchanged
   * content (same hash as a live version) is answered as `duplicate` with that version.
   * `existingId` names the document (PUT /api/documents/:id); otherwise it is found by
   * externalId, then by source URL, or created.
   */
  async function submit(
    ctx: TenantContext,
    input: DocumentInput,
    content: ContentInput,
    existingId?: string,
  ): Promise<IngestResult> {
    const hash = content.kind === "bytes" ? contentHash(content.bytes) : null;
    const recorded = await db.transaction(async (tx) => {
      const doc = await findOrCreate(tx, ctx, input, existingId);
      if (hash) {
        // A duplicate of the newest live version only: content that an older version had
        // but a newer one changed is a change back, hence a new version.
        const same = await store.versionWithHash(tx, ctx.tenantId, doc.id, hash);
        if (same && same.version === (await store.newestLiveVersion(tx, ctx.tenantId, doc.id)))
          return { duplicate: true as const, doc, version: same.version, jobId: same.job_id };
      }
      const version = doc.latest_version + 1;
      const blobKey = content.kind === "bytes" ? blobKeyFor(ctx.tenantId, doc.id, version) : null;
      // The job's id is recorded with the version, so that a version whose job never got
      // enqueued (the process died in between) can be found and enqueued later (recovery.ts).
      const row = await store.insertVersion(tx, {
        tenantId: ctx.tenantId,
        documentId: doc.id,
        version,
        contentHash: hash,
        blobKey,
        contentType: content.kind === "url" ? "url" : content.format,
        jobId: randomUUID(),
      });
      await store.updateDocument(tx, ctx.tenantId, doc.id, {
        latest_version: version,
        status: "processing",
        error_code: null,
        error_message: null,
        title: input.title,
        metadata: input.metadata ?? doc.metadata,
        ...(input.sourceUrl !== undefined ? { source_url: input.sourceUrl } : {}),
      });
      return {
        duplicate: false as const,
        doc,
        version,
        versionId: row.id,
        blobKey,
        jobId: row.job_id as string,
      };
    });
    if (recorded.duplicate) {
      return {
        documentId: recorded.doc.id,
        version: recorded.version,
        jobId: recorded.jobId,
        status: "duplicate",
      };
    }

    try {
      if (content.kind === "bytes" && recorded.blobKey) {
        await deps.blobs.put(recorded.blobKey, content.bytes, {
          contentType: contentTypeOf(content.format),
        });
      }
      const job = await enqueueProcessing(deps.queue, {
        tenantId: ctx.tenantId,
        documentId: recorded.doc.id,
        version: recorded.version,
        jobId: recorded.jobId,
      });
      return {
        documentId: recorded.doc.id,
        version: recorded.version,
        jobId: job.id,
        status: "processing",
      };
    } catch (err) {
      // Nothing will process this version: say so on it and on the document, then report.
      const message = (err as Error).message;
      await store.updateVersion(db, ctx.tenantId, recorded.versionId, {
        status: "failed",
        job_id: null,
        error_code: "ingestion.not_queued",
        error_message: message,
      });
      await store.updateDocument(db, ctx.tenantId, recorded.doc.id, {
        status: recorded.doc.active_version ? "completed" : "failed",
        error_code: "ingestion.not_queued",
        error_message: message,
      });
      throw new AppError(
        "service.unavailable",
        "the document could not be queued for processing; retry",
        {
          reason: message,
        },
      );
    }
  }

  return { submit };
}

export type IngestionService = ReturnType<typeof createIngestionService>;

/** The MIME type a blob of this format is stored with. */
export function contentTypeOf(format: ContentFormat): string {
  switch (format) {
    case "pdf":
      return "application/pdf";
    case "html":
      return "text/html; charset=utf-8";
    case "md":
      return "text/markdown; charset=utf-8";
    default:
      return "text/plain; charset=utf-8";
  }
}
