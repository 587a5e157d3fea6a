import { describe, expect, it } from "vitest";
import type { Embedder, EmbedRequest } from "./embedder.js";
import { createLocalEmbedder } from "./local.js";
import { withQueryCache } from "./query-cache.js";

function counting(inner: Embedder) {
  const calls: EmbedRequest[] = [];
  const embedder: Embedder = {
    provider: inner.provider,
    defaultModel: inner.defaultModel,
    embed(req) {
      calls.push(req);
      return inner.embed(req);
    },
  };
  return { embedder, calls };
}

describe("withQueryCache", () => {
  it("answers a repeated query with the embedder's own vector, embedding it once", async () => {
    const local = createLocalEmbedder({ dimensions: 64 });
    const { embedder, calls } = counting(local);
    const cached = withQueryCache(embedder);
    const first = await cached.embed({ texts: ["tenant isolation"] });
    const second = await cached.embed({ texts: ["tenant isolation"] });
    expect(second).toEqual(first);
    expect(first).toEqual(await local.embed({ texts: ["tenant isolation"] }));
    expect(calls).toHaveLength(1);
    expect((await cached.embed({ texts: ["another query"] })).vectors[0]).not.toEqual(
      first.vectors[0],
    );
    expect(calls).toHaveLength(2);
  });

  it("hands out copies: changing one answer does not change the next", async () => {
    const cached = withQueryCache(createLocalEmbedder({ dimensions: 64 }));
    const first = await cached.embed({ texts: ["copy me"] });
    const original = [...(first.vectors[0] as number[])];
    (first.vectors[0] as number[]).fill(0);
    expect((await cached.embed({ texts: ["copy me"] })).vectors[0]).toEqual(original);
  });

  it("passes batches through uncached, and still refuses another model", async () => {
    const { embedder, calls } = counting(createLocalEmbedder({ dimensions: 64 }));
    const cached = withQueryCache(embedder);
    await cached.embed({ texts: ["a", "b"] });
    await cached.embed({ texts: ["a", "b"] });
    expect(calls).toHaveLength(2);
    await expect(cached.embed({ texts: ["a"], model: "text-embedding-3-small" })).rejects.toThrow(
      /serves/,
    );
  });

  it("forgets the least recently used query past its bound", async () => {
    const { embedder, calls } = counting(createLocalEmbedder({ dimensions: 64 }));
    const cached = withQueryCache(embedder, { max: 2 });
    for (const q of ["one", "two", "three", "one"]) await cached.embed({ texts: [q] });
    expect(calls.map((c) => c.texts[0])).toEqual(["one", "two", "three", "one"]);
  });
});
