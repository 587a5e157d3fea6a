import { createHash } from "node:crypto";
import type { AuditEntry } from "../audit/index.js";
import { changedKeys, type IngestResult } from "../ingestion/index.js";
import type { KnowledgeFields, KnowledgeType } from "./knowledge.schemas.js";

/** Each type's body: recorded as its SHA-256 and length, never the text (it may be 50 000 chars). */
const BODY_FIELD: Record<KnowledgeType, string> = {
  faq: "answer",
  menu_item: "description",
  policy: "content",
};

/** The item's fields as its audit row shows them: every field, the body as hash and length. */
function auditedFields(type: KnowledgeType, fields: KnowledgeFields): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fields };
  const body = BODY_FIELD[type];
  const text = out[body];
  if (typeof text === "string") {
    out[body] = { sha256: createHash("sha256").update(text).digest("hex"), chars: text.length };
  }
  return out;
}

const entry = (action: "create" | "update" | "delete", id: string) =>
  ({
    eventType: `knowledge_item.${action}`,
    entityType: "knowledge_item",
    entityId: id,
    action,
  }) as const;

/** The version of the item's document the write submitted (or found unchanged). */
const documentOf = (ingest: IngestResult) => ({
  documentId: ingest.documentId,
  documentVersion: ingest.version,
  ingestStatus: ingest.status,
});

export const knowledgeAudit = {
  created(type: KnowledgeType, id: string, fields: KnowledgeFields, ingest: IngestResult) {
    return {
      ...entry("create", id),
      oldValues: null,
      newValues: { type, ...auditedFields(type, fields), ...documentOf(ingest) },
    } satisfies AuditEntry;
  },

  /** Undefined when the update changed nothing (same fields, and a duplicate rendering). */
  updated(
    type: KnowledgeType,
    id: string,
    before: KnowledgeFields,
    after: KnowledgeFields,
    ingest: IngestResult,
  ): AuditEntry | undefined {
    const diff = changedKeys(auditedFields(type, before), auditedFields(type, after));
    if (Object.keys(diff.new).length === 0 && ingest.status === "duplicate") return undefined;
    return {
      ...entry("update", id),
      oldValues: { type, ...diff.old },
      newValues: { type, ...diff.new, ...documentOf(ingest) },
    };
  },

  deleted(type: KnowledgeType, id: string, fields: KnowledgeFields, documentId: string | null) {
    return {
      ...entry("delete", id),
      oldValues: { type, ...auditedFields(type, fields), documentId },
      newValues: null,
    } satisfies AuditEntry;
  },
};
