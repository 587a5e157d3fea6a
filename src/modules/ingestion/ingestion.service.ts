import { randomUUID } from "node:crypto";
import { AppError, notFound } from "../../errors.js";
import type { BlobStore } from "../../platform/blobs/blobs.js";
import { type Db, inTransaction, type Queryable } from "../../platform/db/index.js";
import { checkUrlTarget, FetchError } from "../../platform/fetch/safe-fetch.js";
import type { JobQueue } from "../../platform/queue/queue.js";
import { causeOf, type TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { EventsLog } from "../events/index.js";
import { type QuotaStatuses, type QuotasService, quotaExceeded } from "../quotas/index.js";
import type { TenantsService } from "../tenants/index.js";
import { type SubmissionSource, submissionEntry } from "./audit-entries.js";
import {
  blobKeyFor,
  type ContentFormat,
  type ContentInput,
  contentHash,
  contentTypeOf,
} from "./content.js";
import { type DocumentRow, documentsStore as store, type VersionRow } from "./documents.store.js";
import { FILE_FIELD_BYTES, FILE_FIELDS, fileSubmission } from "./file-ingest.js";
import { type IngestSourceType, submissionEvents } from "./ingest-events.js";
import { enqueueProcessing, enqueueProcessingMany, type IngestionJobs } from "./ingestion.jobs.js";
import {
  type BatchResult,
  type ContentUpdate,
  type DocumentItem,
  documentItemSchema,
  type IngestResult,
  type UrlItem,
} from "./ingestion.schemas.js";
import { isKnowledgeDocument, managedByKnowledge } from "./knowledge-documents.js";
import { fileTooLarge, type TenantLimits, tenantLimits } from "./limits.js";
import type { MultipartForm, MultipartLimits } from "./multipart.js";
import { unstoredVersions } from "./unstored.js";

/** What identifies a document across re-ingestion, and the fields kept on it. */
export interface DocumentInput {
  title: string;
  docType: string;
  sourceUrl?: string | null;
  externalId?: string | null;
  metadata?: Record<string, string>;
}

/** Which document a submission is for, and on whose behalf. */
export interface SubmitOptions {
  /** The document to add a version to (PUT /api/documents/:id, a knowledge item's update). */
  documentId?: string;
  /** Set by the knowledge service only: allows the documents behind knowledge items. */
  knowledge?: boolean;
  /**
   * The caller's transaction: the document, its version (marked stored) and its job are
   * written in it and commit or roll back with the caller's own writes; the job is handed to
   * its workers only once it commits. The bytes go to the blob store before the commit: the
   * one thing a rollback does not take back (see `submit`).
   */
  tx?: Queryable | undefined;
  /**
   * How the submission came in, for its audit row (`text` unless said). A knowledge item's
   * submission has none: the item's own row records it.
   */
  source?: SubmissionSource;
  /** The direct upload the content came from. */
  uploadId?: string;
  /**
   * The tenant's document limit as its caller read it with the rest of its configuration
   * (`limits`); without it, read in the submission's transaction.
   */
  maxDocuments?: number;
}

/** A multipart body yet to be read: its announced length, and a reader bound to the request. */
export interface FileUpload {
  /** Content-Length, or 0 when the body is chunked. */
  announcedBytes: number;
  read(limits: MultipartLimits): Promise<MultipartForm>;
}

/** Room for the form's fields and part headers beside the file in an announced length. */
const FORM_OVERHEAD_BYTES = 64 * 1024;

export interface IngestionDeps {
  db: Db;
  blobs: BlobStore;
  queue: JobQueue<IngestionJobs>;
  tenants: TenantsService;
  /** Refuses submissions once the tenant's quotas are used up (the worker reserves the tokens). */
  quotas: Pick<QuotasService, "assertAvailable">;
  /** Records every accepted submission, in the transaction that accepts it. */
  audit: Pick<AuditLog, "record" | "recordMany">;
  /**
   * The submission's events (ingest_started, document_created/updated) with its audit row; a
   * refusal of the documents quota as quota_exceeded, outside the transaction it rolls back.
   */
  events: Pick<EventsLog, "logMany" | "logOutside">;
  /** Lets URL ingestion reach private addresses (tests, local use). Off in production. */
  allowPrivateUrls: boolean;
}

/**
 * The request side of ingestion: checks the tenant's limits, records a new version (or
 * recognises unchanged content as a duplicate of the version that has it), stores the raw
 * bytes, and enqueues the processing job. The API answers without waiting for the work. Every
 * way in (text, batch, URL, file, new content for a document, direct uploads through
 * `limits`) goes through here, so the tenant's limits are checked in one place.
 */
export function createIngestionService(deps: IngestionDeps) {
  const { db } = deps;

  /**
   * The document the submission is for, found or (`created`) made as its first version's
   * document (`latest_version` 1, `processing`). A made one counts against the tenant's
   * limit only at `assertRoomFor`, the transaction's last statement.
   */
  async function findOrCreate(
    tx: Queryable,
    ctx: TenantContext,
    input: DocumentInput,
    hash: string | null,
    opts: SubmitOptions,
  ): Promise<{ doc: DocumentRow; created: boolean }> {
    const writable = (doc: DocumentRow) => {
      if (isKnowledgeDocument(doc.external_id) && !opts.knowledge) throw managedByKnowledge();
      return { doc, created: false };
    };
    if (opts.documentId) {
      const doc = await store.documentForUpdate(tx, ctx.tenantId, opts.documentId);
      if (!doc) throw notFound("document");
      return writable(doc);
    }
    if (isKnowledgeDocument(input.externalId) && !opts.knowledge) throw managedByKnowledge();
    // Concurrent submissions of one identity take turns from here to the commit, so that the
    // second finds the document (and the version) the first created instead of creating its
    // own: there is no unique key on a source URL or a content hash to fall back on.
    await store.lockUntilCommit(tx, `ingest:${ctx.tenantId}:${identityKey(input, hash)}`);
    const found = await store.documentByIdentity(tx, ctx.tenantId, { ...input, contentHash: hash });
    if (found) return writable(found);
    const doc = await store.insertDocument(tx, {
      tenantId: ctx.tenantId,
      externalId: input.externalId ?? null,
      title: input.title,
      docType: input.docType,
      sourceUrl: input.sourceUrl ?? null,
      metadata: input.metadata ?? {},
      latestVersion: 1,
    });
    return { doc, created: true };
  }

  /**
   * Refuses a new document past the tenant's limit. Runs after the document's insert, which
   * added it to the tenant's document figures (migration 0024's trigger) and locked that row
   * until the commit: creations of one tenant take turns from their insert to their commit,
   * and each reads a count that includes the ones committed before it and itself. The
   * insert is the transaction's last write but the version's, so the turn is short.
   */
  async function assertRoomFor(
    tx: Queryable,
    ctx: TenantContext,
    quota: QuotaStatuses["documents"],
    known: number | undefined,
  ): Promise<void> {
    const maxDocuments = known ?? (await deps.tenants.maxDocumentsForUpdate(ctx, tx));
    const count = await store.countDocuments(tx, ctx.tenantId);
    if (count > maxDocuments) {
      throw new AppError(
        "ingestion.max_documents",
        `this tenant may keep at most ${maxDocuments} documents`,
        { maxDocuments },
      );
    }
    // The documents quota, counted on the same row (the new document is in `count`).
    if (quota.limit !== null && count > quota.limit) {
      // Not awaited: the write lands once this transaction has rolled back (events.logOutside).
      void deps.events.logOutside(ctx, "quota_exceeded", {
        quotaType: "documents",
        limit: quota.limit,
        attempted: 1,
        used: count - 1,
      });
      throw quotaExceeded("documents", { ...quota, used: count - 1, remaining: 0 }, 1);
    }
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
    callerTx?: Queryable,
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
      callerTx,
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
   *
   * In a caller's transaction (`opts.tx`) every row is written in it, and the bytes are stored
   * while it is open, between recording the version and marking it stored. A rollback takes
   * the document, version and job with it, never handed to a worker; the blob it wrote stays,
   * under a key nothing refers to: a new document's id is never used again, and a new version
   * of an existing document leaves its number free, so the next version that takes it writes
   * its own bytes there before it is marked stored. (Deleting it on rollback could delete that
   * next version's bytes: the key is only safe to drop under the document's lock.) Meanwhile
   * the submission holds its identity's lock, the document row and, for a new document, the
   * tenant's config row until the caller commits: keep the transaction short.
   */
  async function submit(
    ctx: TenantContext,
    input: DocumentInput,
    content: ContentInput,
    opts: SubmitOptions = {},
  ): Promise<IngestResult> {
    if (content.kind === "bytes") assertStorableText(content);
    // Billable work: refused now (402 trial ended, 429 used up, 503 unknown) rather than failed later.
    // In the caller's transaction when given: on PGlite (one connection) a read beside it would
    // wait for it forever.
    const quota = await deps.quotas.assertAvailable(ctx, ["tokens", "storage_bytes"], {
      read: ["documents"],
      ...(opts.tx ? { tx: opts.tx } : {}),
    });
    const hash = content.kind === "bytes" ? contentHash(content.bytes) : null;
    const sourceType: IngestSourceType = opts.knowledge ? "knowledge" : (opts.source ?? "text");
    const recorded = await inTransaction(db, opts.tx, async (tx) => {
      const { doc, created } = await findOrCreate(tx, ctx, input, hash, opts);
      if (hash && !created) {
        // A duplicate of the newest live version only: content that an older version had
        // but a newer one changed is a change back, hence a new version.
        const same = await store.versionWithHash(tx, ctx.tenantId, doc.id, hash);
        if (same && same.version === (await store.newestLiveVersion(tx, ctx.tenantId, doc.id)))
          return { duplicate: true as const, doc, same };
      }
      // A document made here already names its first version.
      const version = created ? doc.latest_version : doc.latest_version + 1;
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
      if (!created) {
        await store.updateDocument(tx, ctx.tenantId, doc.id, {
          latest_version: version,
          status: "processing",
          error_code: null,
          error_message: null,
          title: input.title,
          metadata: input.metadata ?? doc.metadata,
          ...(input.sourceUrl !== undefined ? { source_url: input.sourceUrl } : {}),
        });
      }
      // A URL's content is in place at once (the worker fetches it): its job commits with it.
      if (content.kind === "url") {
        await enqueueIn(tx, {
          tenantId: ctx.tenantId,
          documentId: doc.id,
          version,
          jobId: row.job_id as string,
          causedBy: causeOf(ctx),
          sourceType,
        });
      }
      if (created) await assertRoomFor(tx, ctx, quota.documents, opts.maxDocuments);
      const events = submissionEvents({
        documentId: doc.id,
        docType: doc.doc_type,
        version,
        created,
        sourceType,
        url: content.kind === "url" ? (input.sourceUrl ?? doc.source_url) : null,
      });
      const audit = opts.knowledge
        ? null
        : submissionEntry({
            doc,
            created,
            input,
            version,
            hash,
            content,
            source: opts.source ?? "text",
            uploadId: opts.uploadId,
          });
      // A URL's submission is accepted with this commit; bytes once they are stored (below).
      if (content.kind === "url") await deps.events.logMany(ctx, events, { tx });
      if (audit && content.kind === "url") await deps.audit.record(ctx, audit, { tx });
      return {
        duplicate: false as const,
        doc,
        version,
        versionId: row.id,
        row,
        jobId: row.job_id as string,
        audit,
        events,
      };
    });
    if (recorded.duplicate) {
      const { same } = recorded;
      // Its request has not stored the bytes yet, and may have died: this one has them, and
      // stores them too (same content, same key), lest the version it answers with be
      // discarded as abandoned. Its job is the other request's, or crash repair's, to enqueue.
      if (!same.content_stored_at && content.kind === "bytes") {
        await storeBytes(ctx, recorded.doc.id, same, content, undefined, opts.tx);
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
      await storeBytes(
        ctx,
        recorded.doc.id,
        recorded.row,
        content,
        async (tx) => {
          await enqueueIn(tx, {
            tenantId: ctx.tenantId,
            documentId: recorded.doc.id,
            version: recorded.version,
            jobId: recorded.jobId,
            causedBy: causeOf(ctx),
            sourceType,
          });
          await deps.events.logMany(ctx, recorded.events, { tx });
          if (recorded.audit) await deps.audit.record(ctx, recorded.audit, { tx });
        },
        opts.tx,
      );
    }
    return {
      documentId: recorded.doc.id,
      version: recorded.version,
      jobId: recorded.jobId,
      status: "processing",
    };
  }

  /**
   * The batch (`submitBatch`). Per item, the same outcome as submitting the items one after
   * the other: a new document, a new version of the document of its identity, a duplicate of
   * that document's newest live version (also of an earlier item of the batch), or a refusal.
   * A failure to store one item's bytes discards that item's version only (503 in its place);
   * a failure of the final transaction answers 503 for every item it would have accepted.
   */
  async function submitBatchItems(
    ctx: TenantContext,
    items: unknown[],
  ): Promise<BatchResult["results"]> {
    const results: BatchResult["results"] = new Array(items.length);
    const refuse = (index: number, err: AppError) => {
      results[index] = { index, ok: false, error: { code: err.code, message: err.message } };
    };
    const tenant = await limits(ctx);
    type Item = {
      index: number;
      item: DocumentItem;
      bytes: Buffer;
      hash: string;
      key: string;
    };
    const valid: Item[] = [];
    for (const [index, raw] of items.entries()) {
      const parsed = documentItemSchema.safeParse(raw);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        results[index] = {
          index,
          ok: false,
          error: {
            code: "validation.failed",
            message: `${issue?.path.join(".") || "item"}: ${issue?.message ?? "invalid"}`,
          },
        };
        continue;
      }
      const item = parsed.data;
      const bytes = Buffer.from(item.content, "utf8");
      try {
        tenant.assertType(item.docType);
        assertStorableText({ bytes, format: item.docType });
        if (isKnowledgeDocument(item.externalId)) throw managedByKnowledge();
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        refuse(index, err);
        continue;
      }
      const hash = contentHash(bytes);
      valid.push({ index, item, bytes, hash, key: identityKey(item, hash) });
    }
    if (valid.length === 0) return results;
    let quota: QuotaStatuses;
    try {
      quota = await deps.quotas.assertAvailable(ctx, ["tokens", "storage_bytes"], {
        read: ["documents"],
      });
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      for (const v of valid) refuse(v.index, err);
      return results;
    }

    /** An accepted item's version, or its duplicate's answer. */
    type Planned = {
      item: Item;
      documentId: string;
      version: number;
      created: boolean;
      /** The document as the item found it (for its audit row's old values). */
      before: DocumentRow | undefined;
      jobId: string;
    };
    type Duplicate = { item: Item; documentId: string; same: VersionRow | Planned };
    const sourceType: IngestSourceType = "batch";
    const recorded = await db.transaction(async (tx) => {
      await store.lockAllUntilCommit(
        tx,
        valid.map((v) => `ingest:${ctx.tenantId}:${v.key}`),
      );
      const ids = {
        externalIds: [] as string[],
        sourceUrls: [] as string[],
        contentHashes: [] as string[],
      };
      for (const v of valid) {
        if (v.item.externalId) ids.externalIds.push(v.item.externalId);
        else if (v.item.sourceUrl) ids.sourceUrls.push(v.item.sourceUrl);
        else ids.contentHashes.push(v.hash);
      }
      const found = await store.documentsByIdentities(tx, ctx.tenantId, ids);
      const newest = await store.newestLiveVersions(
        tx,
        ctx.tenantId,
        [...found.values()].map((d) => d.id),
      );
      // After the documents' row locks, as a submission and the worker's activation take
      // them: the tenant's count, locked, so that creations elsewhere wait for this commit.
      let count = await store.lockDocumentCount(tx, ctx.tenantId);

      type State = {
        doc: DocumentRow | undefined;
        documentId: string;
        created: boolean;
        latest: number;
        live: { hash: string | null; same: VersionRow | Planned } | undefined;
        /** What a new document is inserted with, after the batch's later versions of it. */
        fields: { title: string; metadata: Record<string, string>; sourceUrl: string | null };
      };
      const states = new Map<string, State>();
      const planned: Planned[] = [];
      const duplicates: Duplicate[] = [];
      const touched = new Map<string, State>();
      for (const v of valid) {
        let st = states.get(v.key);
        if (!st) {
          const doc = found.get(v.key);
          if (doc) {
            const live = newest.get(doc.id);
            st = {
              doc,
              documentId: doc.id,
              created: false,
              latest: doc.latest_version,
              live: live ? { hash: live.content_hash, same: live } : undefined,
              fields: { title: doc.title, metadata: doc.metadata, sourceUrl: doc.source_url },
            };
            states.set(v.key, st);
          }
        }
        if (st?.live && st.live.hash === v.hash) {
          duplicates.push({ item: v, documentId: st.documentId, same: st.live.same });
          continue;
        }
        if (!st) {
          if (count + 1 > tenant.maxDocuments) {
            refuse(
              v.index,
              new AppError(
                "ingestion.max_documents",
                `this tenant may keep at most ${tenant.maxDocuments} documents`,
                { maxDocuments: tenant.maxDocuments },
              ),
            );
            continue;
          }
          const q = quota.documents;
          if (q.limit !== null && count + 1 > q.limit) {
            void deps.events.logOutside(ctx, "quota_exceeded", {
              quotaType: "documents",
              limit: q.limit,
              attempted: 1,
              used: count,
            });
            refuse(v.index, quotaExceeded("documents", { ...q, used: count, remaining: 0 }, 1));
            continue;
          }
          count += 1;
          st = {
            doc: undefined,
            documentId: randomUUID(),
            created: true,
            latest: 0,
            live: undefined,
            fields: {
              title: v.item.title,
              metadata: v.item.metadata ?? {},
              sourceUrl: v.item.sourceUrl ?? null,
            },
          };
          states.set(v.key, st);
        }
        const version = st.latest + 1;
        const before = st.doc
          ? { ...st.doc, latest_version: st.latest, ...docFields(st) }
          : undefined;
        const p: Planned = {
          item: v,
          documentId: st.documentId,
          version,
          created: st.created && version === 1,
          before,
          jobId: randomUUID(),
        };
        planned.push(p);
        st.latest = version;
        st.live = { hash: v.hash, same: p };
        if (version > 1) {
          st.fields = {
            title: v.item.title,
            metadata: v.item.metadata ?? st.fields.metadata,
            sourceUrl: v.item.sourceUrl !== undefined ? v.item.sourceUrl : st.fields.sourceUrl,
          };
          if (!st.created) touched.set(st.documentId, st);
        }
      }

      const inserted = await store.insertDocuments(
        tx,
        [...states.values()]
          .filter((st) => st.created)
          .map((st) => {
            const first = planned.find((p) => p.documentId === st.documentId) as Planned;
            return {
              id: st.documentId,
              tenantId: ctx.tenantId,
              externalId: first.item.item.externalId ?? null,
              title: st.fields.title,
              docType: first.item.item.docType,
              sourceUrl: st.fields.sourceUrl,
              metadata: st.fields.metadata,
              latestVersion: st.latest,
            };
          }),
      );
      const docs = new Map(inserted.map((d) => [d.id, d]));
      for (const st of touched.values()) {
        const doc = await store.updateDocument(tx, ctx.tenantId, st.documentId, {
          latest_version: st.latest,
          status: "processing",
          error_code: null,
          error_message: null,
          title: st.fields.title,
          metadata: st.fields.metadata,
          source_url: st.fields.sourceUrl,
        });
        if (doc) docs.set(doc.id, doc);
      }
      for (const st of states.values())
        if (st.doc && !docs.has(st.documentId)) docs.set(st.documentId, st.doc);
      const rows = await store.insertVersions(
        tx,
        planned.map((p) => ({
          tenantId: ctx.tenantId,
          documentId: p.documentId,
          version: p.version,
          contentHash: p.item.hash,
          blobKey: blobKeyFor(ctx.tenantId, p.documentId, p.version),
          contentType: p.item.item.docType,
          jobId: p.jobId,
        })),
      );
      const versionOf = new Map(rows.map((r) => [`${r.document_id}:${r.version}`, r]));
      return { planned, duplicates, docs, versionOf };
    });

    // The bytes, concurrently; a version whose bytes could not be stored is discarded.
    const { planned, duplicates, docs, versionOf } = recorded;
    const rowOf = (p: Planned) => versionOf.get(`${p.documentId}:${p.version}`) as VersionRow;
    /** The document as the item's audit row describes it: made by it, or as it found it. */
    const auditedDocument = (p: Planned, doc: DocumentRow): DocumentRow => {
      if (p.before) return p.before;
      const { item } = p.item;
      if (p.created) {
        const fields = { title: item.title, metadata: item.metadata ?? {} };
        return { ...doc, ...fields, source_url: item.sourceUrl ?? null, latest_version: 1 };
      }
      // A later version of a document the batch made: as its previous item left it.
      return { ...doc, latest_version: p.version - 1 };
    };
    const failed = new Set<Planned>();
    await Promise.all(
      planned.map(async (p) => {
        const row = rowOf(p);
        try {
          await deps.blobs.put(row.blob_key as string, p.item.bytes, {
            contentType: contentTypeOf(p.item.item.docType),
          });
        } catch {
          failed.add(p);
        }
      }),
    );
    const unavailable = new AppError(
      "service.unavailable",
      "the content could not be stored; retry",
    );
    for (const p of failed) {
      const row = rowOf(p);
      await unstoredVersions.discard(db, deps.blobs, {
        tenantId: ctx.tenantId,
        documentId: p.documentId,
        versionId: row.id,
        version: p.version,
        blobKey: row.blob_key,
      });
      refuse(p.item.index, unavailable);
    }
    const stored = planned.filter((p) => !failed.has(p));
    try {
      // Nothing new to accept (duplicates and refusals only): no second transaction.
      if (stored.length > 0)
        await db.transaction(async (tx) => {
          const marked = await store.markVersionsStored(
            tx,
            ctx.tenantId,
            stored.map((p) => rowOf(p).id),
          );
          if (marked.size !== stored.length) {
            throw new Error("a version was discarded as abandoned before its content was stored");
          }
          await enqueueProcessingMany(
            deps.queue,
            stored.map((p) => ({
              tenantId: ctx.tenantId,
              documentId: p.documentId,
              version: p.version,
              jobId: p.jobId,
              causedBy: causeOf(ctx),
              sourceType,
            })),
            tx,
          );
          const events = stored.flatMap((p) =>
            submissionEvents({
              documentId: p.documentId,
              docType: p.item.item.docType,
              version: p.version,
              created: p.created,
              sourceType,
              url: null,
            }),
          );
          await deps.events.logMany(ctx, events, { tx });
          const entries = stored.map((p) =>
            submissionEntry({
              doc: auditedDocument(p, docs.get(p.documentId) as DocumentRow),
              created: p.created,
              input: {
                title: p.item.item.title,
                sourceUrl: p.item.item.sourceUrl,
                ...(p.item.item.metadata ? { metadata: p.item.item.metadata } : {}),
              },
              version: p.version,
              hash: p.item.hash,
              content: { kind: "bytes", bytes: p.item.bytes, format: p.item.item.docType },
              source: "batch",
            }),
          );
          await deps.audit.recordMany(ctx, entries, { tx });
        });
    } catch (err) {
      // Nothing was accepted: the versions go, as a request that never answered leaves them.
      for (const p of stored) {
        const row = rowOf(p);
        await unstoredVersions
          .discard(db, deps.blobs, {
            tenantId: ctx.tenantId,
            documentId: p.documentId,
            versionId: row.id,
            version: p.version,
            blobKey: row.blob_key,
          })
          .catch(() => undefined);
        refuse(
          p.item.index,
          err instanceof AppError
            ? err
            : new AppError("service.unavailable", "the documents could not be queued; retry"),
        );
      }
      // A duplicate of an item that was not accepted has nothing to answer with.
      for (const d of duplicates) if (!("id" in d.same)) refuse(d.item.index, unavailable);
      stored.length = 0;
    }
    for (const p of stored) {
      results[p.item.index] = {
        index: p.item.index,
        ok: true,
        result: {
          documentId: p.documentId,
          version: p.version,
          jobId: p.jobId,
          status: "processing",
        },
      };
    }
    for (const d of duplicates) {
      if (results[d.item.index]) continue;
      if ("id" in d.same) {
        const same = d.same;
        // As `submit`: the version it duplicates lost its request before its bytes were stored.
        if (!same.content_stored_at) {
          try {
            await storeBytes(ctx, d.documentId, same, {
              bytes: d.item.bytes,
              format: d.item.item.docType,
            });
          } catch (err) {
            if (!(err instanceof AppError)) throw err;
            refuse(d.item.index, err);
            continue;
          }
        }
        results[d.item.index] = {
          index: d.item.index,
          ok: true,
          result: {
            documentId: d.documentId,
            version: same.version,
            jobId: same.job_id,
            status: "duplicate",
          },
        };
      } else if (failed.has(d.same)) {
        refuse(d.item.index, unavailable);
      } else {
        results[d.item.index] = {
          index: d.item.index,
          ok: true,
          result: {
            documentId: d.documentId,
            version: d.same.version,
            jobId: d.same.jobId,
            status: "duplicate",
          },
        };
      }
    }
    return results;
  }

  async function limits(ctx: TenantContext): Promise<TenantLimits> {
    return tenantLimits(await deps.tenants.getConfig(ctx));
  }

  async function submitText(
    ctx: TenantContext,
    item: DocumentItem,
    source: SubmissionSource = "text",
  ): Promise<IngestResult> {
    const tenant = await limits(ctx);
    tenant.assertType(item.docType);
    return submit(
      ctx,
      {
        title: item.title,
        docType: item.docType,
        sourceUrl: item.sourceUrl,
        externalId: item.externalId,
        metadata: item.metadata,
      },
      { kind: "bytes", bytes: Buffer.from(item.content, "utf8"), format: item.docType },
      { source, maxDocuments: tenant.maxDocuments },
    );
  }

  async function submitUrl(ctx: TenantContext, item: UrlItem): Promise<IngestResult> {
    const tenant = await limits(ctx);
    tenant.assertType("html");
    // Refused targets get a clear 4xx now; the worker checks again when it fetches (DNS can change).
    try {
      await checkUrlTarget(item.url, { allowPrivate: deps.allowPrivateUrls });
    } catch (err) {
      if (!(err instanceof FetchError)) throw err;
      throw new AppError(
        err.code === "ingestion.url_forbidden"
          ? "ingestion.url_forbidden"
          : "ingestion.url_unreachable",
        err.message,
      );
    }
    return submit(
      ctx,
      {
        title: item.title ?? item.url,
        docType: "html",
        sourceUrl: item.url,
        externalId: item.externalId,
        metadata: item.metadata,
      },
      { kind: "url", url: item.url },
      { source: "url", maxDocuments: tenant.maxDocuments },
    );
  }

  return {
    submit,
    submitText,
    submitUrl,

    /** The tenant's limits, for the checks of direct uploads (uploads.ts). */
    limits,

    /**
     * Text documents of one `/api/ingest/batch` request, submitted together: each item is
     * checked on its own, and one that is refused (invalid, a type the tenant does not take,
     * over the document limit, …) is reported in its place without stopping the rest. The
     * accepted ones are recorded in one transaction (one multi-row insert of documents and one
     * of versions), their bytes stored concurrently, then marked stored with all their jobs
     * (one insert), events and audit rows in a second transaction, as `submit` does for one.
     * Items are taken in their order: of one identity (externalId, source URL, or content),
     * a later item is the next version of an earlier one, or its duplicate; under the document
     * limit, the first new documents are the ones accepted. See `submitBatchItems`.
     */
    async submitBatch(ctx: TenantContext, items: unknown[]): Promise<BatchResult> {
      const results = await submitBatchItems(ctx, items);
      const accepted = results.filter((r) => r.ok).length;
      return { results, accepted, rejected: results.length - accepted };
    },

    /**
     * A file sent as multipart/form-data. An announced oversize body is refused before any of
     * it is read; an unannounced one (chunked) is refused by the reader at the first byte over
     * the tenant's limit.
     */
    async submitFile(ctx: TenantContext, upload: FileUpload): Promise<IngestResult> {
      const tenant = await limits(ctx);
      if (upload.announcedBytes > tenant.maxFileBytes + FORM_OVERHEAD_BYTES) {
        throw fileTooLarge(tenant.maxFileBytes);
      }
      const form = await upload.read({
        fileBytes: tenant.maxFileBytes,
        fieldNames: FILE_FIELDS,
        fieldBytes: FILE_FIELD_BYTES,
      });
      const { input, content } = fileSubmission(form, tenant);
      return submit(ctx, input, content, { source: "file", maxDocuments: tenant.maxDocuments });
    },

    /**
     * New content for a document (PUT /api/documents/:id): a new version, titled and described
     * as the document is unless the update says otherwise.
     */
    async replaceContent(
      ctx: TenantContext,
      documentId: string,
      update: ContentUpdate,
    ): Promise<IngestResult> {
      const doc = await store.document(db, ctx.tenantId, documentId);
      if (!doc) throw notFound("document");
      return submit(
        ctx,
        {
          title: update.title ?? doc.title,
          docType: doc.doc_type,
          metadata: update.metadata ?? doc.metadata,
        },
        {
          kind: "bytes",
          bytes: Buffer.from(update.content, "utf8"),
          // New content arrives as text: kept in the document's own text format, else plain.
          format: doc.doc_type === "md" || doc.doc_type === "html" ? doc.doc_type : "txt",
        },
        { documentId: doc.id, source: "content_update" },
      );
    },
  };
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

/** A document's fields as a batch's earlier versions of it left them. */
function docFields(st: {
  fields: { title: string; metadata: Record<string, string>; sourceUrl: string | null };
}) {
  return { title: st.fields.title, metadata: st.fields.metadata, source_url: st.fields.sourceUrl };
}
