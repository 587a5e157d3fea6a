import { randomUUID } from "node:crypto";
import { AppError, assertNever, notFound } from "../../errors.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import type { Db, InTransaction, Queryable } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { EventsLog } from "../events/index.js";
import type {
  DocumentInput,
  DocumentsService,
  IngestionService,
  IngestResult,
} from "../ingestion/index.js";
import type {
  JobState,
  KnowledgeInput,
  KnowledgeItemDetail,
  KnowledgePage,
  KnowledgeType,
  KnowledgeWriteResult,
  Processing,
} from "./knowledge.schemas.js";
import { type KnowledgeItemRow, knowledgeStore as store } from "./knowledge.store.js";
import { knowledgeAudit } from "./knowledge-audit.js";

/** What an item shows when its backing document is gone (deleted through the documents API). */
const DOCUMENT_MISSING: Processing = {
  status: "failed",
  error: {
    code: "knowledge.document_missing",
    message: "the item's search document was deleted; update the item to index it again",
  },
  activeVersion: null,
  latestVersion: null,
};

const isNotFound = (err: unknown) => err instanceof AppError && err.code === "not_found";

const line = (label: string, value: string | undefined) => (value ? `${label}: ${value}` : null);

/**
 * The item as the document search indexes: Markdown with the item's main text first, so that
 * the first chunk of a long item is still about it, and every field a customer may ask about.
 */
export function renderItem(item: KnowledgeInput): { title: string; markdown: string } {
  const parts = (title: string, body: string, facts: Array<string | null>) => {
    const tail = facts.filter((f): f is string => f !== null);
    return {
      title,
      markdown: [`# ${title}`, body, ...(tail.length ? [tail.join("\n")] : [])].join("\n\n"),
    };
  };
  switch (item.type) {
    case "faq": {
      const f = item.fields;
      return parts(f.question, f.answer, [
        line("Category", f.category),
        line("Tags", f.tags?.join(", ")),
      ]);
    }
    case "menu_item": {
      const f = item.fields;
      return parts(f.name, f.description, [
        line("Price", `${f.price.toFixed(2)}${f.currency ? ` ${f.currency}` : ""}`),
        line("Category", f.category),
        line("Dietary", f.dietary?.join(", ")),
        line("Allergens", f.allergens?.join(", ")),
        f.available === false ? "Currently unavailable" : null,
      ]);
    }
    case "policy": {
      const f = item.fields;
      return parts(f.title, f.content, [
        line("Category", f.category),
        line("Effective from", f.effectiveDate),
      ]);
    }
    default:
      return assertNever(item);
  }
}

export interface KnowledgeDeps {
  db: Db;
  ingestion: IngestionService;
  documents: DocumentsService;
  /** Records every write, last in its transaction. */
  audit: Pick<AuditLog, "record">;
  /** knowledge_item_created/updated/deleted, in the write's transaction (before its audit row). */
  events: Pick<EventsLog, "log">;
}

/**
 * Knowledge items: structured content kept searchable through a backing document. Every
 * create and content-changing update submits the rendered item to ingestion (a new version,
 * processed by the `ingest.process` job); an unchanged rendering is a duplicate and queues
 * nothing. The API answers without waiting; an item's status is its document's.
 */
