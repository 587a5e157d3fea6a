import { createHash } from "node:crypto";

/** How the bytes are to be read: the parsers tenantrag has. */
export type ContentFormat = "pdf" | "txt" | "html" | "md";

/**
 * Content known at request time (text, upload) with its format, or a URL the worker will
 * fetch and whose format its Content-Type tells. The format is separate from the document's
 * type, which is a category (e.g. `faq` for knowledge items written as Markdown).
 */
export type ContentInput =
  | { kind: "bytes"; bytes: Buffer; format: ContentFormat }
  | { kind: "url"; url: string };

export function contentHash(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Where a version's bytes are kept in the blob store. */
export function blobKeyFor(tenantId: string, documentId: string, version: number): string {
  return `${tenantId}/documents/${documentId}/v${version}`;
}

/** The MIME type a blob of this format is stored with. */
export function contentTypeOf(format: ContentFormat): string {
  switch (format) {
    case "pdf":
      return "application/pdf";
    case "html":
      return "text/html; charset=utf-8";
    case "md":
      return "text/markdown; charset=utf-8";
    default:
      return "text/plain; charset=utf-8";
  }
}
