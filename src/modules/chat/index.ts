/**
 * The chat module: the conversation service (one owner of a turn: retrieval, the model,
 * persistence, metering, events and audit in one transaction), the sessions' history and
 * deletion, the assistant's settings. The only file other modules and the root import.
 */

export { chatRoutes } from "./chat.routes.js";
export {
  type ChatAnswer,
  type ChatInput,
  type Citation,
  chatResponse,
  citationSchema,
  type SessionDetail,
  type SessionView,
} from "./chat.schemas.js";
export { type ChatDeps, type ChatService, createChatService } from "./chat.service.js";
export { confidenceOf } from "./confidence.js";
export { chatId, tenantNamespace, uuidV5 } from "./ids.js";
