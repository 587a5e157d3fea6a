/**
 * The chat model port: what answers a question from retrieved passages. Adapters: `extractive`
 * (offline, deterministic, no LLM; extractive.ts) and, later, any OpenAI-compatible endpoint.
 * Domain code (modules/chat) knows only this interface; the composition root picks the adapter.
 */

/** One retrieved passage the model may cite, as `[id]` in its answer. Ids are 1, 2, … in rank order. */
export interface Passage {
  id: number;
  title: string;
  text: string;
}

/** An earlier message of the conversation, oldest first. `agent` is a person who answered. */
export interface HistoryMessage {
  role: "user" | "assistant" | "agent";
  content: string;
}

export interface ChatModelRequest {
  question: string;
  /** Ranked, best first; empty when retrieval found nothing. */
  passages: readonly Passage[];
  /** Already trimmed to the tenant's token budget by the caller. */
  history: readonly HistoryMessage[];
  /** The tenant's instructions (its system prompt), or the default. */
  systemPrompt: string;
  /** Aborted when the caller no longer wants the answer (a timeout). */
  signal?: AbortSignal;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

/** What a finished generation reports. */
export interface ChatModelResult {
  /** The whole answer: the concatenation of every delta, in order. */
  text: string;
  /** The passage ids the answer cites, in order of first citation, each once. */
  citations: number[];
  /** From the provider's report, or counted with the real tokenizer; never estimated. */
  usage: TokenUsage;
  provider: string;
  model: string;
  /** True when the model found nothing in the passages that answers the question. */
  noAnswer: boolean;
  /**
   * The model's own signal of how well the passages answer the question, 0…1 (the extractive
   * model: the share of the question's terms its chosen sentences cover). Feeds confidence.
   */
  support: number;
}

export type ChatModelEvent =
  | { type: "delta"; text: string }
  | { type: "done"; result: ChatModelResult };

export interface ChatModel {
  readonly provider: string;
  readonly model: string;
  /**
   * Generates one answer. Yields `delta` events (pieces of the answer, in order) and then
   * exactly one `done`, last. A failure throws from the iterator, before or after deltas; the
   * caller decides what a partial answer becomes. Calling `return()` on the iterator (the
   * caller stopped listening) ends the generation.
   */
  generate(req: ChatModelRequest): AsyncIterable<ChatModelEvent>;
}

/** Runs a generation to its end and answers its result (for callers that do not stream). */
export async function generateAll(
  model: ChatModel,
  req: ChatModelRequest,
  onDelta?: (text: string) => void,
): Promise<ChatModelResult> {
  let result: ChatModelResult | undefined;
  for await (const event of model.generate(req)) {
    if (event.type === "delta") onDelta?.(event.text);
    else result = event.result;
  }
  if (!result)
    throw new Error(`chat model ${model.provider}/${model.model} ended without a result`);
  return result;
}
