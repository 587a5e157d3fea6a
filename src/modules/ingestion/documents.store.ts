import {
  keysetPage,
  kysely,
  type PageAfter,
  type Patch,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";

const DOCUMENT_COLUMNS = [
  "id",
  "tenant_id",
  "external_id",
  "title",
  "doc_type",
  "source_url",
  "metadata",
  "status",
  "error_code",
  "error_message",
  "active_version",
  "latest_version",
  "content_hash",
  "blob_key",
  "file_size_bytes",
  "page_count",
  "chunk_count",
  "character_count",
  "embedding_tokens",
  "embedding_cost_usd",
  "processing_time_ms",
  "created_at",
  "updated_at",
] as const;
const VERSION_COLUMNS = [
  "id",
  "tenant_id",
  "document_id",
  "version",
  "content_hash",
  "blob_key",
  "content_type",
  "status",
  "is_active",
  "job_id",
  "chunk_count",
  "character_count",
  "page_count",
  "embedding_tokens",
  "embedding_model",
  "embedding_cost_usd",
  "error_code",
  "error_message",
  "created_at",
  "activated_at",
  "content_stored_at",
] as const;
/** The document's columns qualified by the alias `d`, for a query that joins its versions. */
const D_COLUMNS = DOCUMENT_COLUMNS.map((c) => `d.${c}` as const);
/** Version states that are live or on their way (not failed, duplicate or superseded). */
const LIVE = ["pending", "processing", "active"] as const;

/**
 * The live versions holding one of `hashes` that are their document's newest live version, of
 * documents whose identity is their content (no external id, no URL), oldest document first:
 * what a submission of that content is a duplicate or a new version of.
 */
function newestLiveWithContent(q: Queryable, tenantId: string, hashes: readonly string[]) {
  return kysely(q)
    .selectFrom("document_versions as v")
    .innerJoin("documents as d", "d.id", "v.document_id")
    .where("v.tenant_id", "=", tenantId)
    .where("v.content_hash", "in", [...hashes])
    .where("v.status", "in", LIVE)
    .where("d.external_id", "is", null)
    .where("d.source_url", "is", null)
    .where("v.version", "=", (eb) =>
      eb
        .selectFrom("document_versions as w")
        .select((w) => w.fn.max("w.version").as("newest"))
        .whereRef("w.document_id", "=", "d.id")
        .where("w.status", "in", LIVE),
    )
    .orderBy("d.created_at");
}

type StoredDocument = Row<"documents", (typeof DOCUMENT_COLUMNS)[number]>;

/** A document as stored. `metadata` is jsonb, written only by this store as string pairs. */
export type DocumentRow = Omit<StoredDocument, "metadata"> & { metadata: Record<string, string> };
export type DocumentStatus = DocumentRow["status"];
/**
 * A version as stored. `content_stored_at` is null while the request that recorded it has not
 * stored its bytes (migration 0010).
 */
export type VersionRow = Row<"document_versions", (typeof VERSION_COLUMNS)[number]>;
export type VersionStatus = VersionRow["status"];

/** What a change of a document may set; `updated_at` is the store's. */
export type DocumentPatch = Omit<
  Patch<"documents">,
  "id" | "tenant_id" | "created_at" | "updated_at" | "metadata"
> & { metadata?: Record<string, string> };
/** What a change of a version may set; its identity is fixed. */
export type VersionPatch = Omit<
  Patch<"document_versions">,
  "id" | "tenant_id" | "document_id" | "version" | "created_at"
>;

const asDocument = (row: StoredDocument): DocumentRow => ({
  ...row,
  metadata: row.metadata as Record<string, string>,
});
const asDocumentOrNone = (row: StoredDocument | undefined) => (row ? asDocument(row) : undefined);

/** SQL for documents and document_versions. Every query filters by tenant id. */
export const documentsStore = {
  async insertDocument(
    q: Queryable,
    d: {
      tenantId: string;
      externalId: string | null;
      title: string;
      docType: string;
      sourceUrl: string | null;
      metadata: Record<string, string>;
      /** The version the caller records with it (the document is then `processing`). */
      latestVersion?: number;
    },
  ): Promise<DocumentRow> {
    const row = await kysely(q)
      .insertInto("documents")
      .values({
        tenant_id: d.tenantId,
        external_id: d.externalId,
        title: d.title,
        doc_type: d.docType,
        source_url: d.sourceUrl,
        metadata: JSON.stringify(d.metadata),
        ...(d.latestVersion !== undefined
          ? { latest_version: d.latestVersion, status: "processing" as const }
          : {}),
      })
      .returning(DOCUMENT_COLUMNS)
      .executeTakeFirstOrThrow();
    return asDocument(row);
  },

  /** The document, locked for a change of versions. */
  async documentForUpdate(
    q: Queryable,
    tenantId: string,
    id: string,
  ): Promise<DocumentRow | undefined> {
    const row = await kysely(q)
      .selectFrom("documents")
      .select(DOCUMENT_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .forUpdate()
      .executeTakeFirst();
    return asDocumentOrNone(row);
  },

  /**
   * The document a submission without a document id is for, locked: by externalId; else by
   * source URL (among documents without an externalId); else, for content with no name of its
   * own, the document without either whose newest live version has this content.
   */
  async documentByIdentity(
    q: Queryable,
    tenantId: string,
    identity: {
      externalId?: string | null;
      sourceUrl?: string | null;
      contentHash?: string | null;
    },
  ): Promise<DocumentRow | undefined> {
    const k = kysely(q);
    if (identity.externalId) {
      const row = await k
        .selectFrom("documents")
        .select(DOCUMENT_COLUMNS)
        .where("tenant_id", "=", tenantId)
        .where("external_id", "=", identity.externalId)
        .forUpdate()
        .executeTakeFirst();
      return asDocumentOrNone(row);
    }
    if (identity.sourceUrl) {
      const row = await k
        .selectFrom("documents")
        .select(DOCUMENT_COLUMNS)
        .where("tenant_id", "=", tenantId)
        .where("source_url", "=", identity.sourceUrl)
        .where("external_id", "is", null)
        .orderBy("created_at")
        .limit(1)
        .forUpdate()
        .executeTakeFirst();
      return asDocumentOrNone(row);
    }
    if (identity.contentHash) {
      const row = await newestLiveWithContent(q, tenantId, [identity.contentHash])
        .select(D_COLUMNS)
        .limit(1)
        .forUpdate("d")
        .executeTakeFirst();
      return asDocumentOrNone(row);
    }
    return undefined;
  },

  /**
   * Takes the advisory locks named `keys` until the transaction `q` ends, in one statement and
   * in sorted order (two callers that share keys cannot each hold one the other waits for).
   */
  async lockAllUntilCommit(q: Queryable, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const sorted = [...new Set(keys)].sort();
    await sql`select pg_advisory_xact_lock(hashtextextended(k, 0))
      from unnest(${sorted}::text[]) with ordinality as u(k, n) order by n`.execute(kysely(q));
  },

  /**
   * The tenant's document count, its row (migration 0024) locked until the transaction ends:
   * documents created meanwhile by others wait for the commit (their insert updates the row).
   */
  async lockDocumentCount(q: Queryable, tenantId: string): Promise<number> {
    const row = await kysely(q)
      .insertInto("tenant_document_counts")
      .values({ tenant_id: tenantId })
      .onConflict((oc) =>
        oc.column("tenant_id").doUpdateSet({ documents: sql`tenant_document_counts.documents` }),
      )
      .returning("documents")
      .executeTakeFirstOrThrow();
    return Number(row.documents);
  },

  /**
   * `documentByIdentity` for many identities at once (a batch): the documents found, locked,
   * by identity key (`external:…`, `url:…`, `content:…`, as the ingestion service names them).
   * At most four statements, whatever the number of identities.
   */
  async documentsByIdentities(
    q: Queryable,
    tenantId: string,
    identities: { externalIds: string[]; sourceUrls: string[]; contentHashes: string[] },
  ): Promise<Map<string, DocumentRow>> {
    const k = kysely(q);
    const found = new Map<string, string>();
    if (identities.externalIds.length > 0) {
      const rows = await k
        .selectFrom("documents")
        .select(["id", "external_id"])
        .where("tenant_id", "=", tenantId)
        .where("external_id", "in", identities.externalIds)
        .execute();
      for (const r of rows) found.set(`external:${r.external_id}`, r.id);
    }
    if (identities.sourceUrls.length > 0) {
      const rows = await k
        .selectFrom("documents")
        .select(["id", "source_url"])
        .where("tenant_id", "=", tenantId)
        .where("source_url", "in", identities.sourceUrls)
        .where("external_id", "is", null)
        .orderBy("created_at")
        .execute();
      for (const r of rows) {
        const key = `url:${r.source_url}`;
        if (!found.has(key)) found.set(key, r.id);
      }
    }
    if (identities.contentHashes.length > 0) {
      const rows = await newestLiveWithContent(q, tenantId, identities.contentHashes)
        .select(["d.id", "v.content_hash"])
        .execute();
      for (const r of rows) {
        const key = `content:${r.content_hash}`;
        if (!found.has(key)) found.set(key, r.id);
      }
    }
    const out = new Map<string, DocumentRow>();
    if (found.size === 0) return out;
    // Locked as `documentByIdentity` locks them, in id order; read again under the lock.
    const rows = await k
      .selectFrom("documents")
      .select(DOCUMENT_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "in", [...new Set(found.values())])
      .orderBy("id")
      .forUpdate()
      .execute();
    const byId = new Map(rows.map((r) => [r.id, asDocument(r)]));
    for (const [key, id] of found) {
      const doc = byId.get(id);
      if (doc) out.set(key, doc);
    }
    return out;
  },

  /** Of each document, its newest version that is live or on its way (not failed). */
  async newestLiveVersions(
    q: Queryable,
    tenantId: string,
    documentIds: readonly string[],
  ): Promise<Map<string, VersionRow>> {
    if (documentIds.length === 0) return new Map();
    const rows = await kysely(q)
      .selectFrom("document_versions")
      .select(VERSION_COLUMNS)
      .distinctOn("document_id")
      .where("tenant_id", "=", tenantId)
      .where("document_id", "in", [...documentIds])
      .where("status", "in", LIVE)
      .orderBy("document_id")
      .orderBy("version", "desc")
      .execute();
    return new Map(rows.map((r) => [r.document_id, r]));
  },

  /** `insertDocument` for many documents, ids chosen by the caller, in one statement. */
  async insertDocuments(
    q: Queryable,
    docs: ReadonlyArray<{
      id: string;
      tenantId: string;
      externalId: string | null;
      title: string;
      docType: string;
      sourceUrl: string | null;
      metadata: Record<string, string>;
      latestVersion: number;
    }>,
  ): Promise<DocumentRow[]> {
    if (docs.length === 0) return [];
    const rows = await kysely(q)
      .insertInto("documents")
      .values(
        docs.map((d) => ({
          id: d.id,
          tenant_id: d.tenantId,
          external_id: d.externalId,
          title: d.title,
          doc_type: d.docType,
          source_url: d.sourceUrl,
          metadata: JSON.stringify(d.metadata),
          latest_version: d.latestVersion,
          status: "processing" as const,
        })),
      )
      .returning(DOCUMENT_COLUMNS)
      .execute();
    return rows.map(asDocument);
  },

  /** `insertVersion` for many versions (bytes, not yet stored), in one statement. */
  async insertVersions(
    q: Queryable,
    versions: ReadonlyArray<{
      tenantId: string;
      documentId: string;
      version: number;
      contentHash: string;
      blobKey: string;
      contentType: string;
      jobId: string;
    }>,
  ): Promise<VersionRow[]> {
    if (versions.length === 0) return [];
    return kysely(q)
      .insertInto("document_versions")
      .values(
        versions.map((v) => ({
          tenant_id: v.tenantId,
          document_id: v.documentId,
          version: v.version,
          content_hash: v.contentHash,
          blob_key: v.blobKey,
          content_type: v.contentType,
          job_id: v.jobId,
          content_stored_at: null,
        })),
      )
      .returning(VERSION_COLUMNS)
      .execute();
  },

  /** `markVersionStored` for many versions: the ids of those marked (gone ones are absent). */
  async markVersionsStored(
    q: Queryable,
    tenantId: string,
    ids: readonly string[],
  ): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await kysely(q)
      .updateTable("document_versions")
      .set({ content_stored_at: sql`now()` })
      .where("tenant_id", "=", tenantId)
      .where("id", "in", [...ids])
      .returning("id")
      .execute();
    return new Set(rows.map((r) => r.id));
  },

  /** Takes the advisory lock named `key` until the transaction `q` ends (waits its turn). */
  async lockUntilCommit(q: Queryable, key: string): Promise<void> {
    await sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(kysely(q));
  },

  async document(q: Queryable, tenantId: string, id: string): Promise<DocumentRow | undefined> {
    const row = await kysely(q)
      .selectFrom("documents")
      .select(DOCUMENT_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .executeTakeFirst();
    return asDocumentOrNone(row);
  },

  /**
   * The tenant's documents, from its maintained figures (migration 0024): in a transaction
   * that created one, its own included.
   */
  async countDocuments(q: Queryable, tenantId: string): Promise<number> {
    return (await documentsStore.storageLevel(q, tenantId)).documents;
  },

  /**
   * The tenant's storage level: its documents and the bytes of their stored content (the
   * usage ledger's gauges `documents_stored` and `storage_bytes`), as `count(*)` and
   * `sum(file_size_bytes)` over its documents give them, read from the figures the triggers
   * of migration 0024 keep.
   */
  async storageLevel(
    q: Queryable,
    tenantId: string,
  ): Promise<{ documents: number; bytes: number }> {
    const row = await kysely(q)
      .selectFrom("tenant_document_counts")
      .select(["documents", "stored_bytes"])
      .where("tenant_id", "=", tenantId)
      .executeTakeFirst();
    return { documents: Number(row?.documents ?? 0), bytes: Number(row?.stored_bytes ?? 0) };
  },

  /** Storage levels of the given tenants (absent: no documents, level 0). */
  async storageLevels(
    q: Queryable,
    tenantIds: readonly string[],
  ): Promise<Map<string, { documents: number; bytes: number }>> {
    if (tenantIds.length === 0) return new Map();
    const rows = await kysely(q)
      .selectFrom("tenant_document_counts")
      .select(["tenant_id", "documents", "stored_bytes"])
      .where("tenant_id", "in", tenantIds)
      .execute();
    return new Map(
      rows.map((r) => [
        r.tenant_id,
        { documents: Number(r.documents), bytes: Number(r.stored_bytes) },
      ]),
    );
  },

  /**
   * The same figures counted from the documents themselves (a scan): what the maintained row
   * must equal, for the reconciliation check and the tests.
   */
  async countedLevel(
    q: Queryable,
    tenantId: string,
  ): Promise<{ documents: number; bytes: number }> {
    const row = await kysely(q)
      .selectFrom("documents")
      .select((eb) => [
        eb.fn.countAll<number>().as("documents"),
        sql<string>`coalesce(sum(file_size_bytes), 0)::text`.as("bytes"),
      ])
      .where("tenant_id", "=", tenantId)
      .executeTakeFirst();
    return { documents: Number(row?.documents ?? 0), bytes: Number(row?.bytes ?? 0) };
  },

  /**
   * Sets versions' ledger costs and, where the version is its document's active one, the
   * document's (re-rating). Each item names its tenant.
   */
  async setEmbeddingCosts(
    q: Queryable,
    items: ReadonlyArray<{ tenantId: string; versionId: string; costUsd: string }>,
  ): Promise<void> {
    if (items.length === 0) return;
    const k = kysely(q);
    const tenants = items.map((i) => i.tenantId);
    const ids = items.map((i) => i.versionId);
    const costs = items.map((i) => i.costUsd);
    await sql`
      update document_versions v set embedding_cost_usd = x.cost
      from unnest(${tenants}::uuid[], ${ids}::uuid[], ${costs}::numeric[]) as x(tenant_id, id, cost)
      where v.tenant_id = x.tenant_id and v.id = x.id`.execute(k);
    await sql`
      update documents d set embedding_cost_usd = v.embedding_cost_usd, updated_at = now()
      from document_versions v
      join unnest(${tenants}::uuid[], ${ids}::uuid[]) as x(tenant_id, id)
        on v.tenant_id = x.tenant_id and v.id = x.id
      where d.tenant_id = v.tenant_id and d.id = v.document_id
        and d.active_version = v.version`.execute(k);
  },

  /** Documents newest first, keyset-paginated by (created_at, id) (see platform/db/page.ts). */
  async listDocuments(
    q: Queryable,
    tenantId: string,
    opts: {
      limit: number;
      after?: PageAfter | undefined;
      status?: DocumentStatus | undefined;
      docType?: string | undefined;
    },
  ): Promise<DocumentRow[]> {
    let query = kysely(q)
      .selectFrom("documents")
      .select(DOCUMENT_COLUMNS)
      .where("tenant_id", "=", tenantId);
    if (opts.status) query = query.where("status", "=", opts.status);
    if (opts.docType) query = query.where("doc_type", "=", opts.docType);
    return (await keysetPage(query, opts).execute()).map(asDocument);
  },

  /**
   * Sets the given columns (undefined ones are left alone) and `updated_at`, so that an empty
   * patch is still a valid UPDATE; returns the whole row.
   */
  async updateDocument(
    q: Queryable,
    tenantId: string,
    id: string,
    patch: DocumentPatch,
  ): Promise<DocumentRow | undefined> {
    const { metadata, ...rest } = patch;
    const row = await kysely(q)
      .updateTable("documents")
      .set({
        ...rest,
        metadata: metadata === undefined ? undefined : JSON.stringify(metadata),
        updated_at: sql`now()`,
      })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .returning(DOCUMENT_COLUMNS)
      .executeTakeFirst();
    return asDocumentOrNone(row);
  },

  /**
   * Deletes the document unless it backs a knowledge item and `knowledge` is false; the check
   * and the delete are one statement, so no concurrent change slips between them.
   */
  async deleteDocument(
    q: Queryable,
    tenantId: string,
    id: string,
    opts: { knowledge: boolean },
  ): Promise<DocumentRow | undefined> {
    let query = kysely(q)
      .deleteFrom("documents")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id);
    if (!opts.knowledge) {
      query = query.where((eb) =>
        eb.or([
          eb("external_id", "is", null),
          eb.not(eb.fn<boolean>("starts_with", ["external_id", sql.lit("knowledge:")])),
        ]),
      );
    }
    return asDocumentOrNone(await query.returning(DOCUMENT_COLUMNS).executeTakeFirst());
  },

  async insertVersion(
    q: Queryable,
    v: {
      tenantId: string;
      documentId: string;
      version: number;
      contentHash: string | null;
      blobKey: string | null;
      contentType: string;
      /** The processing job's id, recorded before the job is enqueued. */
      jobId: string;
      /** Whether the content is in place already (a URL); bytes are marked once stored. */
      contentStored: boolean;
    },
  ): Promise<VersionRow> {
    return kysely(q)
      .insertInto("document_versions")
      .values({
        tenant_id: v.tenantId,
        document_id: v.documentId,
        version: v.version,
        content_hash: v.contentHash,
        blob_key: v.blobKey,
        content_type: v.contentType,
        job_id: v.jobId,
        content_stored_at: v.contentStored ? sql`now()` : null,
      })
      .returning(VERSION_COLUMNS)
      .executeTakeFirstOrThrow();
  },

  async version(
    q: Queryable,
    tenantId: string,
    documentId: string,
    version: number,
  ): Promise<VersionRow | undefined> {
    return kysely(q)
      .selectFrom("document_versions")
      .select(VERSION_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .where("version", "=", version)
      .executeTakeFirst();
  },

  /**
   * Marks the version `processing` for a run of its job and returns it with its document, in
   * one statement; undefined when it is gone, or done (active, superseded, duplicate).
   */
  async claimVersion(
    q: Queryable,
    tenantId: string,
    documentId: string,
    version: number,
  ): Promise<{ version: VersionRow; document: DocumentRow } | undefined> {
    const row = await kysely(q)
      .with("v", (db) =>
        db
          .updateTable("document_versions")
          .set({ status: "processing" })
          .where("tenant_id", "=", tenantId)
          .where("document_id", "=", documentId)
          .where("version", "=", version)
          .where("status", "not in", ["active", "superseded", "duplicate"])
          .returning(VERSION_COLUMNS),
      )
      .selectFrom("v")
      .innerJoin("documents as d", (j) =>
        j.onRef("d.id", "=", "v.document_id").onRef("d.tenant_id", "=", "v.tenant_id"),
      )
      .select([
        ...VERSION_COLUMNS.map((c) => sql.ref(`v.${c}`).as(`v_${c}`)),
        ...DOCUMENT_COLUMNS.map((c) => sql.ref(`d.${c}`).as(`d_${c}`)),
      ])
      .executeTakeFirst();
    if (!row) return undefined;
    const r = row as Record<string, unknown>;
    const pick = (prefix: string, cols: readonly string[]) =>
      Object.fromEntries(cols.map((c) => [c, r[`${prefix}${c}`]]));
    return {
      version: pick("v_", VERSION_COLUMNS) as VersionRow,
      document: asDocument(pick("d_", DOCUMENT_COLUMNS) as StoredDocument),
    };
  },

  async versions(q: Queryable, tenantId: string, documentId: string): Promise<VersionRow[]> {
    return kysely(q)
      .selectFrom("document_versions")
      .select(VERSION_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .orderBy("version", "desc")
      .execute();
  },

  /** A version of the document with this content that is live or on its way (not failed). */
  async versionWithHash(
    q: Queryable,
    tenantId: string,
    documentId: string,
    hash: string,
  ): Promise<VersionRow | undefined> {
    return kysely(q)
      .selectFrom("document_versions")
      .select(VERSION_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .where("content_hash", "=", hash)
      .where("status", "in", LIVE)
      .orderBy("version", "desc")
      .limit(1)
      .executeTakeFirst();
  },

  /** The number of the document's newest version that is live or on its way (not failed). */
  async newestLiveVersion(
    q: Queryable,
    tenantId: string,
    documentId: string,
  ): Promise<number | undefined> {
    const row = await kysely(q)
      .selectFrom("document_versions")
      .select((eb) => eb.fn.max("version").as("version"))
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .where("status", "in", LIVE)
      .executeTakeFirst();
    return row?.version ?? undefined;
  },

  /** The newest version of the document, whatever its state. */
  async newestVersion(
    q: Queryable,
    tenantId: string,
    documentId: string,
  ): Promise<Pick<VersionRow, "version" | "status" | "error_code" | "error_message"> | undefined> {
    return kysely(q)
      .selectFrom("document_versions")
      .select(["version", "status", "error_code", "error_message"])
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .orderBy("version", "desc")
      .limit(1)
      .executeTakeFirst();
  },

  /**
   * Sets the given columns (undefined ones are left alone). A version has no column of the
   * store's own to set, so a patch with nothing in it sends no statement.
   */
  async updateVersion(
    q: Queryable,
    tenantId: string,
    id: string,
    patch: VersionPatch,
  ): Promise<void> {
    if (Object.values(patch).every((v) => v === undefined)) return;
    await kysely(q)
      .updateTable("document_versions")
      .set(patch)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .execute();
  },

  /** Marks the version's bytes stored; false when there is no such version (any more). */
  async markVersionStored(q: Queryable, tenantId: string, id: string): Promise<boolean> {
    const { numUpdatedRows } = await kysely(q)
      .updateTable("document_versions")
      .set({ content_stored_at: sql`now()` })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .executeTakeFirst();
    return numUpdatedRows > 0n;
  },

  /** Deletes the version if its bytes were never stored and no job took it; true if it went. */
  async deleteUnstoredVersion(q: Queryable, tenantId: string, id: string): Promise<boolean> {
    const { numDeletedRows } = await kysely(q)
      .deleteFrom("document_versions")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .where("content_stored_at", "is", null)
      .where("status", "=", "pending")
      .executeTakeFirst();
    return numDeletedRows > 0n;
  },

  /** Deletes the document with whatever versions it has (cascade); no knowledge check. */
  async removeDocument(q: Queryable, tenantId: string, id: string): Promise<void> {
    await kysely(q)
      .deleteFrom("documents")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .execute();
  },

  /**
   * Makes `version` the only active one, with `figures` set on it; the previous active one
   * becomes superseded.
   */
  async activateVersion(
    q: Queryable,
    tenantId: string,
    documentId: string,
    version: number,
    figures: VersionPatch = {},
  ): Promise<void> {
    // Two statements, the old row first: the partial unique index `document_versions_one_active`
    // is checked row by row during an UPDATE, so one statement that flips both rows fails
    // whenever it reaches the new row before the old one.
    const k = kysely(q);
    await k
      .updateTable("document_versions")
      .set({ is_active: false, status: "superseded" })
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .where("is_active", "=", true)
      .where("version", "<>", version)
      .execute();
    await k
      .updateTable("document_versions")
      .set({ ...figures, is_active: true, status: "active", activated_at: sql`now()` })
      .where("tenant_id", "=", tenantId)
      .where("document_id", "=", documentId)
      .where("version", "=", version)
      .execute();
  },

  /**
   * The document locked for its version's activation, and the tenant's storage level as it
   * will be once the document holds `bytes` (its other documents as this statement sees them):
   * one statement instead of the lock and a count after it. A change committed by another
   * transaction while this one waited for the lock is not in the level; the next change and
   * the daily snapshot state the level again.
   */
  async documentForActivation(
    q: Queryable,
    tenantId: string,
    id: string,
    bytes: number,
  ): Promise<{ document: DocumentRow; level: { documents: number; bytes: number } } | undefined> {
    const row = await kysely(q)
      .selectFrom("documents as d")
      .select(DOCUMENT_COLUMNS.map((c) => `d.${c}` as const))
      .select([
        sql<number>`(select count(*) from documents o where o.tenant_id = ${tenantId})::int`.as(
          "level_documents",
        ),
        sql<string>`(select coalesce(sum(o.file_size_bytes), 0) from documents o
                     where o.tenant_id = ${tenantId} and o.id <> d.id)::text`.as("level_bytes"),
      ])
      .where("d.tenant_id", "=", tenantId)
      .where("d.id", "=", id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) return undefined;
    const { level_documents, level_bytes, ...doc } = row;
    return {
      document: asDocument(doc as StoredDocument),
      level: { documents: Number(level_documents), bytes: Number(level_bytes) + bytes },
    };
  },

  /**
   * Embedded versions (their embedding figures set: `embedding_model` not null) that are in
   * `versionIds` or were embedded in [from, to) (activation time, or creation for a version
   * superseded before it went live), with their document's figure; and which of `documentIds`
   * still exist. For usage reconciliation.
   */
  async embeddingFigures(
    q: Queryable,
    tenantId: string,
    w: { versionIds: string[]; documentIds: string[]; from: Date; to: Date },
  ) {
    const embeddedAt = sql<Date>`coalesce(v.activated_at, v.created_at)`;
    const versions = await kysely(q)
      .selectFrom("document_versions as v")
      .innerJoin("documents as d", (j) =>
        j.onRef("d.id", "=", "v.document_id").onRef("d.tenant_id", "=", "v.tenant_id"),
      )
      .select([
        "v.id",
        "v.document_id",
        "v.version",
        "v.embedding_tokens",
        "v.is_active",
        "d.embedding_tokens as document_embedding_tokens",
        embeddedAt.as("embedded_at"),
      ])
      .where("v.tenant_id", "=", tenantId)
      .where("v.embedding_model", "is not", null)
      .where((eb) =>
        eb.or([
          eb(sql<boolean>`v.id = any(${w.versionIds}::uuid[])`, "=", true),
          eb.and([eb(embeddedAt, ">=", w.from), eb(embeddedAt, "<", w.to)]),
        ]),
      )
      .execute();
    const documents =
      w.documentIds.length === 0
        ? []
        : await kysely(q)
            .selectFrom("documents")
            .select("id")
            .where("tenant_id", "=", tenantId)
            .where(sql<boolean>`id = any(${w.documentIds}::uuid[])`)
            .execute();
    return { versions, existingDocumentIds: documents.map((d) => d.id) };
  },

  /** Tenants with a version embedded in [from, to) (as `embeddingFigures` dates them). */
  async tenantsWithEmbeddings(q: Queryable, from: Date, to: Date): Promise<string[]> {
    const embeddedAt = sql<Date>`coalesce(activated_at, created_at)`;
    const rows = await kysely(q)
      .selectFrom("document_versions")
      .select("tenant_id")
      .distinct()
      .where("embedding_model", "is not", null)
      .where(embeddedAt, ">=", from)
      .where(embeddedAt, "<", to)
      .execute();
    return rows.map((r) => r.tenant_id);
  },

  /** Of these documents, the active version of each (the only chunks search may show). */
  async activeVersions(
    q: Queryable,
    tenantId: string,
    documentIds: string[],
  ): Promise<Map<string, number>> {
    if (documentIds.length === 0) return new Map();
    // One array parameter rather than one per id: search asks for many at once.
    const rows = await kysely(q)
      .selectFrom("document_versions")
      .select(["document_id", "version"])
      .where("tenant_id", "=", tenantId)
      .where("is_active", "=", true)
      .where(sql<boolean>`document_id = any(${documentIds}::uuid[])`)
      .execute();
    return new Map(rows.map((r) => [r.document_id, r.version]));
  },
};
