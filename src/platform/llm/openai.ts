import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from "openai";
import { countTokens } from "../embeddings/tokens.js";
import { backoffMs, retryAfterMs, sleep } from "../retry.js";
import {
  type ChatChunk,
  type ChatCompletions,
  type ChatMessage,
  type ChatRequest,
  type ChatUsage,
  LlmError,
  type LlmErrorCode,
} from "./chat.js";

export interface OpenAIChatOptions {
  /** The operator's key. A request's own `apiKey` (the tenant's) wins over it. */
  apiKey?: string;
  /** Any OpenAI-compatible endpoint (Ollama, vLLM, LiteLLM, Azure); OpenAI's when omitted. */
  baseURL?: string;
  defaultModel?: string;
  /** Retries before the first token, after the first attempt, for 408/409/429/5xx, network and timeouts. */
  maxRetries?: number;
  /** First backoff without a Retry-After header; it doubles per retry, up to 8 s, with jitter. */
  initialRetryDelayMs?: number;
  /** The longest Retry-After honoured; a server asking for more fails the call at once. */
  maxRetryDelayMs?: number;
  /** From sending the request to the first chunk of the answer. */
  firstTokenTimeoutMs?: number;
  /** The longest gap between two chunks of a started answer (a stalled stream). */
  idleTimeoutMs?: number;
  fetch?: typeof fetch;
}

/** Clients kept per key: one per tenant that brings a key, plus the operator's. */
const MAX_CLIENTS = 256;

/** Thrown inside an attempt when the wire carried something else than a completion stream. */
class WireError extends Error {}

/**
 * Chat completions through the official `openai` SDK against any OpenAI-compatible
 * `/v1/chat/completions`, always streamed (`stream_options.include_usage`, so the server's own
 * token count comes in the last chunk; a server that sends none is counted with the model's
 * tokenizer and the usage says so).
 *
 * Retries are ours (the SDK's maxRetries is 0), and only before the first delta reaches the
 * caller: a 429 or 5xx, a network failure or a first-token timeout is retried with backoff,
 * honouring Retry-After / retry-after-ms up to `maxRetryDelayMs`. Once text has gone out a
 * failure is `llm.interrupted` with the text so far, never a retry that would repeat it.
 *
 * The stall timer runs from one chunk to the next, including the time the caller takes to ask
 * for the next one: callers should read the stream promptly and buffer on their side.
 */
export function createOpenAIChat(opts: OpenAIChatOptions = {}): ChatCompletions {
  const defaultModel = opts.defaultModel ?? "gpt-4o-mini";
  const maxRetries = opts.maxRetries ?? 2;
  const initialDelayMs = opts.initialRetryDelayMs ?? 500;
  const maxDelayMs = opts.maxRetryDelayMs ?? 20_000;
  const firstTokenTimeoutMs = opts.firstTokenTimeoutMs ?? 30_000;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
  const clients = new Map<string, OpenAI>();

  function clientFor(apiKey: string): OpenAI {
    let client = clients.get(apiKey);
    if (client) {
      clients.delete(apiKey); // re-inserted below: least recently used first
    } else {
      // Every option is explicit: the SDK would otherwise read OPENAI_* environment variables.
      client = new OpenAI({
        apiKey,
        baseURL: opts.baseURL ?? "https://api.openai.com/v1",
        organization: null,
        project: null,
        adminAPIKey: null,
        webhookSecret: null,
        maxRetries: 0,
        // Our own timers end an attempt; the SDK's is only a backstop.
        timeout: firstTokenTimeoutMs + idleTimeoutMs * 20,
        logLevel: "warn",
        ...(opts.fetch ? { fetch: opts.fetch } : {}),
      });
      if (clients.size >= MAX_CLIENTS) clients.delete(clients.keys().next().value as string);
    }
    clients.set(apiKey, client);
    return client;
  }

  async function* stream(req: ChatRequest): AsyncGenerator<ChatChunk, void, undefined> {
    req.signal?.throwIfAborted();
    const model = req.model ?? defaultModel;
    // The tenant's key never falls back to the operator's: that would bill the operator.
    const apiKey = req.apiKey ?? opts.apiKey;
    if (!apiKey) {
      throw new LlmError("llm.not_configured", "no API key for the chat model", {
        retryable: false,
      });
    }
    if (req.messages.length === 0) {
      throw new LlmError("llm.bad_request", "a chat request needs at least one message", {
        retryable: false,
      });
    }
    const client = clientFor(apiKey);
    for (let retry = 0; ; retry++) {
      const attempt = new AbortController();
      const onAbort = () => attempt.abort(req.signal?.reason);
      req.signal?.addEventListener("abort", onAbort, { once: true });
      let timedOut: "first" | "stall" | undefined;
      let timer = setTimeout(() => {
        timedOut = "first";
        attempt.abort();
      }, firstTokenTimeoutMs);
      const rearm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          timedOut = "stall";
          attempt.abort();
        }, idleTimeoutMs);
      };
      let text = "";
      let usage: ChatUsage | undefined;
      try {
        const chunks = await client.chat.completions.create(
          {
            model,
            messages: req.messages.map((m) => ({ role: m.role, content: m.content })),
            stream: true,
            stream_options: { include_usage: true },
            ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
            ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
          },
          { signal: attempt.signal },
        );
        let served = model;
        let finish: string | undefined;
        let seen = 0;
        for await (const chunk of chunks) {
          rearm();
          seen += 1;
          if (!chunk || typeof chunk !== "object" || !Array.isArray(chunk.choices)) {
            throw new WireError("a stream chunk without choices");
          }
          if (typeof chunk.model === "string" && chunk.model) served = chunk.model;
          if (chunk.usage) usage = reportedUsage(chunk.usage);
          const choice = chunk.choices[0];
          if (!choice) continue;
          const piece = choice.delta?.content;
          if (piece !== undefined && piece !== null && typeof piece !== "string") {
            throw new WireError("a delta whose content is not text");
          }
          if (piece) {
            text += piece;
            yield { type: "delta", text: piece };
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        if (finish === undefined) {
          throw new WireError(
            seen === 0
              ? "the answer held no completion chunks"
              : "the stream ended before the model finished",
          );
        }
        yield {
          type: "end",
          finishReason: finish,
          model: served,
          usage: usage ?? countedUsage(req.messages, text, model),
        };
        return;
      } catch (err) {
        if (req.signal?.aborted) throw req.signal.reason;
        const failure = classify(err, timedOut);
        if (text.length > 0) {
          throw new LlmError("llm.interrupted", `${failure.message}, after part of the answer`, {
            retryable: failure.retryable,
            partial: text,
            usage: usage ?? countedUsage(req.messages, text, model),
            cause: err,
            ...(failure.status !== undefined ? { status: failure.status } : {}),
          });
        }
        const asked = retryAfterMs(failure.headers);
        const fail = (message = failure.message) =>
          new LlmError(failure.code, message, {
            retryable: failure.retryable,
            cause: err,
            ...(failure.status !== undefined ? { status: failure.status } : {}),
          });
        if (!failure.retryable) throw fail();
        if (asked !== undefined && asked > maxDelayMs) {
          throw fail(`${failure.message}; the server asks to wait ${Math.ceil(asked / 1000)} s`);
        }
        if (retry >= maxRetries) {
          throw fail(retry > 0 ? `${failure.message} (after ${retry + 1} attempts)` : undefined);
        }
        await sleep(asked ?? backoffMs(retry, initialDelayMs), req.signal);
      } finally {
        clearTimeout(timer);
        req.signal?.removeEventListener("abort", onAbort);
        // Ends the HTTP exchange when the caller stopped reading early (or it already ended).
        attempt.abort();
      }
    }
  }

  return { provider: "openai", defaultModel, stream };
}

