import { describe, expect, it } from "vitest";
import {
  autoFusion,
  fuse,
  fusionSettings,
  reciprocalRankFusion,
  weightedRrf,
  weightedScoreFusion,
} from "../../src/modules/search/index.js";
import type { VectorHit } from "../../src/platform/vectors/index.js";

/** Hits named by id, with the given scores (best first). */
function list(...scored: Array<[string, number]>): VectorHit[] {
  return scored.map(([id, score]) => ({
    id,
    documentId: `00000000-0000-4000-8000-${id.padStart(12, "0")}`,
    version: 1,
    chunkIndex: 0,
    text: id,
    title: id,
    docType: "md",
    metadata: {},
    score,
  }));
}

const ids = (hits: VectorHit[]) => hits.map((h) => h.id);

describe("hybrid search fusion", () => {
  const vector = list(["a", 0.9], ["b", 0.8], ["c", 0.7]);
  const text = list(["b", 12], ["c", 3], ["d", 2]);

  it("plain RRF puts a chunk both lists found above the chunks of one list", () => {
    expect(ids(reciprocalRankFusion([vector, text]))).toEqual(["b", "c", "a", "d"]);
  });

  it("weighted RRF: the heavier list's top rank beats the lighter list's", () => {
    const v = list(["a", 1]);
    const t = list(["d", 1]);
    expect(
      ids(
        weightedRrf([
          { hits: v, weight: 1 },
          { hits: t, weight: 3 },
        ]),
      ),
    ).toEqual(["d", "a"]);
    expect(
      ids(
        weightedRrf([
          { hits: v, weight: 3 },
          { hits: t, weight: 1 },
        ]),
      ),
    ).toEqual(["a", "d"]);
  });

  it("ties keep the order of first appearance, the earlier list first", () => {
    const v = list(["a", 1]);
    const t = list(["d", 1]);
    expect(ids(reciprocalRankFusion([v, t]))).toEqual(["a", "d"]);
    expect(ids(reciprocalRankFusion([t, v]))).toEqual(["d", "a"]);
    expect(
      ids(
        weightedScoreFusion([
          { hits: v, weight: 1 },
          { hits: t, weight: 1 },
        ]),
      ),
    ).toEqual(["a", "d"]);
  });

  it("score fusion keeps how far ahead a text winner is; RRF makes it one rank", () => {
    // The text list's winner "t1" is far ahead of its runner-up; the vector list barely
    // prefers "v1" (which text ranks second) over "t1".
    const v = list(["v1", 0.91], ["t1", 0.9], ["x", 0.2]);
    const t = list(["t1", 30], ["v1", 2], ["y", 1]);
    const weights = (w: number) => [
      { hits: v, weight: 1 - w },
      { hits: t, weight: w },
    ];
    expect(ids(weightedScoreFusion(weights(0.5)))[0]).toBe("t1");
    // Equal-weight RRF sees two first-and-second places: a tie the earlier list (vector) wins.
    expect(ids(weightedRrf(weights(0.5)))[0]).toBe("v1");
  });

  it("the text weight moves ranks: 1 is text order, 0 is vector order", () => {
    expect(ids(fuse(vector, text, { method: "weighted", textWeight: 1 }))).toEqual(["b", "c", "d"]);
    expect(ids(fuse(vector, text, { method: "weighted", textWeight: 0 }))).toEqual(["a", "b", "c"]);
    expect(ids(fuse(vector, text, { method: "rrf", textWeight: 1 }))).toEqual(["b", "c", "d"]);
    expect(ids(fuse(vector, text, { method: "rrf", textWeight: 0 }))).toEqual(["a", "b", "c"]);
  });

  it("a chunk in one list only is kept, scored by that list alone", () => {
    const fused = fuse(vector, text, { method: "weighted", textWeight: 0.8 });
    expect(ids(fused).sort()).toEqual(["a", "b", "c", "d"]);
    const a = fused.find((h) => h.id === "a");
    // "a" is the vector list's best (normalised 1) and absent from text: 0.2 × 1.
    expect(a?.score).toBeCloseTo(0.2);
    // "d" is the text list's worst (normalised 0): nothing from either list.
    expect(fused.find((h) => h.id === "d")?.score).toBe(0);
  });

  it("one list empty: the other list's order", () => {
    expect(ids(fuse([], text, { method: "weighted", textWeight: 0.8 }))).toEqual(["b", "c", "d"]);
    expect(ids(fuse(vector, [], { method: "rrf", textWeight: 0.5 }))).toEqual(["a", "b", "c"]);
    expect(fuse([], [], { method: "weighted", textWeight: 0.8 })).toEqual([]);
  });

  it("a list whose scores are all equal counts each of its hits fully", () => {
    const flat = list(["p", 5], ["q", 5]);
    const fused = weightedScoreFusion([{ hits: flat, weight: 1 }]);
    expect(fused.map((h) => h.score)).toEqual([1, 1]);
  });

  it("defaults follow the embedder, and each setting left null takes its default", () => {
    expect(autoFusion("local")).toEqual({ method: "weighted", textWeight: 0.8 });
    expect(autoFusion("openai")).toEqual({ method: "rrf", textWeight: 0.5 });
    const unset = { searchFusion: null, searchTextWeight: null };
    expect(fusionSettings({ embeddingProvider: "local", ...unset })).toEqual(autoFusion("local"));
    expect(fusionSettings({ embeddingProvider: "openai", ...unset })).toEqual(autoFusion("openai"));
    expect(
      fusionSettings({ embeddingProvider: "local", searchFusion: "rrf", searchTextWeight: null }),
    ).toEqual({ method: "rrf", textWeight: 0.8 });
    expect(
      fusionSettings({ embeddingProvider: "openai", searchFusion: null, searchTextWeight: 0 }),
    ).toEqual({ method: "rrf", textWeight: 0 });
  });
});
