import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type ChatChunk,
  type ChatCompletions,
  complete,
  countedUsage,
  createOpenAIChat,
  LlmError,
  type OpenAIChatOptions,
} from "../../src/platform/llm/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";

/**
 * The chat-model port's OpenAI-compatible adapter against a server on loopback that speaks
 * OpenAI's wire format: streamed chunks, the usage chunk, errors before and during the stream,
 * garbage, stalls. Retries happen before the first delta only.
 */

const OPERATOR_KEY = "sk-operator-chat-0000";
const TENANT_KEY = "sk-tenant-chat-1111";
const MESSAGES = [
  { role: "system" as const, content: "Answer from the context only." },
  { role: "user" as const, content: "When does the shop open on Sundays?" },
];

let fake: FakeOpenAI;
beforeAll(async () => {
  fake = await startFakeOpenAI({ keys: [OPERATOR_KEY, TENANT_KEY] });
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

function model(extra: OpenAIChatOptions = {}): ChatCompletions {
  return createOpenAIChat({
    apiKey: OPERATOR_KEY,
    baseURL: fake.url,
    defaultModel: "gpt-4o-mini",
    initialRetryDelayMs: 10,
    // Generous: a loaded machine must not turn an answer into a timeout.
    firstTokenTimeoutMs: 15_000,
    idleTimeoutMs: 15_000,
    ...extra,
  });
}

async function collect(m: ChatCompletions, req = {}) {
  const chunks: ChatChunk[] = [];
  for await (const c of m.stream({ messages: MESSAGES, ...req })) chunks.push(c);
  return chunks;
}

async function failure(run: Promise<unknown>): Promise<LlmError> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LlmError);
  return err as LlmError;
}

