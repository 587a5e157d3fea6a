import { type AuditEntry, canonicalJson } from "../audit/index.js";
import type { ContentInput } from "./content.js";
import type { DocumentRow } from "./documents.store.js";

/**
 * The audit rows of the documents module (README, "Audit log"). Values hold what an
 * auditor compares — titles, types, source URLs, metadata (on an update, the keys that changed),
 * version numbers — and the content as its SHA-256 and byte size, never the text itself.
 */

/** The way a submission came in, kept on its audit row. */
export type SubmissionSource = "text" | "batch" | "url" | "file" | "upload" | "content_update";

/**
 * Of two maps, the keys whose values differ (compared as canonical JSON, so that a value read
 * back from jsonb, keys reordered, equals the one written), each side's value (null: absent).
 */
export function changedKeys(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
): { old: Record<string, unknown>; new: Record<string, unknown> } {
  const out = { old: {} as Record<string, unknown>, new: {} as Record<string, unknown> };
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (same(before[k], after[k])) continue;
    out.old[k] = before[k] ?? null;
    out.new[k] = after[k] ?? null;
  }
  return out;
}

const same = (a: unknown, b: unknown) =>
  (a === undefined) === (b === undefined) &&
  (a === undefined || canonicalJson(a as never) === canonicalJson(b as never));

const size = (c: ContentInput) => (c.kind === "bytes" ? c.bytes.length : null);

/**
 * The row of an accepted submission: `document.create` for a new document (its first version),
 * `document.update` for a new version of an existing one, with the fields the submission
 * changed (title, source URL, metadata keys) and the version's content hash and size.
 */
export function submissionEntry(s: {
  doc: DocumentRow;
  created: boolean;
  input: {
    title: string;
    sourceUrl?: string | null | undefined;
    metadata?: Record<string, string>;
  };
  version: number;
  hash: string | null;
  content: ContentInput;
  source: SubmissionSource;
  uploadId?: string | undefined;
}): AuditEntry {
  const { doc } = s;
  const content = {
    version: s.version,
    contentHash: s.hash,
    sizeBytes: size(s.content),
    source: s.source,
    ...(s.uploadId ? { uploadId: s.uploadId } : {}),
  };
  if (s.created) {
    return {
      eventType: "document.create",
      entityType: "document",
      entityId: doc.id,
      action: "create",
      oldValues: null,
      newValues: {
        title: doc.title,
        docType: doc.doc_type,
        sourceUrl: doc.source_url,
        externalId: doc.external_id,
        metadata: doc.metadata,
        ...content,
      },
    };
  }
  const fields = changedKeys(
    { title: doc.title, sourceUrl: doc.source_url },
    {
      title: s.input.title,
      sourceUrl: s.input.sourceUrl === undefined ? doc.source_url : s.input.sourceUrl,
    },
  );
  const metadata = changedKeys(doc.metadata, s.input.metadata ?? doc.metadata);
  const metadataChanged = Object.keys(metadata.new).length > 0;
  return {
    eventType: "document.update",
    entityType: "document",
    entityId: doc.id,
    action: "update",
    oldValues: {
      ...fields.old,
      ...(metadataChanged ? { metadata: metadata.old } : {}),
      latestVersion: doc.latest_version,
      activeVersion: doc.active_version,
      contentHash: doc.content_hash,
      sizeBytes: doc.file_size_bytes,
    },
    newValues: {
      ...fields.new,
      ...(metadataChanged ? { metadata: metadata.new } : {}),
      ...content,
    },
  };
}

/** The row of a deleted document: what it was (no content). */
export function deletionEntry(doc: DocumentRow): AuditEntry {
  return {
    eventType: "document.delete",
    entityType: "document",
    entityId: doc.id,
    action: "delete",
    oldValues: {
      title: doc.title,
      docType: doc.doc_type,
      sourceUrl: doc.source_url,
      externalId: doc.external_id,
      metadata: doc.metadata,
      activeVersion: doc.active_version,
      latestVersion: doc.latest_version,
      contentHash: doc.content_hash,
      sizeBytes: doc.file_size_bytes,
      chunkCount: doc.chunk_count,
    },
    newValues: null,
  };
}

/**
 * The row of a version made active by the processing job, acting as the system for whoever
 * submitted it (the job's cause): what search serves from now on.
 */
export function activationEntry(a: {
  doc: DocumentRow;
  version: number;
  contentHash: string;
  sizeBytes: number;
  chunkCount: number;
  embeddingTokens: number;
}): AuditEntry {
  return {
    eventType: "document.activate",
    entityType: "document",
    entityId: a.doc.id,
    action: "update",
    oldValues: { activeVersion: a.doc.active_version, contentHash: a.doc.content_hash },
    newValues: {
      activeVersion: a.version,
      contentHash: a.contentHash,
      sizeBytes: a.sizeBytes,
      chunkCount: a.chunkCount,
      embeddingTokens: a.embeddingTokens,
    },
  };
}
