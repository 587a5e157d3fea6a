/**
 * The embedder port: text in, vectors out, with the token count that is billed.
 * Adapters: `local` (deterministic, offline, no model download) and `openai` (any
 * OpenAI-compatible /v1/embeddings endpoint).
 */
export interface EmbedRequest {
  texts: string[];
  /** Model name; the adapter's default when omitted. */
  model?: string;
  /** The tenant's own provider key, which wins over the operator's. */
  apiKey?: string;
  signal?: AbortSignal;
}

export interface EmbedResult {
  /** One vector per input text, in input order, all of `dimensions` length, L2-normalised. */
  vectors: number[][];
  dimensions: number;
  model: string;
  /** Tokens billed: the provider's reported usage, else counted with a real tokenizer. */
  tokens: number;
}

export interface Embedder {
  readonly provider: "local" | "openai";
  readonly defaultModel: string;
  /**
   * Embeds the texts, in batches as the provider allows. Retries 429 and 5xx answers with
   * backoff, honouring Retry-After; other failures reject with an EmbeddingError.
   */
  embed(req: EmbedRequest): Promise<EmbedResult>;
}

export class EmbeddingError extends Error {
  override name = "EmbeddingError";
  constructor(
    message: string,
    /** False for failures that retrying cannot fix (bad key, unknown model, input too long). */
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
  }
}
