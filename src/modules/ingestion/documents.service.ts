import type { Logger } from "pino";
import { notFound } from "../../errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import type { Db, InTransaction, Queryable } from "../../platform/db/index.js";
import type { JobQueue, JobRegistry } from "../../platform/queue/queue.js";
import type { VectorIndex } from "../../platform/vectors/vectors.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { EventsLog } from "../events/index.js";
import type { UsageRecorder } from "../usage/index.js";
import { deletionEntry } from "./audit-entries.js";
import type {
  DocumentPage,
  DocumentProcessing,
  DocumentView,
  VersionView,
} from "./documents.schemas.js";
import {
  type DocumentRow,
  type DocumentStatus,
  documentsStore as store,
  type VersionRow,
} from "./documents.store.js";
import { isKnowledgeDocument, managedByKnowledge } from "./knowledge-documents.js";
import { recordStorageChange } from "./usage-facts.js";
import { usageStatsStore } from "./usage-stats.js";

const err = (code: string | null, message: string | null) =>
  code ? { code, message: message ?? code } : null;

export function toDocumentView(r: DocumentRow): DocumentView {
  return {
    id: r.id,
    externalId: r.external_id,
    title: r.title,
    docType: r.doc_type,
    sourceUrl: r.source_url,
    metadata: r.metadata,
    status: r.status,
    error: err(r.error_code, r.error_message),
    activeVersion: r.active_version,
    latestVersion: r.latest_version,
    contentHash: r.content_hash,
    fileSizeBytes: r.file_size_bytes,
    pageCount: r.page_count,
    chunkCount: r.chunk_count,
    characterCount: r.character_count,
    embeddingTokens: r.embedding_tokens,
    embeddingCostUsd: r.embedding_cost_usd,
    processingTimeMs: r.processing_time_ms,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

function toVersionView(r: VersionRow): VersionView {
  return {
    version: r.version,
    status: r.status,
    isActive: r.is_active,
    contentHash: r.content_hash,
    chunkCount: r.chunk_count,
    characterCount: r.character_count,
    pageCount: r.page_count,
    embeddingTokens: r.embedding_tokens,
    embeddingModel: r.embedding_model,
    embeddingCostUsd: r.embedding_cost_usd,
    jobId: r.job_id,
    error: err(r.error_code, r.error_message),
    createdAt: r.created_at.toISOString(),
    activatedAt: r.activated_at ? r.activated_at.toISOString() : null,
  };
}

/** What `embeddingFigures` answers. */
export interface EmbeddingFigures {
  versions: Array<{
    versionId: string;
    documentId: string;
    version: number;
    embeddingTokens: number;
    isActive: boolean;
    documentEmbeddingTokens: number;
    embeddedAt: Date;
  }>;
  existingDocumentIds: string[];
}

export interface DocumentsDeps {
  db: Db;
  blobs: BlobStore;
  vectors: VectorIndex;
  queue: Pick<JobQueue<JobRegistry>, "get">;
  /** The usage ledger: a delete changes the storage gauges. */
  usage: UsageRecorder;
  /** Records a delete in its transaction (a knowledge item's document: the item's row does). */
  audit: Pick<AuditLog, "record">;
  /** document_deleted, in the delete's transaction (not for a knowledge item's document). */
  events: Pick<EventsLog, "log">;
  /** Told when the chunks or blobs of a document deleted in a caller's transaction stay. */
  logger: Pick<Logger, "error">;
}

/**
 * Reading and deleting a tenant's documents, for the documents routes and for other modules
 * (knowledge, search). Creation and new versions go through the ingestion service.
 */
export function createDocumentsService(deps: DocumentsDeps) {
  const { db } = deps;

  async function row(ctx: TenantContext, id: string, q: Queryable = db): Promise<DocumentRow> {
    const doc = await store.document(q, ctx.tenantId, id);
    if (!doc) throw notFound("document");
    return doc;
  }

  return {
    async list(
      ctx: TenantContext,
      opts: { limit: number; cursor?: string; status?: DocumentStatus; docType?: string },
    ): Promise<DocumentPage> {
      const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
      const rows = await store.listDocuments(db, ctx.tenantId, {
        ...opts,
        limit: opts.limit + 1,
        after,
      });
      const page = rows.slice(0, opts.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toDocumentView),
        nextCursor:
          rows.length > opts.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },

    /** The document; with `opts.tx`, as that transaction sees it. */
    async get(ctx: TenantContext, id: string, opts: InTransaction = {}): Promise<DocumentView> {
      return toDocumentView(await row(ctx, id, opts.tx));
    },

    async versions(ctx: TenantContext, id: string): Promise<VersionView[]> {
      await row(ctx, id);
      return (await store.versions(db, ctx.tenantId, id)).map(toVersionView);
    },

    /**
     * Processing state of the latest version, with its job's attempts and last error; with
     * `opts.tx`, as that transaction sees them (a version it submitted, before the commit).
     */
    async status(
      ctx: TenantContext,
      id: string,
      opts: InTransaction = {},
    ): Promise<DocumentProcessing> {
      const q = opts.tx ?? db;
      const doc = await row(ctx, id, q);
      const latest = await store.version(q, ctx.tenantId, id, doc.latest_version);
      const job = latest?.job_id
        ? await deps.queue.get(ctx.tenantId, latest.job_id, { tx: opts.tx })
        : undefined;
      return {
        documentId: doc.id,
        status: doc.status,
        activeVersion: doc.active_version,
        latestVersion: doc.latest_version,
        error: err(doc.error_code, doc.error_message),
        job: job
          ? {
              id: job.id,
              status: job.status,
              attempts: job.attempts,
              maxAttempts: job.maxAttempts,
              lastError: job.lastError,
            }
          : null,
      };
    },

    /**
     * What the tenant holds now: its documents, and the bytes of their active versions (the
     * level quotas `documents` and `storage_bytes` read these).
     */
    async levels(
      ctx: TenantContext,
      opts: InTransaction = {},
    ): Promise<{ documents: number; storageBytes: number }> {
      const level = await store.storageLevel(opts.tx ?? db, ctx.tenantId);
      return { documents: level.documents, storageBytes: level.bytes };
    },

    /**
     * Of these documents, the active version of each: the only version whose chunks search may
     * show. A document that is gone, or has no active version yet, is absent from the map.
     */
    async activeVersions(ctx: TenantContext, documentIds: string[]): Promise<Map<string, number>> {
      return store.activeVersions(db, ctx.tenantId, documentIds);
    },

    /**
     * Storage levels (documents, bytes) of the given tenants, zero for those with none: the
     * daily usage snapshot. Across tenants: for platform jobs only, never a request.
     */
    async storageLevels(
      tenantIds: readonly string[],
    ): Promise<Array<{ tenantId: string; documents: number; bytes: number }>> {
      const levels = await store.storageLevels(db, tenantIds);
      return tenantIds.map((tenantId) => ({
        tenantId,
        ...(levels.get(tenantId) ?? { documents: 0, bytes: 0 }),
      }));
    },

    /**
     * Sets versions' embedding costs from the ledger (a re-rating run changed them), and the
     * document's where the version is the active one, in the run's transaction.
     */
    async setEmbeddingCosts(
      items: ReadonlyArray<{ tenantId: string; versionId: string; costUsd: string }>,
      opts: { tx: Queryable },
    ): Promise<void> {
      await store.setEmbeddingCosts(opts.tx, items);
    },

    /**
     * The embedding figures usage reconciliation compares with the ledger: the tenant's embedded
     * versions that are in `versionIds` or were embedded in [from, to) (activated then, or
     * created then if superseded before going live), each with its tokens, whether it is active
     * and its document's `embedding_tokens`; and which of `documentIds` still exist (a deleted
     * document's versions are gone, so its events cannot be checked).
     */
    async embeddingFigures(
      ctx: TenantContext,
      w: { versionIds: string[]; documentIds: string[]; from: Date; to: Date },
    ): Promise<EmbeddingFigures> {
      const r = await store.embeddingFigures(db, ctx.tenantId, w);
      return {
        versions: r.versions.map((v) => ({
          versionId: v.id,
          documentId: v.document_id,
          version: v.version,
          embeddingTokens: v.embedding_tokens,
          isActive: v.is_active,
          documentEmbeddingTokens: v.document_embedding_tokens,
          embeddedAt: new Date(v.embedded_at),
        })),
        existingDocumentIds: r.existingDocumentIds,
      };
    },

    /**
     * Tenants that had a version embedded in [from, to): for the platform-wide reconciliation
     * (a platform job or a platform admin's request; no tenant's data is returned).
     */
    async tenantsWithEmbeddings(from: Date, to: Date): Promise<string[]> {
      return store.tenantsWithEmbeddings(db, from, to);
    },

    /**
     * Versions activated and failed per UTC hour in `[from, to)`, for the usage roll-ups. Takes
     * only the tenant id: the roll-up job acts for no actor. Runs on `opts.tx` when given.
     */
    async versionCountsByHour(
      ctx: Pick<TenantContext, "tenantId">,
      from: Date,
      to: Date,
      opts: InTransaction = {},
    ) {
      return usageStatsStore.versionCountsByHour(opts.tx ?? db, ctx.tenantId, from, to);
    },

    /** The usage figures of these documents (seed 004's token columns); absent ones are left out. */
    async summaries(ctx: Pick<TenantContext, "tenantId">, ids: string[]) {
      return usageStatsStore.summaries(db, ctx.tenantId, ids);
    },

    /** Counts by status and type, total size, tokens and cost of the tenant's documents. */
    async stats(ctx: Pick<TenantContext, "tenantId">) {
      return usageStatsStore.stats(db, ctx.tenantId);
    },

    /** Platform-wide document figures, for platform admins' global metrics. */
    async platformStats() {
      return usageStatsStore.platformStats(db);
    },

    /**
     * Deletes the document with its versions, its chunks and its blobs. The rows go first, in
     * one statement, so search (which keeps only active versions of existing documents) shows
     * nothing of it from that moment; the chunks and blobs follow before the answer. A document
     * behind a knowledge item goes only with its item (`opts.knowledge`, the knowledge service):
     * otherwise 409 `document.managed_by_knowledge`.
     *
     * In a caller's transaction (`opts.tx`) only the rows go with it: the chunks and blobs,
     * which no transaction covers, go once it has committed (logged if that fails; search shows
     * nothing of a document without its row), and stay if it rolls back.
     */
    async delete(
      ctx: TenantContext,
      id: string,
      opts: { knowledge?: boolean } & InTransaction = {},
    ) {
      // The rows and the storage gauges they change commit together.
      const removeRows = async (q: Queryable) => {
        const doc = await store.deleteDocument(q, ctx.tenantId, id, {
          knowledge: opts.knowledge ?? false,
        });
        if (!doc) {
          const kept = await store.document(q, ctx.tenantId, id);
          if (kept && isKnowledgeDocument(kept.external_id)) throw managedByKnowledge();
          throw notFound("document");
        }
        await recordStorageChange(deps.usage, ctx, q, `delete:${id}`);
        if (!opts.knowledge) {
          await deps.events.log(ctx, "document_deleted", { documentId: id }, { tx: q });
          await deps.audit.record(ctx, deletionEntry(doc), { tx: q });
        }
      };
      if (opts.tx) await removeRows(opts.tx);
      else await db.transaction(removeRows);
      const removeContent = async () => {
        await deps.vectors.deleteDocument(ctx.tenantId, id);
        await deps.blobs.deletePrefix(`${ctx.tenantId}/documents/${id}/`);
      };
      if (!opts.tx) return removeContent();
      // Removed before the commit, the content would be gone from a document a rollback keeps.
      if (!opts.tx.afterCommit)
        throw new Error("documents.delete needs the transaction handle db.transaction gives");
      opts.tx.afterCommit(() => {
        removeContent().catch((err: unknown) => {
          deps.logger.error(
            { err, tenantId: ctx.tenantId, documentId: id },
            "a deleted document's chunks or blobs could not be removed",
          );
        });
      });
    },
  };
}

export type DocumentsService = ReturnType<typeof createDocumentsService>;
