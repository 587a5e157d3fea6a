import { createHash, randomUUID } from "node:crypto";
import { AppError } from "../../errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import type { JobQueue } from "../../platform/queue/queue.js";
import { causeOf, type TenantContext } from "../../tenancy.js";
import {
  type DocumentRow,
  documentsStore as store,
  type VersionRow,
} from "../documents/documents.store.js";
import type { TenantsService } from "../tenants/index.js";
import { enqueueProcessing, type IngestionJobs } from "./ingestion.jobs.js";
import { unstoredVersions } from "./unstored.js";

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

/**
 * The prefix of the externalIds of the documents behind knowledge items (FAQs, menu items,
 * policies). Such a document is written only through the knowledge service, which keeps the
 * item's fields and its document in step; the generic routes answer 409 for it.
 */
export const KNOWLEDGE_PREFIX = "knowledge:";

export function isKnowledgeDocument(externalId: string | null | undefined): boolean {
  return externalId?.startsWith(KNOWLEDGE_PREFIX) ?? false;
}

export function managedByKnowledge(): AppError {
  return new AppError(
    "document.managed_by_knowledge",
    "this document belongs to a knowledge item: change or delete it through /api/knowledge (faqs, menu-items, policies)",
  );
}

/** Which document a submission is for, and on whose behalf. */
export interface SubmitOptions {
  /** The document to add a version to (PUT /api/documents/:id, a knowledge item's update). */
  documentId?: string;
  /** Set by the knowledge service only: allows the documents behind knowledge items. */
  knowledge?: boolean;
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
    hash: string | null,
    opts: SubmitOptions,
  ): Promise<DocumentRow> {
    const writable = (doc: DocumentRow) => {
      if (isKnowledgeDocument(doc.external_id) && !opts.knowledge) throw managedByKnowledge();
      return doc;
    };
    if (opts.documentId) {
      const doc = await store.documentForUpdate(tx, ctx.tenantId, opts.documentId);
      if (!doc) throw new AppError("not_found", "document not found");
      return writable(doc);
    }
    if (isKnowledgeDocument(input.externalId) && !opts.knowledge) throw managedByKnowledge();
    // Concurrent submissions of one identity take turns from here to the commit, so that the
    // second finds the document (and the version) the first created instead of creating its
    // own: there is no unique key on a source URL or a content hash to fall back on.
    await tx.query("select pg_advisory_xact_lock(hashtextextended($1, 0))", [
      `ingest:${ctx.tenantId}:${identityKey(input, hash)}`,
    ]);
    const found = await store.documentByIdentity(tx, ctx.tenantId, { ...input, contentHash: hash });
    if (found) return writable(found);
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
   * Stores a version's bytes (unstored.ts): a 503 after discarding the version if it fails.
   * `stored` runs in the transaction that marks them stored.
   */
  function storeBytes(
    ctx: TenantContext,
    documentId: string,
    v: Pick<VersionRow, "id" | "version" | "blob_key">,
    content: { bytes: Buffer; format: ContentFormat },
    stored?: (tx: Queryable) => Promise<unknown>,
  ) {
    const ref = { tenantId: ctx.tenantId, documentId, versionId: v.id, version: v.version };
    const type = contentTypeOf(content.format);
    return unstoredVersions.store(
      db,
      deps.blobs,
      { ...ref, blobKey: v.blob_key },
      content.bytes,
      type,
      stored,
    );
  }

  /** Enqueues a version's job in `tx`; a 503 (and the transaction rolled back) if it fails. */
  async function enqueueIn(tx: Queryable, job: Parameters<typeof enqueueProcessing>[1]) {
    try {
      await enqueueProcessing(deps.queue, job, tx);
    } catch (err) {
      throw new AppError(
        "service.unavailable",
        "the document could not be queued for processing; retry",
        { reason: (err as Error).message },
      );
    }
  }

  /**
   * Records the content as the document's next version and starts processing it. Unchanged
   * content (same hash as a live version) is answered as `duplicate` with that version.
   * `opts.documentId` names the document (PUT /api/documents/:id); otherwise it is found by
   * externalId, then by source URL, or (with neither) by its content among the documents that
   * have neither either; or it is created. Holds under concurrent submissions of the same
   * identity: one creates, the others find it. A document behind a knowledge item is refused
   * (409 `document.managed_by_knowledge`) unless the knowledge service submits it.
   */
  async function submit(
    ctx: TenantContext,
    input: DocumentInput,
    content: ContentInput,
    opts: SubmitOptions = {},
  ): Promise<IngestResult> {
    if (content.kind === "bytes") assertStorableText(content);
    const hash = content.kind === "bytes" ? contentHash(content.bytes) : null;
    const recorded = await db.transaction(async (tx) => {
      const doc = await findOrCreate(tx, ctx, input, hash, opts);
      if (hash) {
        // A duplicate of the newest live version only: content that an older version had
        // but a newer one changed is a change back, hence a new version.
        const same = await store.versionWithHash(tx, ctx.tenantId, doc.id, hash);
        if (same && same.version === (await store.newestLiveVersion(tx, ctx.tenantId, doc.id)))
          return { duplicate: true as const, doc, same };
      }
      const version = doc.latest_version + 1;
      // The job's id is recorded with the version; versions recorded before jobs were
      // enqueued in the same transaction may lack their job, and recovery.ts enqueues it.
      const row = await store.insertVersion(tx, {
        tenantId: ctx.tenantId,
        documentId: doc.id,
        version,
        contentHash: hash,
        blobKey: content.kind === "bytes" ? blobKeyFor(ctx.tenantId, doc.id, version) : null,
        contentType: content.kind === "url" ? "url" : content.format,
        jobId: randomUUID(),
        contentStored: content.kind === "url",
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
      // A URL's content is in place at once (the worker fetches it): its job commits with it.
      if (content.kind === "url") {
        await enqueueIn(tx, {
          tenantId: ctx.tenantId,
          documentId: doc.id,
          version,
          jobId: row.job_id as string,
          causedBy: causeOf(ctx),
        });
      }
      return {
        duplicate: false as const,
        doc,
        version,
        versionId: row.id,
        row,
        jobId: row.job_id as string,
      };
    });
    if (recorded.duplicate) {
      const { same } = recorded;
      // Its request has not stored the bytes yet, and may have died: this one has them, and
      // stores them too (same content, same key), lest the version it answers with be
      // discarded as abandoned. Its job is the other request's, or crash repair's, to enqueue.
      if (!same.content_stored_at && content.kind === "bytes") {
        await storeBytes(ctx, recorded.doc.id, same, content);
      }
      return {
        documentId: recorded.doc.id,
        version: same.version,
        jobId: same.job_id,
        status: "duplicate",
      };
    }

    // The bytes are stored before the version is marked so, with its job in the same
    // transaction, and before the answer: a version left unmarked belongs to a request that
    // never answered 202, and is discarded (here, or by crash repair if the process dies).
    if (content.kind === "bytes") {
      await storeBytes(ctx, recorded.doc.id, recorded.row, content, (tx) =>
        enqueueIn(tx, {
          tenantId: ctx.tenantId,
          documentId: recorded.doc.id,
          version: recorded.version,
          jobId: recorded.jobId,
          causedBy: causeOf(ctx),
        }),
      );
    }
    return {
      documentId: recorded.doc.id,
      version: recorded.version,
      jobId: recorded.jobId,
      status: "processing",
    };
  }

  return { submit };
}

export type IngestionService = ReturnType<typeof createIngestionService>;

/**
 * What makes two submissions without a document id the same document: the caller's externalId,
 * else the source URL, else (a document with no name of its own) the content itself.
 */
function identityKey(input: DocumentInput, hash: string | null): string {
  if (input.externalId) return `external:${input.externalId}`;
  if (input.sourceUrl) return `url:${input.sourceUrl}`;
  return `content:${hash ?? ""}`;
}

/**
 * Text formats are stored and searched as PostgreSQL text, which cannot hold a NUL character:
 * such a file is binary, or not in the format it claims. Refused now rather than failed later.
 */
function assertStorableText(content: { bytes: Buffer; format: ContentFormat }): void {
  if (content.format === "pdf" || !content.bytes.includes(0)) return;
  throw new AppError(
    "ingestion.invalid_text",
    `the ${content.format} content contains a NUL byte; send text (UTF-8), or a PDF as pdf`,
  );
}

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