export function createKnowledgeService(deps: KnowledgeDeps) {
  const { db, ingestion, documents } = deps;

  function documentInput(id: string, item: KnowledgeInput, title: string): DocumentInput {
    const category = item.fields.category;
    return {
      title,
      docType: item.type,
      externalId: `knowledge:${id}`,
      metadata: {
        knowledgeType: item.type,
        knowledgeItemId: id,
        ...(category ? { category } : {}),
      },
    };
  }

  /** Submits the item's rendering as the next version of its document (or a new document). */
  async function submit(
    ctx: TenantContext,
    id: string,
    item: KnowledgeInput,
    documentId: string | null,
    tx: Queryable | undefined,
  ): Promise<IngestResult> {
    const { title, markdown } = renderItem(item);
    const input = documentInput(id, item, title);
    const content = {
      kind: "bytes" as const,
      bytes: Buffer.from(markdown, "utf8"),
      format: "md" as const,
    };
    if (documentId) {
      try {
        return await ingestion.submit(ctx, input, content, { documentId, knowledge: true, tx });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // The document went away under us: ingestion finds or recreates it by externalId.
      }
    }
    return ingestion.submit(ctx, input, content, { knowledge: true, tx });
  }

  async function removeDocument(
    ctx: TenantContext,
    documentId: string,
    opts: InTransaction = {},
  ): Promise<void> {
    try {
      await documents.delete(ctx, documentId, { knowledge: true, tx: opts.tx });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async function row(ctx: TenantContext, type: KnowledgeType, id: string, q: Queryable = db) {
    const found = await store.get(q, ctx.tenantId, type, id);
    if (!found) throw notFound("knowledge item");
    return found;
  }

  // A row of type T holds fields of type T: the routes validate them on the way in.
  const base = (r: KnowledgeItemRow) => ({
    id: r.id,
    type: r.type,
    fields: r.fields,
    documentId: r.document_id,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  });

  async function processing(ctx: TenantContext, r: KnowledgeItemRow): Promise<Processing> {
    if (!r.document_id) return DOCUMENT_MISSING;
    try {
      const { status, error, activeVersion, latestVersion } = await documents.get(
        ctx,
        r.document_id,
      );
      return { status, error, activeVersion, latestVersion };
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return DOCUMENT_MISSING;
    }
  }

  async function detail<T extends KnowledgeType>(
    ctx: TenantContext,
    r: KnowledgeItemRow,
    tx?: Queryable,
  ): Promise<KnowledgeItemDetail<T>> {
    let state: Processing & { job: JobState } = { ...DOCUMENT_MISSING, job: null };
    if (r.document_id) {
      try {
        const s = await documents.status(ctx, r.document_id, { tx });
        const { status, error, activeVersion, latestVersion, job } = s;
        state = { status, error, activeVersion, latestVersion, job };
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return { ...base(r), ...state } as KnowledgeItemDetail<T>;
  }

  const service = {
    /** Items of one type, newest first, each with its document's processing state. */
    async list<T extends KnowledgeType>(
      ctx: TenantContext,
      type: T,
      opts: { limit: number; cursor?: string | undefined; category?: string | undefined },
    ): Promise<KnowledgePage<T>> {
      const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
      const rows = await store.list(db, ctx.tenantId, type, {
        limit: opts.limit + 1,
        ...(after ? { after } : {}),
        ...(opts.category ? { category: opts.category } : {}),
      });
      const page = rows.slice(0, opts.limit);
      const last = page[page.length - 1];
      const items = await Promise.all(
        page.map(async (r) => ({ ...base(r), ...(await processing(ctx, r)) })),
      );
      return {
        items,
        nextCursor:
          rows.length > opts.limit && last ? encodeCursor(last.created_at, last.id) : null,
      } as KnowledgePage<T>;
    },

    async get<T extends KnowledgeType>(
      ctx: TenantContext,
      type: T,
      id: string,
    ): Promise<KnowledgeItemDetail<T>> {
      return detail<T>(ctx, await row(ctx, type, id));
    },

    /**
     * Creates the item. The document is submitted first, under the item's id chosen here, so
     * that an item never exists without its document; a refusal (e.g. the tenant's document
     * limit) leaves nothing behind.
     *
     * Always in one transaction, the caller's (`opts.tx`) or its own: the item, its document,
     * version, job and audit row commit or roll back together (with the caller's writes), and
     * the job runs only once they commit. The transaction holds the tenant's audit chain from
     * the audit row to the commit, and the document's locks from the submission. The rendered
     * item's blob is written before the commit and stays after a rollback, referred to by
     * nothing (see `IngestionService.submit`). The answer is as the transaction sees it.
     */
    async create(
      ctx: TenantContext,
      item: KnowledgeInput,
      opts: InTransaction = {},
    ): Promise<KnowledgeWriteResult> {
      // Always in a transaction: the item, its document and its audit row commit together.
      if (!opts.tx) return db.transaction((tx) => service.create(ctx, item, { tx }));
      const id = randomUUID();
      const { tx } = opts;
      const ingest = await submit(ctx, id, item, null, tx);
      // If it fails, the rollback takes the document too.
      const created = await store.insert(tx, {
        id,
        tenantId: ctx.tenantId,
        type: item.type,
        fields: item.fields,
        documentId: ingest.documentId,
        documentVersion: ingest.version,
      });
      const result = { ...(await detail(ctx, created, tx)), ingest } as KnowledgeWriteResult;
      await deps.events.log(
        ctx,
        "knowledge_item_created",
        { itemId: id, itemType: item.type, documentId: ingest.documentId },
        { tx },
      );
      await deps.audit.record(ctx, knowledgeAudit.created(item.type, id, item.fields, ingest), {
        tx,
      });
      return result;
    },

    /**
     * Replaces the item's fields. The new rendering is submitted before the fields are saved,
     * so a refused submission leaves the item as it was; an unchanged rendering is a duplicate.
     * In one transaction, as `create`: the fields, the new version, its job and the audit row
     * (none when nothing changed) commit or roll back together.
     */
    async update(
      ctx: TenantContext,
      id: string,
      item: KnowledgeInput,
      opts: InTransaction = {},
    ): Promise<KnowledgeWriteResult> {
      if (!opts.tx) return db.transaction((tx) => service.update(ctx, id, item, { tx }));
      const { tx } = opts;
      const q = tx ?? db;
      const current = await row(ctx, item.type, id, q);
      const ingest = await submit(ctx, id, item, current.document_id, tx);
      // Read again under the document's lock: a concurrent update committed before it is the
      // state this one changes.
      const before = (await store.get(q, ctx.tenantId, item.type, id)) ?? current;
      const updated =
        (await store.update(q, ctx.tenantId, item.type, id, {
          fields: item.fields,
          documentId: ingest.documentId,
          documentVersion: ingest.version,
        })) ??
        // A concurrent update submitted a newer version and saved its fields: they stand.
        (await store.get(q, ctx.tenantId, item.type, id));
      if (!updated) {
        // Deleted meanwhile: the submission may have recreated its document; do not keep it.
        await removeDocument(ctx, ingest.documentId, { tx });
        throw notFound("knowledge item");
      }
      const result = { ...(await detail(ctx, updated, tx)), ingest } as KnowledgeWriteResult;
      const audit = knowledgeAudit.updated(item.type, id, before.fields, item.fields, ingest);
      if (audit) {
        await deps.events.log(
          ctx,
          "knowledge_item_updated",
          { itemId: id, itemType: item.type, version: ingest.version },
          { tx },
        );
        await deps.audit.record(ctx, audit, { tx });
      }
      return result;
    },

    /**
     * Deletes the item and its document (chunks and blobs with it); search stops showing it at
     * once. In one transaction, as `create`: both rows and the audit row go together; the
     * document's chunks and blobs once it has committed (see the documents service).
     */
    async delete(
      ctx: TenantContext,
      type: KnowledgeType,
      id: string,
      opts: InTransaction = {},
    ): Promise<void> {
      if (!opts.tx) return db.transaction((tx) => service.delete(ctx, type, id, { tx }));
      const current = await row(ctx, type, id, opts.tx);
      if (current.document_id) await removeDocument(ctx, current.document_id, opts);
      // A concurrent delete that went first leaves nothing to delete, nor to record.
      const gone = await store.delete(opts.tx ?? db, ctx.tenantId, type, id);
      if (gone) {
        const audit = knowledgeAudit.deleted(type, id, gone.fields, gone.document_id);
        await deps.events.log(
          ctx,
          "knowledge_item_deleted",
          { itemId: id, itemType: type },
          {
            tx: opts.tx,
          },
        );
        await deps.audit.record(ctx, audit, { tx: opts.tx });
      }
    },
  };
  return service;
}

export type KnowledgeService = ReturnType<typeof createKnowledgeService>;
