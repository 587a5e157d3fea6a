import { setImmediate as yieldToLoop } from "node:timers/promises";
import { type Embedder, EmbeddingError, type EmbedRequest, type EmbedResult } from "./embedder.js";
import { countTokens } from "./tokens.js";

/**
 * FNV-1a, 32-bit, over the UTF-16 code units of `s[start, end)`, continuing from `seed`.
 * Stable across platforms and releases: stored vectors depend on it, so it must never change.
 */
export function fnv1a32(s: string, start = 0, end = s.length, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's finaliser: spreads FNV's weak low bits over the whole word before bucketing. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// Each kind of feature hashes from its own seed, so the word "the" and the 3-gram "the" differ.
const WORD_SEED = fnv1a32("w:");
const GRAM_SEED = fnv1a32("g:");
const EMPTY_FEATURE = fmix32(fnv1a32("<empty text>"));

/**
 * Relative weight of one 3-gram against one whole word. A word of n letters yields n 3-grams,
 * so without this the character features would drown the exact-word signal.
 */
const GRAM_WEIGHT = 0.35;
const N = 3;
/** About 10 ms of work between two yields to the event loop. */
const YIELD_EVERY_CHARS = 200_000;

// Letters, marks and digits; apostrophes inside a word keep "don't" whole.
const WORD = /[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*/gu;
const LATIN_ACCENTS = /[\u0300-\u036f]/g;
const SURROGATE = /[\uD800-\uDFFF]/;

/** Lower-cased words, Latin accents folded ("Café" → "cafe"); other scripts' marks are kept. */
function words(text: string): string[] {
  const folded = text.normalize("NFKD").replace(LATIN_ACCENTS, "").toLowerCase();
  return folded.match(WORD) ?? [];
}

/**
 * Counts of hashed features: open addressing over typed arrays. A chunk has thousands of
 * features and this runs for every one, where a Map was most of the embedder's time.
 */
class FeatureCounts {
  private keys = new Uint32Array(4096);
  private counts = new Uint32Array(4096);
  /** Occupied slots, so clear() and iteration touch only those. */
  private used = new Uint32Array(2048);
  size = 0;

  /** Counts feature `h` (already mixed: its low bits choose the slot). */
  add(h: number): void {
    const mask = this.keys.length - 1;
    let i = h & mask;
    while (this.counts[i] !== 0 && this.keys[i] !== h) i = (i + 1) & mask;
    if (this.counts[i] === 0) {
      this.keys[i] = h;
      this.used[this.size++] = i;
    }
    this.counts[i] = (this.counts[i] as number) + 1;
    if (this.size === this.used.length) this.grow();
  }

  forEach(fn: (h: number, tf: number) => void): void {
    for (let k = 0; k < this.size; k++) {
      const i = this.used[k] as number;
      fn(this.keys[i] as number, this.counts[i] as number);
    }
  }

  clear(): void {
    for (let k = 0; k < this.size; k++) this.counts[this.used[k] as number] = 0;
    this.size = 0;
  }

  /** Doubles the table, keeping the load factor at most one half. */
  private grow(): void {
    const old: Array<[number, number]> = [];
    this.forEach((h, tf) => {
      old.push([h, tf]);
    });
    const cap = this.keys.length * 2;
    this.keys = new Uint32Array(cap);
    this.counts = new Uint32Array(cap);
    this.used = new Uint32Array(cap / 2);
    this.size = 0;
    for (const [h, tf] of old) {
      this.add(h);
      this.counts[this.used[this.size - 1] as number] = tf;
    }
  }
}

/** Counts the word and the 3-grams of "<word>" (boundary markers) into the two maps. */
function countFeatures(word: string, wordCounts: FeatureCounts, grams: FeatureCounts): void {
  wordCounts.add(fmix32(fnv1a32(word, 0, word.length, WORD_SEED)));
  const padded = `<${word}>`;
  if (!SURROGATE.test(padded)) {
    for (let i = 0; i + N <= padded.length; i++) {
      grams.add(fmix32(fnv1a32(padded, i, i + N, GRAM_SEED)));
    }
    return;
  }
  // Astral characters (emoji, rare CJK) are two code units: n-grams go by code point instead.
  const chars = Array.from(padded);
  for (let i = 0; i + N <= chars.length; i++) {
    const gram = chars.slice(i, i + N).join("");
    grams.add(fmix32(fnv1a32(gram, 0, gram.length, GRAM_SEED)));
  }
}

/** Adds each feature, sublinear-tf weighted, to its bucket with a hashed sign. */
function project(counts: FeatureCounts, weight: number, out: Float64Array): void {
  const dims = out.length;
  counts.forEach((h, tf) => {
    // The bucket comes from the low 31 bits, the sign from the top bit: the two are independent.
    const sign = h & 0x80000000 ? -1 : 1;
    const idx = (h & 0x7fffffff) % dims;
    out[idx] = (out[idx] as number) + sign * weight * (1 + Math.log(tf));
  });
}

function toUnitArray(v: Float64Array): number[] {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (v[i] as number) ** 2;
  const norm = Math.sqrt(sum);
  const out = new Array<number>(v.length);
  for (let i = 0; i < v.length; i++) out[i] = (v[i] as number) / norm;
  return out;
}

export interface LocalEmbedderOptions {
  /** Vector length. Changing it changes every vector: re-embed the tenant's documents. */
  dimensions?: number;
}

/**
 * A deterministic, offline embedder: feature hashing of words and character 3-grams.
 *
 * Each text is NFKD-normalised, Latin accents folded, lower-cased and split into Unicode word
 * tokens. Every word contributes itself and the 3-grams of "<word>" (with boundary markers).
 * Each feature is hashed (FNV-1a + murmur3 finaliser) to a dimension and a sign, weighted by
 * 1 + ln(tf), and the vector is L2-normalised. No model, no download, no network; the same text
 * gives the same vector on every machine and release of this model name.
 *
 * Good for: lexical and near-lexical similarity (shared words and word parts), typo and
 * inflection tolerance through the 3-grams ("embeding" ≈ "embedding", "index" ≈ "indexes"),
 * embedded mode, tests and benchmarks (fast, reproducible).
 * Not good for: meaning. Synonyms and paraphrases that share no letters ("car" / "automobile",
 * "how do I cancel" / "terminate my subscription") are not close; use a real model for that.
 * Text without any word (empty, only punctuation) maps to one fixed unit vector.
 * Tokens are counted with the cl100k_base vocabulary, as for OpenAI's embedding models.
 */
export function createLocalEmbedder(opts: LocalEmbedderOptions = {}): Embedder {
  const dimensions = opts.dimensions ?? 384;
  if (!Number.isInteger(dimensions) || dimensions < 2) {
    throw new RangeError(`local embedder: dimensions must be an integer ≥ 2, got ${dimensions}`);
  }
  const model = `local-ngram-v1-${dimensions}`;
  // Reused across texts, which is safe because embedOne is synchronous: concurrent embed calls
  // interleave only between texts.
  const wordCounts = new FeatureCounts();
  const gramCounts = new FeatureCounts();

  function embedOne(text: string): number[] {
    wordCounts.clear();
    gramCounts.clear();
    for (const word of words(text)) countFeatures(word, wordCounts, gramCounts);
    if (wordCounts.size === 0) wordCounts.add(EMPTY_FEATURE);
    const v = new Float64Array(dimensions);
    project(wordCounts, 1, v);
    project(gramCounts, GRAM_WEIGHT, v);
    // Colliding features with opposite signs can cancel out exactly; fall back to the marker.
    if (v.every((x) => x === 0)) v[(EMPTY_FEATURE & 0x7fffffff) % dimensions] = 1;
    return toUnitArray(v);
  }

  return {
    provider: "local",
    defaultModel: model,
    async embed(req: EmbedRequest): Promise<EmbedResult> {
      req.signal?.throwIfAborted();
      if (req.model !== undefined && req.model !== model) {
        // A vector from another model is not comparable; silently answering would corrupt search.
        throw new EmbeddingError(`local embedder serves ${model}, not ${req.model}`, false);
      }
      const vectors: number[][] = [];
      let tokens = 0;
      let sinceYield = 0;
      for (const text of req.texts) {
        vectors.push(embedOne(text));
        tokens += countTokens(text);
        sinceYield += text.length;
        // In embedded mode the API shares this thread: a large batch must not stall requests.
        if (sinceYield >= YIELD_EVERY_CHARS) {
          sinceYield = 0;
          await yieldToLoop();
          req.signal?.throwIfAborted();
        }
      }
      return { vectors, dimensions, model, tokens };
    },
  };
}
