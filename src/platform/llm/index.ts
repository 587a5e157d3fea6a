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
export { countedUsage, createOpenAIChat, type OpenAIChatOptions } from "./openai.js";
