import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createOpenAIEmbedder,
  EmbeddingError,
  type OpenAIEmbedderOptions,
} from "../../src/platform/embeddings/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";

/**
 * The OpenAI adapter under a provider's rate limit, across the real wire (the fake server on
 * loopback): a 429 for one key slows that key alone, honours Retry-After for every call on the
 * key, and ends, after a bounded wait, in a retryable failure rather than a terminal one.
 */

const KEY_A = "sk-tenant-a-0000";
const KEY_B = "sk-tenant-b-1111";

let fake: FakeOpenAI;
beforeAll(async () => {
  fake = await startFakeOpenAI({ keys: [KEY_A, KEY_B] });
});
afterAll(() => fake?.close());
beforeEach(() => fake.reset());

function openai(opts: OpenAIEmbedderOptions = {}) {
  return createOpenAIEmbedder({ baseURL: fake.url, initialRetryDelayMs: 10, ...opts });
}

describe("OpenAI adapter under a provider rate limit", () => {
  it("a 429 for tenant A's key pauses A's calls as long as asked, while B's go through", async () => {
    const embedder = openai();
    // A's first request is refused for a second; every call on A's key must wait that out.
    fake.failNextFor(KEY_A, { status: 429, retryAfter: "1" }, 1);
    const done: string[] = [];
    const call = (who: "a" | "b", i: number) =>
      embedder
        .embed({ texts: [`${who} doc ${i}`], apiKey: who === "a" ? KEY_A : KEY_B })
        .then((r) => {
          done.push(who);
          return r;
        });
    const first = call("a", 0);
    // Let A's first request be refused before the others start.
    await expect.poll(() => fake.requests.length).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 50));
    const results = await Promise.all([
      first,
      ...[1, 2, 3].map((i) => call("a", i)),
      ...[1, 2, 3].map((i) => call("b", i)),
    ]);
    // Every document of A is embedded, none failed; B's were not held behind A's pause.
    expect(results.every((r) => r.vectors.length === 1)).toBe(true);
    expect(done.slice(0, 3)).toEqual(["b", "b", "b"]);
    expect(done.filter((w) => w === "a")).toHaveLength(4);
    const ofA = fake.requests.filter((r) => r.apiKey === KEY_A);
    const refused = ofA[0]?.at ?? 0;
    // No request on A's key arrived before the Retry-After had passed (10 ms for timers).
    for (const r of ofA.slice(1)) expect(r.at - refused).toBeGreaterThanOrEqual(990);
    expect(ofA).toHaveLength(5);
  });

  it("honours retry-after-ms and keeps retrying 429s beyond maxRetries while the wait is bounded", async () => {
    fake.failNextFor(KEY_A, { status: 429, retryAfterMs: "120" }, 4);
    const res = await openai({ maxRetries: 1 }).embed({ texts: ["x"], apiKey: KEY_A });
    expect(res.vectors).toHaveLength(1);
    const at = fake.requests.map((r) => r.at);
    expect(at).toHaveLength(5);
    for (let i = 1; i < at.length; i++) {
      expect((at[i] as number) - (at[i - 1] as number)).toBeGreaterThanOrEqual(110);
    }
  });

  it("fails as retryable, not for good, once the call has waited its bound", async () => {
    fake.failNextFor(KEY_A, { status: 429, retryAfterMs: "200" });
    const err = await openai({ maxRateLimitWaitMs: 700 })
      .embed({ texts: ["x"], apiKey: KEY_A })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(EmbeddingError);
    expect(err).toMatchObject({ retryable: true, status: 429 });
    // It did retry within the bound, then gave the job back rather than waiting on.
    expect(fake.requests.length).toBeGreaterThanOrEqual(2);
    expect(fake.requests.length).toBeLessThanOrEqual(5);
    // B's key was never touched by A's limit.
    const b = await openai().embed({ texts: ["y"], apiKey: KEY_B });
    expect(b.vectors).toHaveLength(1);
  });
});
