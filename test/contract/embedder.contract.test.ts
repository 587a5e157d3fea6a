import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  countTokensBatch,
  type Embedder,
  EmbeddingError,
} from "../../src/platform/embeddings/index.js";
import { createLocalEmbedder } from "../../src/platform/embeddings/local.js";
import {
  createOpenAIEmbedder,
  type OpenAIEmbedderOptions,
} from "../../src/platform/embeddings/openai.js";
import { retryAfterMs } from "../../src/platform/retry.js";
import { type FakeOpenAI, fakeEmbedding, startFakeOpenAI } from "../fixtures/fake-openai.js";

const OPERATOR_KEY = "sk-operator-0000";
const TENANT_KEY = "sk-tenant-1111";

let fake: FakeOpenAI;
beforeAll(async () => {
  fake = await startFakeOpenAI({ keys: [OPERATOR_KEY, TENANT_KEY] });
});
afterAll(() => fake?.close());
beforeEach(() => fake.reset());

/** An OpenAI embedder on the fake, with short backoffs so retry tests stay fast. */
function openai(opts: OpenAIEmbedderOptions = {}) {
  return createOpenAIEmbedder({
    apiKey: OPERATOR_KEY,
    baseURL: fake.url,
    initialRetryDelayMs: 10,
    maxRetries: 2,
    ...opts,
  });
}

const norm = (v: number[]) => Math.hypot(...v);
const texts = (n: number, tag = "text") => Array.from({ length: n }, (_, i) => `${tag} ${i}`);
const failure = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: unknown) => e as EmbeddingError,
  );

const adapters: Array<{ name: string; make: () => Embedder }> = [
  { name: "local", make: () => createLocalEmbedder() },
  {
    name: "openai",
    make: () => {
      // The provider is allowed to reorder `data` and some compatible servers do not
      // normalise: the adapter must cope with both. Batches of 2 make every call cross batches.
      fake.reverseOrder = true;
      fake.scale = 3;
      return openai({ batchSize: 2 });
    },
  },
];

describe.each(adapters)("Embedder port: $name", ({ name, make }) => {
  let embedder: Embedder;
  beforeEach(() => {
    embedder = make();
  });

  it("reports which provider it is", () => {
    expect(embedder.provider).toBe(name);
  });

  it("returns one vector per text, each in its text's position", async () => {
    const input = ["refund policy", "shipping times", "api rate limits", "sso setup", "invoices"];
    const batch = await embedder.embed({ texts: input });
    expect(batch.vectors).toHaveLength(input.length);
    for (const [i, text] of input.entries()) {
      const single = await embedder.embed({ texts: [text] });
      expect(batch.vectors[i]).toEqual(single.vectors[0]);
    }
  });

  it("returns unit vectors of the reported dimension and the model used", async () => {
    const res = await embedder.embed({ texts: ["alpha", "a much longer text ".repeat(50)] });
    expect(res.dimensions).toBeGreaterThan(0);
    expect(res.model).toBe(embedder.defaultModel);
    for (const v of res.vectors) {
      expect(v).toHaveLength(res.dimensions);
      expect(norm(v)).toBeCloseTo(1, 6);
    }
  });

  it("gives the same text the same vector and different texts different ones", async () => {
    const res = await embedder.embed({ texts: ["same", "other", "same"] });
    const [a, b, c] = res.vectors;
    expect(c).toEqual(a);
    expect(b).not.toEqual(a);
    const again = await embedder.embed({ texts: ["same"] });
    expect(again.vectors[0]).toEqual(a);
  });

  it("bills tokens for every text, adding up across texts", async () => {
    const a = await embedder.embed({ texts: ["How do refunds work?"] });
    const b = await embedder.embed({ texts: ["Shipping takes five days."] });
    const both = await embedder.embed({
      texts: ["How do refunds work?", "Shipping takes five days."],
    });
    expect(a.tokens).toBeGreaterThan(0);
    expect(both.tokens).toBe(a.tokens + b.tokens);
  });

  it("embeds an empty list as no vectors and no tokens", async () => {
    const res = await embedder.embed({ texts: [] });
    expect(res.vectors).toEqual([]);
    expect(res.tokens).toBe(0);
  });

  it("rejects with the abort reason when the signal is already aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(embedder.embed({ texts: ["x"], signal: controller.signal })).rejects.toBe(
      controller.signal.reason,
    );
  });
});

