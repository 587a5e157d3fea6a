import { AppError } from "../../errors.js";

/**
 * The prefix of the externalIds of the documents behind knowledge items (FAQs, menu items,
 * policies). Such a document is written only through the knowledge service, which keeps the
 * item's fields and its document in step; the generic routes answer 409 for it.
 */
export const KNOWLEDGE_PREFIX = "knowledge:";

export function isKnowledgeDocument(externalId: string | null | undefined): boolean {
  return externalId?.startsWith(KNOWLEDGE_PREFIX) ?? false;
}

export function managedByKnowledge(): AppError {
  return new AppError(
    "document.managed_by_knowledge",
    "this document belongs to a knowledge item: change or delete it through /api/knowledge (faqs, menu-items, policies)",
  );
}

/** The knowledge item behind a document, from its externalId (`knowledge:<item id>`). */
export function knowledgeItemIdOf(externalId: string | null | undefined): string | undefined {
  return isKnowledgeDocument(externalId)
    ? (externalId as string).slice(KNOWLEDGE_PREFIX.length)
    : undefined;
}
