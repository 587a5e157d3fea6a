import { randomUUID } from "node:crypto";
import { type Db, type InTransaction, inTransaction } from "../../platform/db/index.js";
import { countTokens } from "../../platform/embeddings/tokens.js";
import type { SearchFilters, VectorHit, VectorIndex } from "../../platform/vectors/vectors.js";
import type { TenantContext } from "../../tenancy.js";
import type { DocumentsService } from "../ingestion/index.js";
import type { QuotasService } from "../quotas/index.js";
import { type Embedders, embedderFor, type TenantsService } from "../tenants/index.js";
import type { BillableFact, UsageRecorder } from "../usage/index.js";
import { type FusionSettings, fuse, fusionSettings } from "./fusion.js";
import type { SearchResult } from "./search.schemas.js";

export type SearchMode = "vector" | "text" | "hybrid";

export interface SearchQuery {
  query: string;
  mode: SearchMode;
  limit: number;
  filters?: SearchFilters;
}

export interface SearchDeps {
  db: Db;
  documents: Pick<DocumentsService, "activeVersions">;
  vectors: VectorIndex;
  embedders: Embedders;
  tenants: TenantsService;
  /** Every search reserves 1 search (and its query's embedding tokens), settled when answered. */
  quotas: Pick<QuotasService, "reserveAll" | "settleAll" | "release">;
  /** Every search is metered: one `search_queries` fact, and its query embedding's tokens. */
  usage: UsageRecorder;
}

/**
 * Chunks fetched from each list before fusing, at least: bench/quality.ts scored depths 30
 * and 150 alike with the default weights, so the cheaper one.
 */
const FUSION_DEPTH = 30;

/** The deepest fetch when superseded chunks crowd a list out (the index's largest limit). */
const MAX_FETCH = 1000;

/** Searches are the platform's own calls, priced by the `tenantrag`/`search` row (0 unless set). */
const SEARCH_PRICE_KEY = { provider: "tenantrag", model: "search" } as const;

