import type { VectorHit } from "../../platform/vectors/vectors.js";

/**
 * Fusing the ranked lists of vector and full-text search into one ranking.
 *
 * The two lists' scores are not comparable (cosine similarity against BM25), so fusion goes
 * either by rank (RRF) or by scores first mapped onto a common scale (min-max). Either way each
 * list carries a weight: how much its opinion counts, which depends on how good the embedder
 * is (bench/quality.ts measures it; see `autoWeights`).
 */

export type FusionMethod = "rrf" | "weighted";

/** One list to fuse and how much it counts (≥ 0; 0 drops it). */
export interface WeightedList {
  hits: VectorHit[];
  weight: number;
}

/** Reciprocal-rank-fusion constant: 60 is the value of the original paper and most engines. */
export const RRF_K = 60;

/**
 * Weighted reciprocal rank fusion: each hit scores Σ weight / (k + rank) over the lists it
 * appears in (rank from 1), so a chunk found by both rises above one found by either alone,
 * and a heavier list's top ranks dominate a lighter one's. Equal weights of 1 are plain RRF.
 * Ties keep the order of first appearance (the earlier list's order first).
 */
export function weightedRrf(lists: WeightedList[], k = RRF_K): VectorHit[] {
  const fused = new Map<string, VectorHit>();
  for (const { hits, weight } of lists) {
    if (weight <= 0) continue;
    hits.forEach((hit, rank) => {
      const prev = fused.get(hit.id);
      const add = weight / (k + rank + 1);
      fused.set(hit.id, prev ? { ...prev, score: prev.score + add } : { ...hit, score: add });
    });
  }
  return stableSortByScore([...fused.values()]);
}

/**
 * Scores of a list's first `NORMALISE_WINDOW` hits set its scale in score fusion: how deep a
 * search fetched (more when the page is larger, or filtered after the search) must not change
 * the ranking of its head. bench/quality.ts: depth 30 and depth 150 then rank alike.
 */
export const NORMALISE_WINDOW = 30;

/**
 * Convex combination of min-max normalised scores: each list's scores are mapped onto [0, 1],
 * its best hit 1 and its `window`-th hit (or its last, if shorter) 0, hits below that 0 too; a
 * list whose scores are all equal gives them all 1. A hit scores Σ weight × normalised score,
 * normalised by Σ weight, over the lists it is in: a hit missing from a list gets 0 from it,
 * which is about what it would score there. Unlike RRF this keeps how far apart the scores
 * are: a BM25 winner far ahead of the rest stays ahead, where RRF makes it one rank better.
 */
export function weightedScoreFusion(lists: WeightedList[], window = NORMALISE_WINDOW): VectorHit[] {
  const total = lists.reduce((sum, l) => sum + Math.max(0, l.weight), 0);
  const fused = new Map<string, VectorHit>();
  if (total === 0) return [];
  for (const { hits, weight } of lists) {
    if (weight <= 0 || hits.length === 0) continue;
    const head = hits.slice(0, Math.max(1, window));
    let max = Number.NEGATIVE_INFINITY;
    let min = Number.POSITIVE_INFINITY;
    for (const h of head) {
      max = Math.max(max, h.score);
      min = Math.min(min, h.score);
    }
    const span = max - min;
    for (const hit of hits) {
      const norm = span > 0 ? Math.max(0, (hit.score - min) / span) : 1;
      const add = (weight / total) * norm;
      const prev = fused.get(hit.id);
      fused.set(hit.id, prev ? { ...prev, score: prev.score + add } : { ...hit, score: add });
    }
  }
  return stableSortByScore([...fused.values()]);
}

/** Plain RRF (every list weighs 1), as hybrid search fused before weights. */
export function reciprocalRankFusion(lists: VectorHit[][], k = RRF_K): VectorHit[] {
  return weightedRrf(
    lists.map((hits) => ({ hits, weight: 1 })),
    k,
  );
}

function stableSortByScore(hits: VectorHit[]): VectorHit[] {
  return hits
    .map((h, i) => ({ h, i }))
    .sort((a, b) => b.h.score - a.h.score || a.i - b.i)
    .map(({ h }) => h);
}

/** How a tenant's hybrid search fuses (its configuration, defaults filled in). */
export interface FusionSettings {
  method: FusionMethod;
  /** Weight of the full-text list; the vector list weighs `1 − textWeight`. */
  textWeight: number;
}

/**
 * The defaults when a tenant has not chosen (bench/RESULTS.md, "Retrieval quality"): the local
 * embedder hashes words and letter trigrams, so its vectors know no more than the words do and
 * less than BM25 about which words matter; its list is a tie-breaker. A real embedding model
 * understands paraphrase that BM25 misses: both lists count the same.
 */
export function autoFusion(provider: "local" | "openai"): FusionSettings {
  return provider === "local"
    ? { method: "weighted", textWeight: 0.8 }
    : { method: "rrf", textWeight: 0.5 };
}

/**
 * A tenant's settings with each unset (null) one taken from the default of its embedder, each
 * on its own: `searchFusion: "rrf"` alone keeps the embedder's default text weight.
 */
export function fusionSettings(config: {
  embeddingProvider: "local" | "openai";
  /** `rrf` or `weighted` (the column's check constraint); anything else reads as unset. */
  searchFusion: string | null;
  searchTextWeight: number | null;
}): FusionSettings {
  const auto = autoFusion(config.embeddingProvider);
  const method = config.searchFusion;
  return {
    method: method === "rrf" || method === "weighted" ? method : auto.method,
    textWeight: config.searchTextWeight ?? auto.textWeight,
  };
}

/** Fuses the vector and the text list of a hybrid search as `settings` say. */
export function fuse(
  vector: VectorHit[],
  text: VectorHit[],
  settings: FusionSettings,
): VectorHit[] {
  // Vector first: at equal fused scores its order wins, as it did before weights existed.
  const lists: WeightedList[] = [
    { hits: vector, weight: 1 - settings.textWeight },
    { hits: text, weight: settings.textWeight },
  ];
  // RRF weights are doubled so that the balanced 0.5 is plain RRF (weights 1 and 1).
  return settings.method === "rrf"
    ? weightedRrf(lists.map((l) => ({ ...l, weight: l.weight * 2 })))
    : weightedScoreFusion(lists);
}
