import { kysely, type Queryable, sql } from "../../platform/db/index.js";

/**
 * What the usage module's roll-ups and reports need to know of documents and versions, asked
 * through `DocumentsService` (a module never reads another's tables). Every query filters by
 * tenant, except `platformStats`, which serves platform admins only.
 */

export interface VersionHourCounts {
  hour: Date;
  /** Versions activated in the hour. */
  ingested: number;
  /** Versions that failed, counted in the hour they were created (versions keep no failure time). */
  failed: number;
}

export interface DocumentSummary {
  id: string;
  title: string;
  docType: string;
  status: "processing" | "completed" | "failed";
  chunkCount: number;
  characterCount: number;
  embeddingTokens: number;
  embeddingCostUsd: string;
  processingTimeMs: number | null;
  createdAt: Date;
}

export interface DocumentStats {
  total: number;
  processing: number;
  completed: number;
  failed: number;
  totalSizeBytes: number;
  embeddingTokens: number;
  embeddingCostUsd: string;
  byType: Array<{ docType: string; documents: number }>;
}

export const usageStatsStore = {
  async versionCountsByHour(
    q: Queryable,
    tenantId: string,
    from: Date,
    to: Date,
  ): Promise<VersionHourCounts[]> {
    const r = await sql<VersionHourCounts>`
      select hour, sum(ingested)::int8 as ingested, sum(failed)::int8 as failed from (
        select date_trunc('hour', activated_at, 'UTC') as hour, 1 as ingested, 0 as failed
          from document_versions
          where tenant_id = ${tenantId} and activated_at >= ${from} and activated_at < ${to}
        union all
        select date_trunc('hour', created_at, 'UTC'), 0, 1
          from document_versions
          where tenant_id = ${tenantId} and status = 'failed'
            and created_at >= ${from} and created_at < ${to}
      ) v group by hour`.execute(kysely(q));
    return r.rows;
  },

  async summaries(q: Queryable, tenantId: string, ids: string[]): Promise<DocumentSummary[]> {
    if (ids.length === 0) return [];
    const rows = await kysely(q)
      .selectFrom("documents")
      .select([
        "id",
        "title",
        "doc_type",
        "status",
        "chunk_count",
        "character_count",
        "embedding_tokens",
        "embedding_cost_usd",
        "processing_time_ms",
        "created_at",
      ])
      .where("tenant_id", "=", tenantId)
      .where("id", "in", ids)
      .execute();
    return rows.map((r) => ({
      id: r.id,
      title: r.title,
      docType: r.doc_type,
      status: r.status,
      chunkCount: r.chunk_count,
      characterCount: r.character_count,
      embeddingTokens: r.embedding_tokens,
      embeddingCostUsd: r.embedding_cost_usd,
      processingTimeMs: r.processing_time_ms,
      createdAt: r.created_at,
    }));
  },

  async stats(q: Queryable, tenantId: string): Promise<DocumentStats> {
    const k = kysely(q);
    const totals = await sql<{
      total: number;
      processing: number;
      completed: number;
      failed: number;
      size: number;
      tokens: number;
      cost: string;
    }>`
      select count(*)::int8 as total,
        count(*) filter (where status = 'processing')::int8 as processing,
        count(*) filter (where status = 'completed')::int8 as completed,
        count(*) filter (where status = 'failed')::int8 as failed,
        coalesce(sum(file_size_bytes), 0)::int8 as size,
        coalesce(sum(embedding_tokens), 0)::int8 as tokens,
        coalesce(sum(embedding_cost_usd), 0)::text as cost
      from documents where tenant_id = ${tenantId}`.execute(k);
    const byType = await sql<{ doc_type: string; n: number }>`
      select doc_type, count(*)::int8 as n from documents where tenant_id = ${tenantId}
      group by doc_type order by n desc, doc_type`.execute(k);
    const t = totals.rows[0];
    return {
      total: t?.total ?? 0,
      processing: t?.processing ?? 0,
      completed: t?.completed ?? 0,
      failed: t?.failed ?? 0,
      totalSizeBytes: t?.size ?? 0,
      embeddingTokens: t?.tokens ?? 0,
      embeddingCostUsd: t?.cost ?? "0",
      byType: byType.rows.map((r) => ({ docType: r.doc_type, documents: r.n })),
    };
  },

  /** Platform-wide document figures (seed 004's system stats). */
  async platformStats(q: Queryable): Promise<{
    tenants: number;
    documents: number;
    completed: number;
    avgTokensPerDocument: number;
    avgProcessingTimeMs: number;
  }> {
    const r = await sql<{
      tenants: number;
      documents: number;
      completed: number;
      avg_tokens: number;
      avg_ms: number;
    }>`
      select count(distinct tenant_id)::int8 as tenants, count(*)::int8 as documents,
        count(*) filter (where status = 'completed')::int8 as completed,
        coalesce(avg(embedding_tokens) filter (where status = 'completed'), 0)::float8 as avg_tokens,
        coalesce(avg(processing_time_ms) filter (where status = 'completed'), 0)::float8 as avg_ms
      from documents`.execute(kysely(q));
    const t = r.rows[0];
    return {
      tenants: t?.tenants ?? 0,
      documents: t?.documents ?? 0,
      completed: t?.completed ?? 0,
      avgTokensPerDocument: t?.avg_tokens ?? 0,
      avgProcessingTimeMs: t?.avg_ms ?? 0,
    };
  },
};