function reportedUsage(u: { prompt_tokens?: unknown; completion_tokens?: unknown }): ChatUsage {
  const prompt = u.prompt_tokens;
  const completion = u.completion_tokens;
  if (
    typeof prompt !== "number" ||
    typeof completion !== "number" ||
    !Number.isInteger(prompt) ||
    !Number.isInteger(completion) ||
    prompt < 0 ||
    completion < 0
  ) {
    throw new WireError("a usage report that is not token counts");
  }
  return { promptTokens: prompt, completionTokens: completion, source: "provider" };
}

/**
 * The tokens of a call whose server reported none, with the model's tokenizer: each message
 * costs its content plus 3 tokens of framing, and the reply 3 more (OpenAI's own accounting).
 */
export function countedUsage(
  messages: readonly ChatMessage[],
  completion: string,
  model: string,
): ChatUsage {
  let prompt = 3;
  for (const m of messages) prompt += 3 + countTokens(m.content, model);
  return {
    promptTokens: prompt,
    completionTokens: countTokens(completion, model),
    source: "counted",
  };
}

interface Failure {
  code: LlmErrorCode;
  retryable: boolean;
  message: string;
  status?: number;
  headers?: Headers;
}

function classify(err: unknown, timedOut: "first" | "stall" | undefined): Failure {
  if (timedOut) {
    return {
      code: "llm.timeout",
      retryable: true,
      message:
        timedOut === "first"
          ? "the chat model sent no answer in time"
          : "the chat model's stream stalled",
    };
  }
  if (err instanceof WireError) {
    return {
      code: "llm.invalid_response",
      retryable: false,
      message: `the chat model's answer is not a completion stream: ${err.message}`,
    };
  }
  if (err instanceof APIConnectionError || err instanceof APIUserAbortError) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : "";
    return {
      code: "llm.unavailable",
      retryable: true,
      message: `chat model unreachable: ${err.message}${cause}`,
    };
  }
  if (err instanceof APIError) {
    const status = err.status;
    // An error event inside a started stream has no status: the server failed mid-answer.
    if (status === undefined) {
      return { code: "llm.unavailable", retryable: true, message: `chat model: ${err.message}` };
    }
    const base = { status, headers: err.headers, message: `chat model: ${err.message}` };
    if (status === 401 || status === 403)
      return { ...base, code: "llm.auth_failed", retryable: false };
    if (status === 429) return { ...base, code: "llm.rate_limited", retryable: true };
    if (status === 408 || status === 409 || status >= 500) {
      return { ...base, code: "llm.unavailable", retryable: true };
    }
    return { ...base, code: "llm.bad_request", retryable: false };
  }
  if (err instanceof SyntaxError) {
    return {
      code: "llm.invalid_response",
      retryable: false,
      message: `the chat model's answer is not JSON: ${err.message}`,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: "llm.invalid_response", retryable: false, message: `chat model: ${message}` };
}
