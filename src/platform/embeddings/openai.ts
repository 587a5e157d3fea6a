import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from "openai";
import { backoffMs, retryAfterMs, sleep } from "../retry.js";
import { type Embedder, EmbeddingError, type EmbedRequest, type EmbedResult } from "./embedder.js";
import { createRateGate, type RateGate, RateGateTimeout } from "./rate-gate.js";
import { countTokensBatch } from "./tokens.js";

export interface OpenAIEmbedderOptions {
  /** The operator's key. A request's own `apiKey` (the tenant's) wins over it. */
  apiKey?: string;
  /** Any OpenAI-compatible endpoint (Azure, Ollama, vLLM, TEI); OpenAI's when omitted. */
  baseURL?: string;
  defaultModel?: string;
  /** Texts per request. OpenAI accepts up to 2048, but smaller batches retry cheaper. */
  batchSize?: number;
  /** Retries per batch, after the first attempt, for 408/409/429/5xx and network failures. */
  maxRetries?: number;
  /** Asks the provider for shorter vectors (text-embedding-3-* only). */
  dimensions?: number;
  fetch?: typeof fetch;
  /** First backoff without a Retry-After header; it doubles per retry, up to 8 s, with jitter. */
  initialRetryDelayMs?: number;
  /**
   * The longest Retry-After honoured. A provider asking for more fails the call at once as
   * retryable, so a job goes back to its queue instead of holding a worker for minutes.
   */
  maxRetryDelayMs?: number;
  /** Per HTTP request. */
  timeoutMs?: number;
  /**
   * The longest one embed call waits, in all, for a rate-limited key (Retry-After pauses and
   * the queue for a place under the key's adaptive concurrency) before it fails as retryable,
   * so that its job goes back to the queue and runs again later. Default 60 s.
   */
  maxRateLimitWaitMs?: number;
  /** Requests in flight per provider key at first (default 4) and at most (default 16). */
  keyConcurrency?: { initial: number; max: number };
}

/** Vector lengths of OpenAI's models, reported for an empty request that asks nothing. */
const KNOWN_DIMENSIONS: Record<string, number> = {
  "text-embedding-3-small": 1536,
  "text-embedding-3-large": 3072,
  "text-embedding-ada-002": 1536,
};
/** Clients kept per key; one per tenant that brings a key, plus the operator's. */
const MAX_CLIENTS = 256;

interface KeyState {
  client: OpenAI;
  gate: RateGate;
}

/**
 * Embeds through the official `openai` SDK against any OpenAI-compatible /v1/embeddings.
 *
 * Retries are ours, not the SDK's (its maxRetries is 0): the SDK's backoff sleep ignores the
 * AbortSignal and it honours any Retry-After however long. Ours honours Retry-After (seconds
 * or HTTP date) and retry-after-ms up to `maxRetryDelayMs`, backs off exponentially otherwise,
 * and stops at once on abort. Batches run one after another, in input order.
 *
 * Rate limits are per provider key (rate-gate.ts): a 429 pauses that key for every call using
 * it, for as long as the provider asked, and halves how many requests may be in flight with
 * it; successes raise that again. A 429 is retried until the call has waited
 * `maxRateLimitWaitMs` in all, then fails as retryable (the job runs again later, the document
 * is not failed). Other keys, other tenants' among them, are not slowed.
 */
export function createOpenAIEmbedder(opts: OpenAIEmbedderOptions = {}): Embedder {
  const defaultModel = opts.defaultModel ?? "text-embedding-3-small";
  const batchSize = opts.batchSize ?? 96;
  const policy: RetryPolicy = {
    maxRetries: opts.maxRetries ?? 4,
    initialDelayMs: opts.initialRetryDelayMs ?? 500,
    maxDelayMs: opts.maxRetryDelayMs ?? 60_000,
    maxRateLimitWaitMs: opts.maxRateLimitWaitMs ?? 60_000,
  };
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`openai embedder: batchSize must be a positive integer, got ${batchSize}`);
  }
  const keyConcurrency = opts.keyConcurrency ?? { initial: 4, max: 16 };
  const clients = new Map<string, KeyState>();

  function clientFor(apiKey: string): KeyState {
    let state = clients.get(apiKey);
    if (state) {
      // Re-insert so the Map's order is least recently used first.
      clients.delete(apiKey);
    } else {
      // Every option is explicit: the SDK would otherwise read OPENAI_* environment variables.
      const client = new OpenAI({
        apiKey,
        baseURL: opts.baseURL ?? "https://api.openai.com/v1",
        organization: null,
        project: null,
        adminAPIKey: null,
        webhookSecret: null,
        maxRetries: 0,
        timeout: opts.timeoutMs ?? 60_000,
        logLevel: "warn",
        ...(opts.fetch ? { fetch: opts.fetch } : {}),
      });
      const gate = createRateGate({
        initialConcurrency: keyConcurrency.initial,
        maxConcurrency: keyConcurrency.max,
      });
      state = { client, gate };
      if (clients.size >= MAX_CLIENTS) clients.delete(clients.keys().next().value as string);
    }
    clients.set(apiKey, state);
    return state;
  }

  return {
    provider: "openai",
    defaultModel,
    async embed(req: EmbedRequest): Promise<EmbedResult> {
      req.signal?.throwIfAborted();
      const model = req.model ?? defaultModel;
      // The tenant's key never falls back to the operator's: that would bill the operator.
      const apiKey = req.apiKey ?? opts.apiKey;
      if (!apiKey) {
        throw new EmbeddingError("no API key for the embedding provider", false);
      }
      if (req.texts.length === 0) {
        const dimensions = opts.dimensions ?? KNOWN_DIMENSIONS[model] ?? 0;
        return { vectors: [], dimensions, model, tokens: 0 };
      }
      const { client, gate } = clientFor(apiKey);
      const deadline = Date.now() + policy.maxRateLimitWaitMs;
      const vectors: number[][] = [];
      let tokens = 0;
      for (let start = 0; start < req.texts.length; start += batchSize) {
        const batch = req.texts.slice(start, start + batchSize);
        const res = await withRetries(
          () =>
            client.embeddings.create(
              { model, input: batch, ...(opts.dimensions ? { dimensions: opts.dimensions } : {}) },
              { signal: req.signal ?? null },
            ),
          { ...policy, gate, deadline },
          req.signal,
        );
        for (const v of inInputOrder(res.data, batch.length)) vectors.push(v);
        // Some compatible servers report no usage (or 0); then we count with a real tokenizer.
        const reported = (res.usage as { prompt_tokens?: unknown } | undefined)?.prompt_tokens;
        tokens +=
          typeof reported === "number" && reported > 0 ? reported : countTokensBatch(batch, model);
      }
      const dimensions = (vectors[0] as number[]).length;
      if (vectors.some((v) => v.length !== dimensions)) {
        throw new EmbeddingError("embedding provider returned vectors of different lengths", false);
      }
      return { vectors, dimensions, model, tokens };
    },
  };
}

