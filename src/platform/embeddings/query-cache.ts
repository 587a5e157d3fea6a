import { LRUCache } from "lru-cache";
import type { Embedder, EmbedRequest, EmbedResult } from "./embedder.js";

/**
 * Wraps a deterministic embedder (the local one: the same text gives the same vector on every
 * call) with an LRU of single-text requests, by text: what a search embeds. Batches (ingestion)
 * go straight through, uncached, so a bulk load does not evict the queries. Never wrap an
 * embedder whose answer depends on anything but the text and the model (a provider key, a
 * remote model that may change): the key here is the model and the text only.
 *
 * Each hit returns a copy of the vector, so a caller that changes its result cannot change
 * what the next caller gets. Tokens are those of the first answer: the same text counts the
 * same.
 */
export function withQueryCache(embedder: Embedder, opts: { max?: number } = {}): Embedder {
  const cache = new LRUCache<string, EmbedResult>({ max: opts.max ?? 2_000 });
  const keyOf = (req: EmbedRequest) => `${req.model ?? embedder.defaultModel}\u0000${req.texts[0]}`;
  return {
    provider: embedder.provider,
    defaultModel: embedder.defaultModel,
    async embed(req: EmbedRequest): Promise<EmbedResult> {
      if (req.texts.length !== 1) return embedder.embed(req);
      req.signal?.throwIfAborted();
      const key = keyOf(req);
      let res = cache.get(key);
      if (!res) {
        res = await embedder.embed(req);
        cache.set(key, res);
      }
      return { ...res, vectors: res.vectors.map((v) => v.slice()) };
    },
  };
}
