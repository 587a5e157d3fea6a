import { encode as cl100k } from "gpt-tokenizer/encoding/cl100k_base";
import { encode as o200k } from "gpt-tokenizer/encoding/o200k_base";
import { describe, expect, it } from "vitest";
import { EmbeddingError } from "../../src/platform/embeddings/index.js";
import { createLocalEmbedder, fnv1a32 } from "../../src/platform/embeddings/local.js";
import {
  countTokens,
  countTokensBatch,
  encodingForModel,
} from "../../src/platform/embeddings/tokens.js";

const cosine = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * (b[i] as number), 0);
const norm = (v: number[]) => Math.hypot(...v);

const embedder = createLocalEmbedder();
async function embed(...texts: string[]) {
  return (await embedder.embed({ texts })).vectors;
}
async function similarity(a: string, b: string) {
  const [va, vb] = (await embed(a, b)) as [number[], number[]];
  return cosine(va, vb);
}

describe("fnv1a32", () => {
  it("matches the published FNV-1a 32-bit test vectors", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  it("hashes a range of a string like the substring itself", () => {
    expect(fnv1a32("xxfoobarxx", 2, 8)).toBe(fnv1a32("foobar"));
  });
});

describe("local embedder", () => {
  it("names its model after its dimensions, so differently sized vectors never mix", async () => {
    const small = createLocalEmbedder({ dimensions: 64 });
    const res = await small.embed({ texts: ["hello"] });
    expect(small.provider).toBe("local");
    expect(res.model).toBe("local-ngram-v1-64");
    expect(res.dimensions).toBe(64);
    expect(res.vectors[0]).toHaveLength(64);
    expect(embedder.defaultModel).toBe("local-ngram-v1-384");
    expect((await embed("hello"))[0]).toHaveLength(384);
  });

  it("is deterministic: a fresh instance gives bit-identical vectors", async () => {
    const text = "Invoices are emailed on the first business day of each month.";
    const [a] = await embed(text);
    const [b] = (await createLocalEmbedder().embed({ texts: [text] })).vectors;
    expect(b).toEqual(a);
  });

  it("pins the vector of a known text, so stored vectors stay valid across releases", async () => {
    const [v] = (await embed("Hello, hello world")) as [number[]];
    const nonZero = v.flatMap((x, i) => (x === 0 ? [] : [[i, Number(x.toFixed(4))]]));
    // If this changes, every stored local vector is stale: bump the model name instead.
    // hello: 1 + ln 2 = 1.693 (its 3-grams 0.35 × 1.693); world: 1 (its 3-grams 0.35); norm 2.497.
    expect(nonZero).toEqual([
      [95, 0.1402],
      [112, 0.6781],
      [137, 0.2373],
      [204, 0.1402],
      [216, -0.4005],
      [227, 0.2373],
      [229, 0.1402],
      [247, 0.1402],
      [270, -0.1402],
      [280, -0.2373],
      [286, -0.2373],
      [370, -0.2373],
    ]);
  });

  it("returns unit-length vectors whatever the text's length", async () => {
    const texts = [
      "a",
      "short text",
      "word ".repeat(5000),
      "Ünïcödé — ελληνικά, 中文文本, emoji 🚀🚀",
    ];
    for (const v of await embed(...texts)) {
      expect(norm(v)).toBeCloseTo(1, 9);
      expect(v.every(Number.isFinite)).toBe(true);
    }
  });

  it("depends on which words occur and how often, not on their order, even in long texts", async () => {
    // 3000 distinct words overflow the feature table, which then grows mid-text: counts
    // taken before and after the growth must add up the same.
    const many = Array.from({ length: 3000 }, (_, i) => `w${i.toString(36)}`);
    const early = ["alpha", "alpha", "alpha", ...many, "alpha"].join(" ");
    const late = [...many, "alpha", "alpha", "alpha", "alpha"].join(" ");
    const [a, b] = (await embed(early, late)) as [number[], number[]];
    for (const [i, x] of a.entries()) expect(x).toBeCloseTo(b[i] as number, 12);
    expect(await similarity(early, "alpha")).toBeGreaterThan(await similarity(early, "beta"));
  });

  it("places related texts closer than unrelated ones", async () => {
    const query = "How do I reset my password?";
    const related = await similarity(query, "Steps to reset a forgotten password");
    const unrelated = await similarity(query, "Quarterly revenue grew by ten percent");
    expect(related).toBeGreaterThan(0.25);
    expect(unrelated).toBeLessThan(0.1);
  });

  it("tolerates typos and inflections through character n-grams", async () => {
    expect(await similarity("embedding", "embeding")).toBeGreaterThan(0.3);
    expect(await similarity("embedding", "potato")).toBeLessThan(0.1);
    expect(await similarity("indexes rebuilt nightly", "index rebuilt nightly")).toBeGreaterThan(
      await similarity("indexes rebuilt nightly", "cats sleep most of the day"),
    );
  });

  it("ignores case and Latin accents", async () => {
    expect(await similarity("Café RÉSUMÉ", "cafe resume")).toBeCloseTo(1, 9);
  });

  it("does not understand meaning: synonyms that share no letters are not close", async () => {
    // Documented limitation; if this fails, the doc comment on createLocalEmbedder is wrong.
    expect(await similarity("car", "automobile")).toBeLessThan(0.2);
  });

  it("gives empty and punctuation-only text a valid unit vector, not NaN or zeros", async () => {
    const [empty, blank, dots, word] = (await embed("", "   ", "...!?", "word")) as number[][];
    for (const v of [empty, blank, dots] as number[][]) {
      expect(v).toHaveLength(384);
      expect(norm(v)).toBeCloseTo(1, 9);
    }
    expect(blank).toEqual(empty);
    expect(cosine(empty as number[], word as number[])).toBeLessThan(0.5);
  });

  it("embeds an empty batch as no vectors and no tokens", async () => {
    const res = await embedder.embed({ texts: [] });
    expect(res).toEqual({ vectors: [], dimensions: 384, model: "local-ngram-v1-384", tokens: 0 });
  });

  it("bills the tokens OpenAI's embedding tokenizer counts, not a character estimate", async () => {
    const texts = ["Hello, world!", "Tokenizers split text into subword units.", ""];
    const res = await embedder.embed({ texts });
    const expected = texts.reduce((n, t) => n + cl100k(t).length, 0);
    expect(res.tokens).toBe(expected);
    expect(res.tokens).not.toBe(Math.ceil(texts.join("").length / 4));
  });

  it("refuses a model name it does not serve", async () => {
    const err = await embedder
      .embed({ texts: ["x"], model: "text-embedding-3-small" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddingError);
    expect((err as EmbeddingError).retryable).toBe(false);
  });

  it("stops a large batch when its signal aborts", async () => {
    const controller = new AbortController();
    const texts = Array.from({ length: 2000 }, (_, i) => `chunk ${i} ${"lorem ipsum ".repeat(40)}`);
    const pending = embedder.embed({ texts, signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: "AbortError" });
  });

  // Its speed is measured in bench/ (search and ingestion), not here.
  it("embeds a batch of a thousand 2 KB chunks as it embeds each one alone", async () => {
    const texts = Array.from(
      { length: 1000 },
      (_, i) => `${i} ${"retrieval chunk text ".repeat(100)}`,
    );
    const res = await embedder.embed({ texts });
    expect(res.vectors).toHaveLength(1000);
    for (const i of [0, 499, 999]) {
      const alone = await embedder.embed({ texts: [texts[i] as string] });
      expect(res.vectors[i]).toEqual(alone.vectors[0]);
    }
  });
});

describe("token counting", () => {
  it("counts with cl100k for OpenAI embedding models and unknown models, o200k for gpt-4o", () => {
    const text = "Multi-tenant retrieval: 検索 and ünïcode, with numbers 1234567.";
    expect(countTokens(text, "text-embedding-3-small")).toBe(cl100k(text).length);
    expect(countTokens(text)).toBe(cl100k(text).length);
    expect(countTokens(text, "nomic-embed-text")).toBe(cl100k(text).length);
    expect(countTokens(text, "gpt-4o-mini")).toBe(o200k(text).length);
    expect(encodingForModel("gpt-4o-mini-2024-07-18")).toBe("o200k_base");
    expect(encodingForModel("text-embedding-ada-002")).toBe("cl100k_base");
    expect(cl100k(text).length).not.toBe(o200k(text).length);
  });

  it("counts special-token text in a document as plain text instead of throwing", () => {
    const text = "a document that mentions <|endoftext|> literally";
    expect(countTokens(text)).toBe(cl100k(text, { disallowedSpecial: new Set() }).length);
    expect(countTokens(text)).toBeGreaterThan(3);
  });

  it("sums a batch text by text", () => {
    const texts = ["one two three", "", "four"];
    expect(countTokensBatch(texts)).toBe(countTokens("one two three") + countTokens("four"));
    expect(countTokens("")).toBe(0);
  });
});
