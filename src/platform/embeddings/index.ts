export type { Embedder, EmbedRequest, EmbedResult } from "./embedder.js";
export { EmbeddingError } from "./embedder.js";
export { createLocalEmbedder, type LocalEmbedderOptions } from "./local.js";
export { createOpenAIEmbedder, type OpenAIEmbedderOptions } from "./openai.js";
export { withQueryCache } from "./query-cache.js";
export { countTokens, countTokensBatch, encodingForModel, type TokenEncoding } from "./tokens.js";