describe("chat model: OpenAI-compatible adapter", () => {
  it("streams the answer in deltas, then the end with the server's usage", async () => {
    fake.chat.answer = () => "The shop opens at 10:00 on Sundays [1].";
    const chunks = await collect(model());
    const deltas = chunks.filter((c) => c.type === "delta");
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.map((d) => d.text).join("")).toBe("The shop opens at 10:00 on Sundays [1].");
    const end = chunks.at(-1);
    expect(end?.type).toBe("end");
    const expected = fake.chat.usage?.(MESSAGES, "The shop opens at 10:00 on Sundays [1].");
    expect(end).toEqual({
      type: "end",
      finishReason: "stop",
      model: "gpt-4o-mini",
      usage: {
        promptTokens: expected?.prompt_tokens,
        completionTokens: expected?.completion_tokens,
        source: "provider",
      },
    });
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({
      path: "/v1/chat/completions",
      apiKey: OPERATOR_KEY,
      model: "gpt-4o-mini",
      stream: true,
      messages: MESSAGES,
    });
  });

  it("calls with the request's key (a tenant's) rather than the operator's, and its model", async () => {
    const { text, end } = await complete(model(), {
      messages: MESSAGES,
      apiKey: TENANT_KEY,
      model: "gpt-4.1-mini",
    });
    expect(text).toBe(`You said: ${MESSAGES[1]?.content}`);
    expect(end.model).toBe("gpt-4.1-mini");
    expect(fake.requests.map((r) => [r.apiKey, r.model])).toEqual([[TENANT_KEY, "gpt-4.1-mini"]]);
  });

  it("counts the tokens with the tokenizer when the server reports none, and says so", async () => {
    fake.chat.usage = null;
    const { text, end } = await complete(model(), { messages: MESSAGES });
    expect(end.usage.source).toBe("counted");
    expect(end.usage).toEqual(countedUsage(MESSAGES, text, "gpt-4o-mini"));
    expect(end.usage.promptTokens).toBeGreaterThan(10);
    expect(end.usage.completionTokens).toBeGreaterThan(3);
  });

  it("without any key, refuses before calling", async () => {
    const err = await failure(collect(createOpenAIChat({ baseURL: fake.url })));
    expect(err.code).toBe("llm.not_configured");
    expect(fake.requests).toHaveLength(0);
  });

  it("retries a 429 after the Retry-After it was given, before the first token", async () => {
    fake.failNext({ status: 429, retryAfterMs: "150" }, 1);
    const started = Date.now();
    const { text } = await complete(model(), { messages: MESSAGES });
    expect(text).toContain("You said:");
    expect(fake.requests).toHaveLength(2);
    expect((fake.requests[1]?.at ?? 0) - (fake.requests[0]?.at ?? 0)).toBeGreaterThanOrEqual(140);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it("fails at once, retryable, when the server asks for a longer wait than allowed", async () => {
    fake.failNext({ status: 429, retryAfter: "120" }, 1);
    const err = await failure(collect(model({ maxRetryDelayMs: 5_000 })));
    expect(err.code).toBe("llm.rate_limited");
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/120 s/);
    expect(fake.requests).toHaveLength(1);
  });

  it("retries 5xx a bounded number of times, then fails as unavailable", async () => {
    fake.failNext({ status: 503 });
    const err = await failure(collect(model({ maxRetries: 2 })));
    expect(err.code).toBe("llm.unavailable");
    expect(err.details.status).toBe(503);
    expect(err.retryable).toBe(true);
    expect(fake.requests).toHaveLength(3);
  });

  it("does not retry a refused key or an unknown model", async () => {
    const refused = await failure(collect(model(), { apiKey: "sk-not-a-key" }));
    expect(refused.code).toBe("llm.auth_failed");
    expect(refused.retryable).toBe(false);
    const unknown = await failure(collect(model(), { model: "missing-model" }));
    expect(unknown.code).toBe("llm.bad_request");
    expect(fake.requests).toHaveLength(2);
  });

  for (const how of ["error", "close", "garbage"] as const) {
    it(`a stream broken mid-answer (${how}) is interrupted with the text so far, not retried`, async () => {
      fake.chat.answer = () => "Sundays: 10:00 to 16:00. Holidays: closed.";
      fake.chat.pieceSize = 5;
      fake.chat.breakAfter = { afterPieces: 2, how };
      const seen: string[] = [];
      const err = await failure(
        (async () => {
          for await (const c of model().stream({ messages: MESSAGES })) {
            if (c.type === "delta") seen.push(c.text);
          }
        })(),
      );
      expect(err.code).toBe("llm.interrupted");
      expect(err.details.partial).toBe("Sunda" + "ys: 1");
      expect(seen.join("")).toBe(err.details.partial);
      expect(err.details.usage?.completionTokens).toBeGreaterThan(0);
      expect(fake.requests).toHaveLength(1);
    });
  }

  it("a stream broken before any text is retried like a failed request", async () => {
    fake.chat.breakAfter = { afterPieces: 0, how: "error" };
    const err = await failure(collect(model({ maxRetries: 1 })));
    expect(err.code).toBe("llm.unavailable");
    expect(fake.requests).toHaveLength(2);
  });

  it("a stalled stream ends with a timeout at the idle limit, with the text so far", async () => {
    fake.chat.pieceSize = 4;
    fake.chat.breakAfter = { afterPieces: 1, how: "stall" };
    const started = Date.now();
    const err = await failure(collect(model({ idleTimeoutMs: 300 })));
    expect(err.code).toBe("llm.interrupted");
    expect(err.message).toMatch(/stalled/);
    expect(err.details.partial).toBe("You ");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("no first token in time: a timeout, retried, then reported", async () => {
    fake.delayMs = 1_000;
    const err = await failure(collect(model({ firstTokenTimeoutMs: 200, maxRetries: 1 })));
    expect(err.code).toBe("llm.timeout");
    expect(err.retryable).toBe(true);
    expect(fake.requests).toHaveLength(2);
  });

  it("a 200 that is not a completion stream (an HTML page) is an invalid response, not retried", async () => {
    fake.chat.html = true;
    const err = await failure(collect(model()));
    expect(err.code).toBe("llm.invalid_response");
    expect(err.retryable).toBe(false);
    expect(fake.requests).toHaveLength(1);
  });

  it("the caller's abort ends the call at once with the caller's reason", async () => {
    fake.chat.pieceDelayMs = 200;
    const controller = new AbortController();
    const reason = new Error("the visitor went away");
    const run = (async () => {
      for await (const c of model().stream({ messages: MESSAGES, signal: controller.signal })) {
        if (c.type === "delta") controller.abort(reason);
      }
    })();
    await expect(run).rejects.toBe(reason);
    expect(fake.requests).toHaveLength(1);
  });
});
