/**
 * The port to a chat-completion model, as the conversation service needs it: messages in, a
 * stream of text deltas out, then how it ended and the tokens it used. The wire (OpenAI's, or
 * any compatible server's) stays in the adapter; what to ask and how to cite is the caller's.
 */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  messages: readonly ChatMessage[];
  /** The adapter's default model when omitted. */
  model?: string;
  /** The key to call with: a tenant's own wins over the operator's (the caller decides). */
  apiKey?: string;
  maxTokens?: number;
  temperature?: number;
  /** Aborting ends the call at once; the stream then throws the signal's reason. */
  signal?: AbortSignal;
}

export interface ChatUsage {
  promptTokens: number;
  completionTokens: number;
  /**
   * `provider` when the server reported it (what is billed); `counted` when it did not and the
   * tokens were counted here with the model's tokenizer.
   */
  source: "provider" | "counted";
}

/** How a completed stream ended: the model's own reason, and what it used. */
export interface ChatEnd {
  type: "end";
  /** "stop", "length" (cut at maxTokens), "content_filter", or the server's own word. */
  finishReason: string;
  model: string;
  usage: ChatUsage;
}

export type ChatChunk = { type: "delta"; text: string } | ChatEnd;

export interface ChatCompletions {
  readonly provider: string;
  readonly defaultModel: string;
  /**
   * Streams one completion. Every chunk before the last is a `delta`; the last is the `end`.
   * Failures are `LlmError`s. Before the first delta an adapter may retry; after it, never
   * (the caller may have shown the text): the error is `llm.interrupted`, with what was sent.
   */
  stream(req: ChatRequest): AsyncGenerator<ChatChunk, void, undefined>;
}

export type LlmErrorCode =
  /** No key to call with, or no endpoint. */
  | "llm.not_configured"
  /** The key was refused (401/403). */
  | "llm.auth_failed"
  /** The request was refused as malformed, or the model is unknown (400/404/422). */
  | "llm.bad_request"
  /** Still rate-limited (429) after the retries this call may make. */
  | "llm.rate_limited"
  /** 5xx or unreachable, after the retries. */
  | "llm.unavailable"
  /** No first token in time, or the stream stalled between chunks. */
  | "llm.timeout"
  /** The server answered something that is not the wire format. */
  | "llm.invalid_response"
  /** The stream failed after text had been sent: `partial` holds it. */
  | "llm.interrupted";

export class LlmError extends Error {
  override name = "LlmError";
  constructor(
    readonly code: LlmErrorCode,
    message: string,
    readonly details: {
      /** Whether a later call may succeed (rate limits, outages, timeouts). */
      retryable: boolean;
      status?: number;
      /** For `llm.interrupted`: the text streamed before the failure. */
      partial?: string;
      /** For `llm.interrupted`: the tokens used so far, as far as they are known. */
      usage?: ChatUsage;
      cause?: unknown;
    },
  ) {
    super(message);
    if (details.cause !== undefined) this.cause = details.cause;
  }
  get retryable(): boolean {
    return this.details.retryable;
  }
}

/** Reads a whole completion: the text and how it ended. */
export async function complete(
  model: ChatCompletions,
  req: ChatRequest,
): Promise<{ text: string; end: ChatEnd }> {
  let text = "";
  for await (const chunk of model.stream(req)) {
    if (chunk.type === "delta") text += chunk.text;
    else return { text, end: chunk };
  }
  throw new LlmError("llm.invalid_response", "the model's stream ended without its end", {
    retryable: false,
  });
}
