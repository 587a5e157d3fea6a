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
export { renderPrompt } from "./prompt.js";
export { contentTerms, coverage, normalizeTerm } from "./terms.js";
