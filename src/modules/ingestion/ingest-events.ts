import type { EventInput } from "../events/index.js";

/** How a version's content came in, as the events feed records it (`sourceType`). */
export type IngestSourceType =
  | "text"
  | "batch"
  | "url"
  | "file"
  | "upload"
  | "content_update"
  | "knowledge";

/** The URL as an event holds it (the taxonomy's limit); null for content sent as such. */
export const eventUrl = (url: string | null | undefined) => (url ? url.slice(0, 2048) : null);

/**
 * The events of an accepted submission, written in the transaction that accepts it (the same
 * one as its audit row): `ingest_started`, and the document's `document_created` or
 * `document_updated` (none for a knowledge item's document: the item's own event says it).
 */
export function submissionEvents(s: {
  documentId: string;
  docType: string;
  version: number;
  created: boolean;
  sourceType: IngestSourceType;
  url: string | null | undefined;
}): EventInput[] {
  const out: EventInput[] = [
    {
      name: "ingest_started",
      data: {
        sourceType: s.sourceType,
        url: eventUrl(s.url),
        documentId: s.documentId,
        version: s.version,
      },
    },
  ];
  if (s.sourceType === "knowledge") return out;
  out.push(
    s.created
      ? {
          name: "document_created",
          data: { documentId: s.documentId, docType: s.docType, sourceType: s.sourceType },
        }
      : {
          name: "document_updated",
          data: { documentId: s.documentId, version: s.version, sourceType: s.sourceType },
        },
  );
  return out;
}