describe("OpenAI adapter against an OpenAI-compatible server", () => {
  it("sends 250 texts as batches of 96, 96 and 58 and keeps input order", async () => {
    const input = texts(250);
    const res = await openai({ batchSize: 96 }).embed({ texts: input });
    expect(fake.requests.map((r) => r.inputs.length)).toEqual([96, 96, 58]);
    expect(fake.requests.flatMap((r) => r.inputs)).toEqual(input);
    // The SDK asks for base64 by default; the fake answers in kind, so decoding is exercised.
    expect(fake.requests.every((r) => r.encodingFormat === "base64")).toBe(true);
    expect(res.dimensions).toBe(1536);
    for (const [i, text] of input.entries()) {
      const expected = fakeEmbedding(text, "text-embedding-3-small", 1536);
      expect(res.vectors[i]?.[0]).toBeCloseTo(expected[0] as number, 6);
      expect(res.vectors[i]?.[1535]).toBeCloseTo(expected[1535] as number, 6);
    }
  });

  it("uses the tenant's key when given, never falling back to the operator's", async () => {
    const embedder = openai();
    await embedder.embed({ texts: ["a"], apiKey: TENANT_KEY });
    await embedder.embed({ texts: ["b"] });
    expect(fake.requests.map((r) => r.apiKey)).toEqual([TENANT_KEY, OPERATOR_KEY]);

    const err = await failure(embedder.embed({ texts: ["c"], apiKey: "sk-revoked" }));
    expect(err).toBeInstanceOf(EmbeddingError);
    expect(err).toMatchObject({ retryable: false, status: 401 });
    expect(err?.message).toContain("Incorrect API key provided");
    expect(fake.requests.slice(2).map((r) => r.apiKey)).toEqual(["sk-revoked"]);
  });

  it("waits as long as Retry-After says after a 429, then succeeds", async () => {
    fake.failNext({ status: 429, retryAfter: "1" }, 1);
    const res = await openai().embed({ texts: ["x"] });
    expect(res.vectors).toHaveLength(1);
    const [first, second] = fake.requests;
    expect(fake.requests).toHaveLength(2);
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it("prefers retry-after-ms over its own (here much longer) backoff", async () => {
    fake.failNext({ status: 429, retryAfterMs: "150" }, 1);
    const started = Date.now();
    await openai({ initialRetryDelayMs: 20_000 }).embed({ texts: ["x"] });
    expect(fake.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("gives up at once, as retryable, when Retry-After exceeds the longest wait allowed", async () => {
    fake.failNext({ status: 429, retryAfter: "120" }, 1);
    const err = await failure(openai({ maxRetryDelayMs: 30_000 }).embed({ texts: ["x"] }));
    expect(err).toMatchObject({ retryable: true, status: 429 });
    expect(fake.requests).toHaveLength(1);
  });

  it("reads Retry-After given as an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    const headers = new Headers({ "retry-after": new Date(now + 5_000).toUTCString() });
    expect(retryAfterMs(headers, now)).toBe(5_000);
    expect(retryAfterMs(new Headers({ "retry-after": "2" }), now)).toBe(2_000);
    expect(retryAfterMs(new Headers(), now)).toBeUndefined();
  });

  it("retries 503s and succeeds once the provider recovers", async () => {
    fake.failNext({ status: 503 }, 2);
    const res = await openai({ maxRetries: 2 }).embed({ texts: ["x", "y"] });
    expect(res.vectors).toHaveLength(2);
    expect(fake.requests).toHaveLength(3);
  });

  it("fails as retryable after maxRetries when the provider keeps answering 500", async () => {
    fake.failNext({ status: 500 });
    const err = await failure(openai({ maxRetries: 3 }).embed({ texts: ["x"] }));
    expect(err).toBeInstanceOf(EmbeddingError);
    expect(err).toMatchObject({ retryable: true, status: 500 });
    expect(fake.requests).toHaveLength(4);
  });

  it("fails at once, not retryable, on an unknown model, with the provider's message", async () => {
    const err = await failure(openai().embed({ texts: ["x"], model: "text-embedding-9" }));
    expect(err).toMatchObject({ retryable: false, status: 400 });
    expect(err?.message).toContain("does not exist");
    expect(fake.requests).toHaveLength(1);
  });

  it("fails as retryable after retrying when the server cannot be reached", async () => {
    const gone = await startFakeOpenAI({ keys: [OPERATOR_KEY] });
    await gone.close();
    let attempts = 0;
    const countingFetch: typeof fetch = (input, init) => {
      attempts++;
      return fetch(input, init);
    };
    const embedder = openai({ baseURL: gone.url, fetch: countingFetch, maxRetries: 2 });
    const err = await failure(embedder.embed({ texts: ["x"] }));
    expect(err).toBeInstanceOf(EmbeddingError);
    expect(err).toMatchObject({ retryable: true, status: undefined });
    expect(attempts).toBe(3);
  });

  it("bills the provider's reported usage, summed over batches", async () => {
    fake.usage = () => 1_000;
    const res = await openai({ batchSize: 96 }).embed({ texts: texts(250) });
    expect(res.tokens).toBe(3_000);
  });

  it("counts tokens itself when the provider reports no usage", async () => {
    fake.usage = null;
    const input = ["Ollama and TEI do not always report usage.", "Second chunk."];
    const res = await openai().embed({ texts: input });
    expect(res.tokens).toBe(countTokensBatch(input, "text-embedding-3-small"));
    expect(res.tokens).toBeGreaterThan(0);
  });

  it("asks for shorter vectors when configured with dimensions", async () => {
    const res = await openai({ dimensions: 256 }).embed({ texts: ["x"] });
    expect(fake.requests[0]?.dimensions).toBe(256);
    expect(res.dimensions).toBe(256);
    expect(res.vectors[0]).toHaveLength(256);
  });

  it("stops waiting for a slow provider when the signal aborts", async () => {
    fake.delayMs = 10_000;
    const started = Date.now();
    const err = await failure(openai().embed({ texts: ["x"], signal: AbortSignal.timeout(150) }));
    expect(err).toMatchObject({ name: "TimeoutError" });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("stops a Retry-After wait when the signal aborts", async () => {
    fake.failNext({ status: 429, retryAfter: "30" }, 1);
    const started = Date.now();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 150);
    const err = await failure(openai().embed({ texts: ["x"], signal: controller.signal }));
    expect(err).toMatchObject({ name: "AbortError" });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(fake.requests).toHaveLength(1);
  });

  it("refuses to run without any API key", async () => {
    const err = await failure(openai({ apiKey: undefined }).embed({ texts: ["x"] }));
    expect(err).toMatchObject({ retryable: false });
    expect(fake.requests).toHaveLength(0);
  });
});
