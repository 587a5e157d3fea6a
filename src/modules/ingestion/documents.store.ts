import type { Queryable } from "../../platform/db/index.js";
import { pageQuery } from "../../platform/db/page.js";

export type DocumentStatus = "processing" | "completed" | "failed";
export type VersionStatus =
  | "pending"
  | "processing"
  | "active"
  | "superseded"
  | "duplicate"
  | "failed";

export interface DocumentRow {
  id: string;
  tenant_id: string;
  external_id: string | null;
  title: string;
  doc_type: string;
  source_url: string | null;
  metadata: Record<string, string>;
  status: DocumentStatus;
  error_code: string | null;
  error_message: string | null;
  active_version: number | null;
  latest_version: number;
  content_hash: string | null;
  blob_key: string | null;
  file_size_bytes: number | null;
  page_count: number | null;
  chunk_count: number;
  character_count: number;
  embedding_tokens: number;
  embedding_cost_usd: string;
  processing_time_ms: number | null;
  created_at: Date;
  updated_at: Date;
}

export interface VersionRow {
  id: string;
  tenant_id: string;
  document_id: string;
  version: number;
  content_hash: string | null;
  blob_key: string | null;
  content_type: string;
  status: VersionStatus;
  is_active: boolean;
  job_id: string | null;
  chunk_count: number;
  character_count: number;
  page_count: number | null;
  embedding_tokens: number;
  embedding_model: string | null;
  error_code: string | null;
  error_message: string | null;
  created_at: Date;
  activated_at: Date | null;
  /** Null while the request that recorded it has not stored its bytes (migration 0010). */
  content_stored_at: Date | null;
}

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
    },
  ): Promise<DocumentRow> {
    const rows = await q.query<DocumentRow>(
      `insert into documents (tenant_id, external_id, title, doc_type, source_url, metadata)
       values ($1, $2, $3, $4, $5, $6) returning *`,
      [d.tenantId, d.externalId, d.title, d.docType, d.sourceUrl, JSON.stringify(d.metadata)],
    );
    return rows[0] as DocumentRow;
  },

  /** The document, locked for a change of versions. */
  async documentForUpdate(
    q: Queryable,
    tenantId: string,
    id: string,
  ): Promise<DocumentRow | undefined> {
    const rows = await q.query<DocumentRow>(
      "select * from documents where tenant_id = $1 and id = $2 for update",
      [tenantId, id],
    );
    return rows[0];
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
    if (identity.externalId) {
      const rows = await q.query<DocumentRow>(
        "select * from documents where tenant_id = $1 and external_id = $2 for update",
        [tenantId, identity.externalId],
      );
      return rows[0];
    }
    if (identity.sourceUrl) {
      const rows = await q.query<DocumentRow>(
        `select * from documents where tenant_id = $1 and source_url = $2 and external_id is null
         order by created_at limit 1 for update`,
        [tenantId, identity.sourceUrl],
      );
      return rows[0];
    }
    if (identity.contentHash) {
      const rows = await q.query<DocumentRow>(
        `select d.* from document_versions v join documents d on d.id = v.document_id
         where v.tenant_id = $1 and v.content_hash = $2
           and v.status in ('pending', 'processing', 'active')
           and d.external_id is null and d.source_url is null
           and v.version = (select max(w.version) from document_versions w
                            where w.document_id = d.id
                              and w.status in ('pending', 'processing', 'active'))
         order by d.created_at limit 1 for update of d`,
        [tenantId, identity.contentHash],
      );
      return rows[0];
    }
    return undefined;
  },

  async document(q: Queryable, tenantId: string, id: string): Promise<DocumentRow | undefined> {
    const rows = await q.query<DocumentRow>(
      "select * from documents where tenant_id = $1 and id = $2",
      [tenantId, id],
    );
    return rows[0];
  },

  async countDocuments(q: Queryable, tenantId: string): Promise<number> {
    const rows = await q.query<{ n: number }>(
      "select count(*)::int as n from documents where tenant_id = $1",
      [tenantId],
    );
    return rows[0]?.n ?? 0;
  },

  /** Documents newest first, keyset-paginated; see the tenants store for the millisecond note. */
  async listDocuments(
    q: Queryable,
    tenantId: string,
    opts: {
      limit: number;
      after?: { createdAt: Date; id: string };
      status?: DocumentStatus;
      docType?: string;
    },
  ): Promise<DocumentRow[]> {
    const page = pageQuery({
      select: "*",
      from: "documents",
      filters: [
        ["tenant_id", tenantId],
        ["status", opts.status || undefined],
        ["doc_type", opts.docType || undefined],
      ],
      after: opts.after,
      limit: opts.limit,
    });
    return q.query<DocumentRow>(page.sql, page.params);
  },

  async updateDocument(
    q: Queryable,
    tenantId: string,
    id: string,
    patch: Partial<Omit<DocumentRow, "id" | "tenant_id" | "created_at" | "updated_at">>,
  ): Promise<DocumentRow | undefined> {
    const entries = Object.entries(patch).filter(([, v]) => v !== undefined);
    const sets = entries.map(([col], i) => `${col} = $${i + 3}`);
    sets.push("updated_at = now()");
    const rows = await q.query<DocumentRow>(
      `update documents set ${sets.join(", ")} where tenant_id = $1 and id = $2 returning *`,
      [tenantId, id, ...entries.map(([col, v]) => (col === "metadata" ? JSON.stringify(v) : v))],
    );
    return rows[0];
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
    const rows = await q.query<DocumentRow>(
      `delete from documents where tenant_id = $1 and id = $2
         and ($3 or external_id is null or not starts_with(external_id, 'knowledge:'))
       returning *`,
      [tenantId, id, opts.knowledge],
    );
    return rows[0];
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
    const rows = await q.query<VersionRow>(
      `insert into document_versions
         (tenant_id, document_id, version, content_hash, blob_key, content_type, job_id, content_stored_at)
       values ($1, $2, $3, $4, $5, $6, $7, case when $8::boolean then now() end) returning *`,
      [
        v.tenantId,
        v.documentId,
        v.version,
        v.contentHash,
        v.blobKey,
        v.contentType,
        v.jobId,
        v.contentStored,
      ],
    );
    return rows[0] as VersionRow;
  },

  async version(
    q: Queryable,
    tenantId: string,
    documentId: string,
    version: number,
  ): Promise<VersionRow | undefined> {
    const rows = await q.query<VersionRow>(
      "select * from document_versions where tenant_id = $1 and document_id = $2 and version = $3",
      [tenantId, documentId, version],
    );
    return rows[0];
  },

  async versions(q: Queryable, tenantId: string, documentId: string): Promise<VersionRow[]> {
    return q.query<VersionRow>(
      "select * from document_versions where tenant_id = $1 and document_id = $2 order by version desc",
      [tenantId, documentId],
    );
  },

  /** A version of the document with this content that is live or on its way (not failed). */
  async versionWithHash(
    q: Queryable,
    tenantId: string,
    documentId: string,
    hash: string,
  ): Promise<VersionRow | undefined> {
    const rows = await q.query<VersionRow>(
      `select * from document_versions
       where tenant_id = $1 and document_id = $2 and content_hash = $3
         and status in ('pending', 'processing', 'active')
       order by version desc limit 1`,
      [tenantId, documentId, hash],
    );
    return rows[0];
  },

  /** The number of the document's newest version that is live or on its way (not failed). */
  async newestLiveVersion(
    q: Queryable,
    tenantId: string,
    documentId: string,
  ): Promise<number | undefined> {
    const rows = await q.query<{ version: number | null }>(
      `select max(version) as version from document_versions
       where tenant_id = $1 and document_id = $2
         and status in ('pending', 'processing', 'active')`,
      [tenantId, documentId],
    );
    return rows[0]?.version ?? undefined;
  },

  async updateVersion(
    q: Queryable,
    tenantId: string,
    id: string,
    patch: Partial<Omit<VersionRow, "id" | "tenant_id" | "document_id" | "version" | "created_at">>,
  ): Promise<void> {
    const entries = Object.entries(patch).filter(([, v]) => v !== undefined);
    const sets = entries.map(([col], i) => `${col} = $${i + 3}`);
    await q.query(
      `update document_versions set ${sets.join(", ")} where tenant_id = $1 and id = $2`,
      [tenantId, id, ...entries.map(([, v]) => v)],
    );
  },

  /** Makes `version` the only active one; the previous active one becomes superseded. */
  async activateVersion(
    q: Queryable,
    tenantId: string,
    documentId: string,
    version: number,
  ): Promise<void> {
    await q.query(
      `update document_versions set is_active = false, status = 'superseded'
       where tenant_id = $1 and document_id = $2 and is_active and version <> $3`,
      [tenantId, documentId, version],
    );
    await q.query(
      `update document_versions set is_active = true, status = 'active', activated_at = now()
       where tenant_id = $1 and document_id = $2 and version = $3`,
      [tenantId, documentId, version],
    );
  },

  /** Of these documents, the active version of each (the only chunks search may show). */
  async activeVersions(
    q: Queryable,
    tenantId: string,
    documentIds: string[],
  ): Promise<Map<string, number>> {
    if (documentIds.length === 0) return new Map();
    const rows = await q.query<{ document_id: string; version: number }>(
      `select document_id, version from document_versions
       where tenant_id = $1 and is_active and document_id = any($2::uuid[])`,
      [tenantId, documentIds],
    );
    return new Map(rows.map((r) => [r.document_id, r.version]));
  },
};
