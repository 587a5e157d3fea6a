import { countTokens } from "../../platform/embeddings/tokens.js";
import type { SearchFilters, VectorHit, VectorIndex } from "../../platform/vectors/vectors.js";
import type { TenantContext } from "../../tenancy.js";
import type { DocumentsService } from "../ingestion/index.js";
import type { QuotasService } from "../quotas/index.js";
import { type Embedders, type TenantsService, tenantEmbedder } from "../tenants/index.js";
import type { SearchResult } from "./search.schemas.js";

export type SearchMode = "vector" | "text" | "hybrid";

export interface SearchQuery {
  query: string;
  mode: SearchMode;
  limit: number;
  filters?: SearchFilters;
}

/** Reciprocal-rank-fusion constant: 60 is the value of the original paper and most engines. */
const RRF_K = 60;

/**
 * Fuses ranked lists: each hit scores Σ 1/(k + rank) over the lists it appears in, so a chunk
 * found by both vector and keyword search rises above one found by either alone.
 */
export function reciprocalRankFusion(lists: VectorHit[][], k = RRF_K): VectorHit[] {
  const fused = new Map<string, VectorHit>();
  for (const list of lists) {
    list.forEach((hit, rank) => {
      const prev = fused.get(hit.id);
      const add = 1 / (k + rank + 1);
      fused.set(hit.id, prev ? { ...prev, score: prev.score + add } : { ...hit, score: add });
    });
  }
  return [...fused.values()].sort((a, b) => b.score - a.score);
}

export interface SearchDeps {
  documents: Pick<DocumentsService, "activeVersions">;
  vectors: VectorIndex;
  embedders: Embedders;
  tenants: TenantsService;
  /** Every search reserves 1 search (and its query's embedding tokens), settled when answered. */
  quotas: Pick<QuotasService, "reserveAll" | "settleAll" | "release">;
}

export function createSearchService(deps: SearchDeps) {
  type Embedding = Awaited<ReturnType<typeof tenantEmbedder>>;

  async function queryVector(e: Embedding, text: string): Promise<number[]> {
    const res = await e.embedder.embed({ ...e.request, texts: [text] });
    return res.vectors[0] as number[];
  }

  /** Keeps only chunks of the active version of documents that still exist. */
  async function activeOnly(ctx: TenantContext, hits: VectorHit[]): Promise<VectorHit[]> {
    const ids = [...new Set(hits.map((h) => h.documentId))];
    const active = await deps.documents.activeVersions(ctx, ids);
    return hits.filter((h) => active.get(h.documentId) === h.version);
  }

  async function run(
    ctx: TenantContext,
    q: SearchQuery,
    embedding: Embedding | undefined,
  ): Promise<SearchResult[]> {
    const fetch = Math.min(q.limit * 3, 150);
    const lists: VectorHit[][] = [];
    if (embedding) {
      const vector = await queryVector(embedding, q.query);
      lists.push(
        await activeOnly(
          ctx,
          await deps.vectors.searchVector(ctx.tenantId, vector, fetch, q.filters),
        ),
      );
    }
    if (q.mode === "text" || q.mode === "hybrid") {
      lists.push(
        await activeOnly(
          ctx,
          await deps.vectors.searchText(ctx.tenantId, q.query, fetch, q.filters),
        ),
      );
    }
    const ranked = q.mode === "hybrid" ? reciprocalRankFusion(lists) : (lists[0] ?? []);
    return ranked.slice(0, q.limit).map((h) => ({
      text: h.text,
      score: h.score,
      documentId: h.documentId,
      title: h.title,
      version: h.version,
      chunkIndex: h.chunkIndex,
      docType: h.docType,
      metadata: h.metadata,
    }));
  }

  return {
    /**
     * Ranked chunks of the tenant's active document versions. Each underlying search fetches
     * more than asked, since chunks of superseded versions may still be in the index until
     * clean-up has run and are dropped here.
     */
    async search(ctx: TenantContext, q: SearchQuery): Promise<SearchResult[]> {
      const embeds = q.mode === "vector" || q.mode === "hybrid";
      const embedding = embeds
        ? await tenantEmbedder(deps.embedders, deps.tenants, ctx)
        : undefined;
      const queryTokens = embedding ? countTokens(q.query, embedding.request.model) : 0;
      const held = await deps.quotas.reserveAll(ctx, [
        { quota: "searches", amount: 1 },
        { quota: "tokens", amount: queryTokens },
      ]);
      try {
        const results = await run(ctx, q, embedding);
        await deps.quotas.settleAll(
          ctx,
          held.map((r) => ({ reservation: r, actual: r.amount })),
        );
        return results;
      } catch (err) {
        for (const r of held) await deps.quotas.release(r);
        throw err;
      }
    },
  };
}

export type SearchService = ReturnType<typeof createSearchService>;
