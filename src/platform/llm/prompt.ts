import type { ChatModelRequest } from "./chat-model.js";

/**
 * The prompt as one text: the tenant's instructions, the numbered passages, the conversation
 * so far and the question. An LLM adapter sends these pieces as messages; the extractive model
 * bills its input as the tokens of this text, so both count what the model was given.
 */
export function renderPrompt(
  req: Pick<ChatModelRequest, "systemPrompt" | "passages" | "history" | "question">,
): string {
  const parts = [req.systemPrompt];
  if (req.passages.length > 0) {
    parts.push("Context:", ...req.passages.map((p) => `[${p.id}] ${p.title}\n${p.text}`));
  }
  for (const m of req.history) parts.push(`${m.role}: ${m.content}`);
  parts.push(`user: ${req.question}`);
  return parts.join("\n\n");
}