/** The batch's vectors by their `index`, checked and L2-normalised. */
function inInputOrder(data: Array<{ index: number; embedding: number[] }>, n: number) {
  const sorted = [...data].sort((a, b) => a.index - b.index);
  if (sorted.length !== n || sorted.some((d, i) => d.index !== i)) {
    throw new EmbeddingError(
      `embedding provider returned ${data.length} vectors for ${n} texts, or bad indexes`,
      false,
    );
  }
  return sorted.map((d) => unit(d.embedding));
}

function unit(v: number[]): number[] {
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  if (!(norm > 0) || !Number.isFinite(norm)) {
    throw new EmbeddingError("embedding provider returned a zero or non-finite vector", false);
  }
  return Math.abs(norm - 1) < 1e-6 ? v : v.map((x) => x / norm);
}

interface RetryPolicy {
  maxRetries: number;
  initialDelayMs: number;
  maxDelayMs: number;
  maxRateLimitWaitMs: number;
}

interface Failure {
  retryable: boolean;
  message: string;
  status?: number;
  headers?: Headers;
}

/** 408 timeout, 409 lock contention, 429 rate limit and 5xx are worth another try. */
function classify(err: unknown): Failure {
  if (err instanceof APIConnectionError || err instanceof APIUserAbortError) {
    // Includes timeouts. An abort we did not ask for (ours is handled first) counts as network.
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : "";
    return { retryable: true, message: `embedding provider unreachable: ${err.message}${cause}` };
  }
  if (err instanceof APIError && err.status !== undefined) {
    const status = err.status;
    const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
    return {
      retryable,
      status,
      headers: err.headers,
      message: `embedding provider: ${err.message}`,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { retryable: false, message: `embedding failed: ${message}` };
}

/**
 * Runs `attempt` through the key's gate. 429s are retried once the gate lets the key be used
 * again, until `deadline`; other retryable failures `maxRetries` times with backoff.
 */
async function withRetries<T>(
  attempt: () => Promise<T>,
  policy: RetryPolicy & { gate: RateGate; deadline: number },
  signal?: AbortSignal,
): Promise<T> {
  const { gate } = policy;
  let limited = 0;
  for (let retry = 0; ; ) {
    try {
      await gate.acquire(policy.deadline, signal);
    } catch (err) {
      if (!(err instanceof RateGateTimeout)) throw err;
      const waited = Math.round(policy.maxRateLimitWaitMs / 1000);
      throw new EmbeddingError(
        `embedding provider rate limit: ${err.message}, beyond the ${waited} s this call waits; try again later`,
        true,
        429,
      );
    }
    let failure: Failure;
    let error: unknown;
    try {
      const result = await attempt();
      gate.release({ kind: "success" });
      return result;
    } catch (err) {
      error = err;
      failure = classify(err);
    }
    const asked = retryAfterMs(failure.headers);
    if (failure.status === 429) {
      gate.release({
        kind: "rate_limited",
        pauseMs: asked ?? backoffMs(limited++, policy.initialDelayMs),
      });
    } else {
      gate.release({ kind: "other" });
    }
    signal?.throwIfAborted();
    const fail = (message: string) => {
      const e = new EmbeddingError(message, failure.retryable, failure.status);
      e.cause = error;
      return e;
    };
    if (!failure.retryable) throw fail(failure.message);
    if (asked !== undefined && asked > policy.maxDelayMs) {
      throw fail(`${failure.message}; the provider asks to wait ${Math.ceil(asked / 1000)} s`);
    }
    // A 429 waits in the gate (the pause it set), bounded by the call's deadline.
    if (failure.status === 429) continue;
    if (retry >= policy.maxRetries) {
      const tries = retry > 0 ? ` (after ${retry + 1} attempts)` : "";
      throw fail(failure.message + tries);
    }
    await sleep(asked ?? backoffMs(retry, policy.initialDelayMs), signal);
    retry++;
  }
}
