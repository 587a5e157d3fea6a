/** The error codes the chat module raises; their HTTP statuses are in `src/http/errors.ts`. */
export type ChatErrorCode =
  /** A message longer than CHAT_MAX_MESSAGE_CHARS (details: limit, length). */
  | "chat.message_too_long"
  /** The model failed before its answer was complete: nothing of the turn was saved or billed. */
  | "chat.model_failed";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<ChatErrorCode, true> {}
}
