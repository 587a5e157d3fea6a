import type { Logger } from "pino";
import { AppError } from "../../errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import { countTokensBatch } from "../../platform/embeddings/tokens.js";
import { safeFetch } from "../../platform/fetch/safe-fetch.js";
import { type JobContext, NonRetryableError } from "../../platform/queue/queue.js";
import type { ChunkRow, VectorIndex } from "../../platform/vectors/vectors.js";
import { jobContext, type TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import { type EventsLog, jobEventId } from "../events/index.js";
import type { QuotasService, Reservation } from "../quotas/index.js";
import { type Embedders, type TenantsService, tenantEmbedder } from "../tenants/index.js";
import { type BillableFact, storageFacts, type UsageRecorder } from "../usage/index.js";
import { activationEntry } from "./audit-entries.js";
import { chunkText } from "./chunking.js";
import { blobKeyFor, contentHash } from "./content.js";
import { type DocumentRow, documentsStore as store, type VersionRow } from "./documents.store.js";
import type { Extractor } from "./extract-pool.js";
import { eventUrl } from "./ingest-events.js";
import { INGEST_MAX_ATTEMPTS, type IngestionJobs } from "./ingestion.jobs.js";
import { classify, IngestionJobError } from "./job-failures.js";
import { knowledgeItemIdOf } from "./knowledge-documents.js";

type Payload = ReturnType<IngestionJobs["ingest.process"]["parse"]>;
type DocType = "pdf" | "txt" | "html" | "md";

export interface PipelineDeps {
  db: Db;
  blobs: BlobStore;
  vectors: VectorIndex;
  embedders: Embedders;
  tenants: TenantsService;
  /** The usage ledger: a version's embedding and the storage gauges, in the activation. */
  usage: UsageRecorder;
  /** The embedding tokens are reserved before the embedder is called, settled at activation. */
  quotas: Pick<QuotasService, "reserve" | "settle" | "release">;
  /** Records a version going live, as the system on behalf of the job's cause. */
  audit: Pick<AuditLog, "record">;
  /** ingest_completed / document_activated with the activation, ingest_failed on the last attempt. */
  events: Pick<EventsLog, "log" | "logMany">;
  logger: Logger;
  /** Lets URL ingestion reach private addresses (tests, local use). Off in production. */
  allowPrivateUrls: boolean;
  maxFetchBytes: number;
  fetchTimeoutMs: number;
  /** Text extraction, in worker threads in production (extract-pool.ts). */
  extractor: Extractor;
}

const FETCH_TYPES: Array<[RegExp, DocType]> = [
  [/^text\/html|^application\/xhtml\+xml/i, "html"],
  [/^application\/pdf/i, "pdf"],
  [/^text\/markdown/i, "md"],
  [/^text\/plain/i, "txt"],
];

/**
 * The worker side of ingestion, one version at a time: fetch or load the bytes, extract text,
 * chunk with the tenant's settings, embed, write the chunks, then in one transaction make the
 * version active and record its figures, and finally drop older versions' chunks. Idempotent:
 * a version already active (or superseded) is left alone, and chunk ids are stable, so a run
 * interrupted anywhere can run again.
 */
export function createIngestionPipeline(deps: PipelineDeps) {
  const { db } = deps;

  async function loadContent(
    ctx: TenantContext,
    version: VersionRow,
    doc: DocumentRow,
    allowed: string[],
    signal: AbortSignal,
  ) {
    if (version.content_type !== "url") {
      const bytes = version.blob_key ? await deps.blobs.get(version.blob_key) : undefined;
      if (!bytes)
        throw new IngestionJobError(
          `the content of version ${version.version} is missing from the blob store; send it again`,
          "ingestion.content_missing",
        );
      return { bytes, docType: version.content_type as DocType, sourceUrl: undefined };
    }
    if (!doc.source_url)
      throw new IngestionJobError("the document has no URL to fetch", "ingestion.no_url");
    const res = await safeFetch(doc.source_url, {
      allowPrivate: deps.allowPrivateUrls,
      maxBytes: deps.maxFetchBytes,
      timeoutMs: deps.fetchTimeoutMs,
      signal,
    });
    const docType = FETCH_TYPES.find(([re]) => re.test(res.contentType ?? ""))?.[1];
    if (!docType || !allowed.includes(docType)) {
      throw new IngestionJobError(
        `the URL answered with ${res.contentType || "no content type"}, which this tenant does not ingest`,
        "ingestion.unsupported_type",
      );
    }
    const blobKey = blobKeyFor(ctx.tenantId, version.document_id, version.version);
    await deps.blobs.put(blobKey, res.body, {
      contentType: res.contentType ?? "application/octet-stream",
    });
    await store.updateVersion(db, ctx.tenantId, version.id, {
      blob_key: blobKey,
      content_hash: contentHash(res.body),
    });
    return { bytes: res.body, docType, sourceUrl: res.finalUrl };
  }

  /**
   * Reserves the exact embedding tokens before any provider cost: a version that does not fit
   * fails `quota.exceeded` (not retried) with nothing embedded.
   */
  async function reserveTokens(ctx: TenantContext, tokens: number): Promise<Reservation> {
    try {
      return await deps.quotas.reserve(ctx, "tokens", tokens);
    } catch (err) {
      if (err instanceof AppError && err.code === "quota.exceeded")
        throw new IngestionJobError(err.message, "quota.exceeded");
      throw err;
    }
  }

  /** Settles a failed run's spent tokens; if even that fails the reservation expires (logged). */
  async function settleAfterFailure(ctx: TenantContext, r: Reservation, tokens: number) {
    try {
      await deps.quotas.settle(ctx, r, tokens);
    } catch (err) {
      deps.logger.error(
        { err, reservationId: r.id, tenantId: ctx.tenantId, tokens },
        "spent embedding tokens could not be settled; the reservation will expire",
      );
    }
  }

  async function process(payload: Payload, job: JobContext<Payload>): Promise<void> {
    const started = Date.now();
    const ctx = jobContext({
      tenantId: payload.tenantId,
      job: { id: job.id, name: "ingest.process" },
      causedBy: payload.causedBy ?? null,
    });
    // Marked `processing` and read with its document in one statement. The document's title,
    // type and metadata go on the chunks; a delete meanwhile is seen under the activation's
    // row lock below.
    const claimed = await store.claimVersion(db, ctx.tenantId, payload.documentId, payload.version);
    // Deleted, or already done by an earlier run of this job: nothing to do.
    if (!claimed) return;
    const { version, document: doc } = claimed;
    // The version's events: ids from the job's, so that a rerun of the job writes none twice.
    const eventOf = {
      sourceType: payload.sourceType ?? (version.content_type === "url" ? "url" : "text"),
      documentId: version.document_id,
      version: version.version,
    } as const;
    const eventId = (name: "ingest_completed" | "ingest_failed" | "document_activated") =>
      jobEventId(job.id, name);

    let reservation: Reservation | undefined;
    /** Tokens the provider has billed for this run, once it has. */
    let spent: number | undefined;
    try {
      // Read once per job: the chunking settings and the embedder both come from it.
      const config = await deps.tenants.getConfig(ctx);
      const { bytes, docType, sourceUrl } = await loadContent(
        ctx,
        version,
        doc,
        config.allowedDocumentTypes,
        job.signal,
      );

      if (version.content_type === "url") {
        // A page fetched again with unchanged bytes is the version that already has them.
        const same = await store.versionWithHash(
          db,
          ctx.tenantId,
          version.document_id,
          contentHash(bytes),
        );
        if (same && same.version !== version.version && same.status === "active") {
          await db.transaction(async (tx) => {
            await store.updateVersion(tx, ctx.tenantId, version.id, { status: "duplicate" });
            await store.updateDocument(tx, ctx.tenantId, version.document_id, {
              status: "completed",
              processing_time_ms: Date.now() - started,
            });
            const data = { ...eventOf, url: eventUrl(sourceUrl), docs: 0, chunks: 0 };
            await deps.events.log(ctx, "ingest_completed", data, {
              tx,
              id: eventId("ingest_completed"),
            });
          });
          return;
        }
      }

      // Stored content was checked at submit (files, uploads) or sent as a JSON string, which is
      // text whatever characters it holds: only a fetched page's bytes are of unknown nature.
      const extracted = await deps.extractor.extract(bytes, docType, {
        sourceUrl,
        sniff: version.content_type === "url",
        // The queue closing stops the extraction; the job runs again after the restart.
        signal: job.signal,
      });
      const texts = await chunkText(extracted.text, {
        size: config.chunkSize,
        overlap: config.chunkOverlap,
        strategy: config.chunkStrategy,
      });
      const { embedder, request } = await tenantEmbedder(deps.embedders, deps.tenants, ctx, config);
      reservation = await reserveTokens(ctx, countTokensBatch(texts, request.model));
      const embedded = await embedder.embed({ ...request, texts, signal: job.signal });
      spent = embedded.tokens;

      // The embedding is billed whatever becomes of the version (its tokens were spent): the
      // event id is the version's, so a rerun of this job bills it once.
      const embeddingFact = (knowledgeItemId: string | null | undefined): BillableFact => ({
        metric: "embedding_tokens",
        quantity: embedded.tokens,
        items: texts.length,
        provider: embedder.provider,
        model: embedded.model,
        payer: request.apiKey ? "tenant" : "platform",
        subject: { type: "document_version", id: version.id },
        documentId: version.document_id,
        metadata: {
          version: version.version,
          ...(knowledgeItemId ? { knowledgeItemId } : {}),
        },
      });
      const rows: ChunkRow[] = texts.map((text, i) => ({
        id: `${doc.id}:${version.version}:${i}`,
        documentId: doc.id,
        version: version.version,
        chunkIndex: i,
        text,
        vector: embedded.vectors[i] as number[],
        title: doc.title,
        docType: doc.doc_type,
        metadata: doc.metadata,
      }));
      await deps.vectors.upsertChunks(ctx.tenantId, rows);

      const stats = {
        chunk_count: rows.length,
        character_count: extracted.text.length,
        page_count: extracted.pageCount ?? null,
        embedding_tokens: embedded.tokens,
      };
      const tokens = reservation;
      const activate = async (tx: Queryable): Promise<"active" | "superseded" | "deleted"> => {
        // Under the document's row lock, so that versions finishing at once take turns; the
        // tenant's storage level once this version is live comes with it.
        const locked = await store.documentForActivation(tx, ctx.tenantId, doc.id, bytes.length);
        const current = locked?.document;
        if (!locked || !current) {
          // Deleted while we worked; its DELETE removed what there was. The tokens were spent.
          await deps.usage.record(ctx, [embeddingFact(knowledgeItemIdOf(doc.external_id))], {
            tx,
          });
          return "deleted";
        }
        // A newer version finished first (several jobs of one document ran at once): this
        // one is out of date before it goes live.
        const superseded = (current.active_version ?? 0) > version.version;
        // Billed with the version's write, superseded or not; a version going live changes the
        // storage gauges too (event ids from the version: a rerun records nothing twice). All
        // facts in one statement.
        const [billed] = await deps.usage.record(
          ctx,
          [
            embeddingFact(knowledgeItemIdOf(current.external_id)),
            ...(superseded
              ? []
              : storageFacts(locked.level, {
                  type: "storage_change",
                  id: `activation:${version.id}`,
                })),
          ],
          { tx },
        );
        const versionStats = {
          ...stats,
          embedding_model: embedded.model,
          embedding_cost_usd: billed?.costUsd ?? "0",
          error_code: null,
          error_message: null,
        };
        if (superseded) {
          await store.updateVersion(tx, ctx.tenantId, version.id, {
            ...versionStats,
            status: "superseded",
          });
          return "superseded";
        }
        await store.activateVersion(tx, ctx.tenantId, doc.id, version.version, versionStats);
        await store.updateDocument(tx, ctx.tenantId, doc.id, {
          ...stats,
          embedding_cost_usd: versionStats.embedding_cost_usd,
          status: current.latest_version === version.version ? "completed" : current.status,
          active_version: version.version,
          content_hash: version.content_hash ?? contentHash(bytes),
          blob_key: version.blob_key ?? blobKeyFor(ctx.tenantId, doc.id, version.version),
          file_size_bytes: bytes.length,
          processing_time_ms: Date.now() - started,
          error_code: null,
          error_message: null,
        });
        await deps.events.logMany(
          ctx,
          [
            {
              name: "ingest_completed",
              id: eventId("ingest_completed"),
              data: {
                ...eventOf,
                url: eventUrl(sourceUrl ?? current.source_url),
                docs: 1,
                chunks: rows.length,
                tokens: embedded.tokens,
                durationMs: Date.now() - started,
              },
            },
            {
              name: "document_activated",
              id: eventId("document_activated"),
              data: { documentId: doc.id, version: version.version, chunks: rows.length },
            },
          ],
          { tx },
        );
        await deps.audit.record(
          ctx,
          activationEntry({
            doc: current,
            version: version.version,
            sizeBytes: bytes.length,
            contentHash: version.content_hash ?? contentHash(bytes),
            chunkCount: rows.length,
            embeddingTokens: embedded.tokens,
          }),
          { tx },
        );
        return "active";
      };
      const outcome = await db.transaction(async (tx) => {
        const done = await activate(tx);
        // The tokens were spent whatever becomes of the version: they count with this commit.
        // Last, so that the tenant's quota counter, which its other jobs reserve on, is locked
        // for the commit only.
        await deps.quotas.settle(ctx, tokens, embedded.tokens, { tx });
        return done;
      });
      if (outcome !== "active") {
        // Deleted meanwhile (its DELETE may have run before the write above), or out of date.
        await deps.vectors.deleteVersions(ctx.tenantId, doc.id, { version: version.version });
        return;
      }
      // Only now may older versions' chunks go: search filtered them out since the switch.
      // Newer versions' chunks, perhaps being written by another job, stay. A first version
      // has nothing older, and the delete scans the tenant's table (bench/RESULTS.md). Sent
      // together with the catalog row, so that both go in one group commit (one lock turn).
      await Promise.all([
        version.version > 1
          ? deps.vectors.deleteVersions(ctx.tenantId, doc.id, { olderThan: version.version })
          : undefined,
        deps.vectors.upsertCatalog(ctx.tenantId, {
          documentId: doc.id,
          version: version.version,
          title: doc.title,
          docType: doc.doc_type,
          summary: extracted.text.slice(0, 500),
          chunkCount: rows.length,
        }),
      ]);
      // The actor (system, with the job and its cause) is what the audit log will record.
      deps.logger.info(
        { jobId: job.id, documentId: doc.id, version: version.version, actor: ctx.actor },
        "document version ingested",
      );
    } catch (err) {
      // Tokens the provider billed count even though the run failed (a retry embeds again and
      // reserves anew); otherwise the reservation goes back. Both are no-ops once settled.
      if (reservation && spent !== undefined) await settleAfterFailure(ctx, reservation, spent);
      else if (reservation) await deps.quotas.release(reservation);
      const c = classify(err);
      const last = !c.retry || job.attempt >= INGEST_MAX_ATTEMPTS;
      deps.logger.warn(
        {
          err,
          jobId: job.id,
          documentId: payload.documentId,
          version: payload.version,
          attempt: job.attempt,
          last,
          actor: ctx.actor,
        },
        "ingestion attempt failed",
      );
      await store.updateVersion(db, ctx.tenantId, version.id, {
        status: last ? "failed" : "pending",
        error_code: c.code,
        error_message: c.message,
      });
      if (last) {
        const doc = await store.document(db, ctx.tenantId, payload.documentId);
        if (doc && doc.latest_version === version.version) {
          await store.updateDocument(db, ctx.tenantId, doc.id, {
            status: "failed",
            error_code: c.code,
            error_message: c.message,
            processing_time_ms: Date.now() - started,
          });
        }
        // One statement, after the failure is recorded; its id is the job's (a rerun adds none).
        await deps.events.log(
          ctx,
          "ingest_failed",
          {
            ...eventOf,
            url: eventUrl(doc?.source_url),
            errorCode: c.code,
            attempts: job.attempt,
          },
          { tx: db, id: eventId("ingest_failed") },
        );
      }
      if (!c.retry)
        throw err instanceof NonRetryableError ? err : new NonRetryableError(c.message, c.code);
      throw err;
    }
  }

  return { process };
}