export function createSearchService(deps: SearchDeps) {
  type Embedding = ReturnType<typeof embedderFor>;

  /** The query's vector, and the embedding fact of `search` (tokens as the embedder billed). */
  async function queryVector(
    e: Embedding,
    text: string,
    search: string,
  ): Promise<{ vector: number[]; fact: BillableFact }> {
    const res = await e.embedder.embed({ ...e.request, texts: [text] });
    return {
      vector: res.vectors[0] as number[],
      fact: {
        metric: "embedding_tokens",
        quantity: res.tokens,
        items: 1,
        provider: e.embedder.provider,
        model: res.model,
        payer: e.request.apiKey ? "tenant" : "platform",
        subject: { type: "search", id: search },
      },
    };
  }

  /**
   * The active-version filter, looked up list by list as each index search answers, so that
   * the first list's lookup runs while the other search is still going. Each document is
   * asked for once: a later list (or a deeper fetch) asks only for documents not asked yet.
   */
  function activeVersionLookup(ctx: TenantContext) {
    const asked = new Map<string, Promise<Map<string, number>>>();
    return {
      /** The active version of each document of `hits` that still exists. */
      async of(hits: VectorHit[]): Promise<Map<string, number>> {
        const ids = [...new Set(hits.map((h) => h.documentId))];
        const fresh = ids.filter((id) => !asked.has(id));
        if (fresh.length > 0) {
          const found = deps.documents.activeVersions(ctx, fresh);
          // Awaited below or by the other list; if a search fails first, its error is reported.
          found.catch(() => {});
          for (const id of fresh) asked.set(id, found);
        }
        const maps = await Promise.all(new Set(ids.map((id) => asked.get(id))));
        return new Map(maps.flatMap((m) => (m ? [...m] : [])));
      },
    };
  }

  /**
   * One list's hits of active versions: fetched `fetch` deep, filtered, and fetched deeper
   * (×4, at most `MAX_FETCH`) while fewer than `limit` are left and the index had more:
   * chunks of superseded versions not yet cleaned up must not crowd a page out.
   */
  async function activeList(
    search: (depth: number) => Promise<VectorHit[]>,
    fetch: number,
    limit: number,
    lookup: ReturnType<typeof activeVersionLookup>,
  ): Promise<VectorHit[]> {
    for (let depth = fetch; ; depth = Math.min(depth * 4, MAX_FETCH)) {
      const hits = await search(depth);
      const active = await lookup.of(hits);
      const kept = hits.filter((h) => active.get(h.documentId) === h.version);
      if (kept.length >= limit || hits.length < depth || depth >= MAX_FETCH) return kept;
    }
  }

  async function run(
    ctx: TenantContext,
    q: SearchQuery,
    embedding: Embedding | undefined,
    fusion: FusionSettings,
    searchId: string,
  ): Promise<{ results: SearchResult[]; facts: BillableFact[] }> {
    // Deeper than the page: chunks of superseded versions are dropped after the search, and
    // fusion needs a list's tail to see which chunks the other list also found.
    const fetch = Math.min(Math.max(q.limit * 3, FUSION_DEPTH), 150);
    const facts: BillableFact[] = [
      {
        metric: "search_queries",
        quantity: 1,
        ...SEARCH_PRICE_KEY,
        payer: "platform",
        subject: { type: "search", id: searchId },
        metadata: { mode: q.mode },
      },
    ];
    // The two searches run at once; each list's active-version lookup starts when it answers.
    const lookup = activeVersionLookup(ctx);
    const [vector, text] = await Promise.all([
      embedding
        ? queryVector(embedding, q.query, searchId).then(({ vector, fact }) => {
            facts.push(fact);
            return activeList(
              (depth) => deps.vectors.searchVector(ctx.tenantId, vector, depth, q.filters),
              fetch,
              q.limit,
              lookup,
            );
          })
        : [],
      q.mode === "text" || q.mode === "hybrid"
        ? activeList(
            (depth) => deps.vectors.searchText(ctx.tenantId, q.query, depth, q.filters),
            fetch,
            q.limit,
            lookup,
          )
        : [],
    ]);
    const ranked =
      q.mode === "hybrid" ? fuse(vector, text, fusion) : q.mode === "vector" ? vector : text;
    const results = ranked.slice(0, q.limit).map((h) => ({
      text: h.text,
      score: h.score,
      documentId: h.documentId,
      title: h.title,
      version: h.version,
      chunkIndex: h.chunkIndex,
      docType: h.docType,
      metadata: h.metadata,
    }));
    return { results, facts };
  }

  return {
    /**
     * Ranked chunks of the tenant's active document versions. Each underlying search fetches
     * more than asked, since chunks of superseded versions may still be in the index until
     * clean-up has run and are dropped here.
     *
     * Quota first: 1 search and the query's tokens (counted with the tokenizer) are reserved
     * before any work. Once it has answered, one transaction (`opts.tx` when given) records the
     * `search_queries` fact and, for vector and hybrid searches, the query embedding's tokens as
     * the embedder reported them (two facts of one random search id), and settles the
     * reservations with those amounts. A search that fails releases them and is not billed.
     */
    async search(
      ctx: TenantContext,
      q: SearchQuery,
      opts: InTransaction = {},
    ): Promise<SearchResult[]> {
      const embeds = q.mode === "vector" || q.mode === "hybrid";
      // One read of the tenant's search settings (cached by the tenants service), for the
      // query's embedder and the fusion. Text search alone reads none: it fuses nothing.
      const settings = embeds ? await deps.tenants.embeddingSettings(ctx) : undefined;
      const embedding = settings ? embedderFor(deps.embedders, settings) : undefined;
      const fusion = fusionSettings({
        embeddingProvider: settings?.provider ?? "local",
        searchFusion: settings?.searchFusion ?? null,
        searchTextWeight: settings?.searchTextWeight ?? null,
      });
      const queryTokens = embedding ? countTokens(q.query, embedding.request.model) : 0;
      const held = await deps.quotas.reserveAll(ctx, [
        { quota: "searches", amount: 1 },
        { quota: "tokens", amount: queryTokens },
      ]);
      try {
        const { results, facts } = await run(ctx, q, embedding, fusion, randomUUID());
        const usedTokens = facts
          .filter((f) => f.metric === "embedding_tokens")
          .reduce((sum, f) => sum + f.quantity, 0);
        await inTransaction(deps.db, opts.tx, async (tx) => {
          await deps.usage.record(ctx, facts, { tx });
          await deps.quotas.settleAll(
            ctx,
            held.map((r) => ({
              reservation: r,
              actual: r.quota === "tokens" ? usedTokens : r.amount,
            })),
            { tx },
          );
        });
        return results;
      } catch (err) {
        for (const r of held) await deps.quotas.release(r);
        throw err;
      }
    },
  };
}

export type SearchService = ReturnType<typeof createSearchService>;
