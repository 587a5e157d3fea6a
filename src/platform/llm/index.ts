export {
  type ChatChunk,
  type ChatCompletions,
  type ChatEnd,
  type ChatMessage,
  type ChatRequest,
  type ChatUsage,
  complete,
  LlmError,
  type LlmErrorCode,
} from "./chat.js";
export {
  type ChatModel,
  type ChatModelEvent,
  type ChatModelRequest,
  type ChatModelResult,
  generateAll,
  type HistoryMessage,
  type Passage,
  type TokenUsage,
} from "./chat-model.js";
export { createExtractiveModel, type ExtractiveOptions, NOTHING_RELEVANT } from "./extractive.js";
export { countedUsage, createOpenAIChat, type OpenAIChatOptions } from "./openai.js";
export { renderPrompt } from "./prompt.js";
export { contentTerms, coverage, normalizeTerm } from "./terms.js";
