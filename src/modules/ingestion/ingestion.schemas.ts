import { z } from "zod";
import { plainText } from "../../http/schemas.js";
import { DOCUMENT_TYPES } from "../tenants/index.js";

/** Largest text accepted in one JSON document (characters); bigger content goes as a file. */
export const MAX_CONTENT_CHARS = 5_000_000;
/** Items in one batch request. A larger batch is refused whole with a clear error. */
export const MAX_BATCH_ITEMS = 500;

/** Metadata: a flat map of short strings, filterable in search. */
export const metadataSchema = z
  .record(
    z
      .string()
      .min(1)
      .max(64)
      .regex(/^[\w.-]+$/, "keys are letters, digits, _ . -"),
    plainText().max(500),
  )
  .refine((m) => Object.keys(m).length <= 50, "at most 50 keys");

/**
 * The caller's own id for a document, which re-ingestion finds it by. The `knowledge:` prefix
 * names the documents behind knowledge items (FAQs, menu items, policies): a client may not
 * take it, or it would overwrite an item's document.
 */
export const externalIdSchema = plainText()
  .min(1)
  .max(200)
  .refine((v) => !v.startsWith("knowledge:"), "the prefix knowledge: is reserved");

export const documentItemSchema = z.strictObject({
  title: plainText().trim().min(1).max(500),
  content: z
    .string()
    .max(
      MAX_CONTENT_CHARS,
      `at most ${MAX_CONTENT_CHARS} characters; send larger content as a file`,
    )
    .refine((c) => c.trim().length > 0, "must not be empty"),
  // Content sent as a string is text: a PDF comes as a file (or a URL, or a direct upload).
  docType: z
    .enum(["txt", "html", "md"], {
      message: "text content is txt, md or html; send a PDF as a file",
    })
    .default("txt"),
  sourceUrl: z
    .url({ protocol: /^https?$/ })
    .max(2000)
    .optional(),
  externalId: externalIdSchema.optional(),
  metadata: metadataSchema.optional(),
});

export type DocumentItem = z.infer<typeof documentItemSchema>;

export const urlItemSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/, message: "must be an http(s) URL" }).max(2000),
  title: plainText().trim().min(1).max(500).optional(),
  externalId: externalIdSchema.optional(),
  metadata: metadataSchema.optional(),
});

export type UrlItem = z.infer<typeof urlItemSchema>;

/** PUT /api/documents/:id: new content makes a new version; title and metadata may change. */
export const contentUpdateSchema = z.strictObject({
  content: documentItemSchema.shape.content,
  title: documentItemSchema.shape.title.optional(),
  metadata: metadataSchema.optional(),
});

export type ContentUpdate = z.infer<typeof contentUpdateSchema>;

export const batchSchema = z.strictObject({
  // Items are checked one by one, so that one bad item does not sink the rest.
  documents: z
    .array(z.unknown())
    .min(1)
    .max(MAX_BATCH_ITEMS, `at most ${MAX_BATCH_ITEMS} documents per batch`),
});

/** n8n and other automation: a document, a URL, or a batch, in one generic payload. */
export const webhookSchema = z.union([
  z.strictObject({ documents: batchSchema.shape.documents }),
  urlItemSchema,
  documentItemSchema,
]);

/** What every submission answers: the version it made, or the live one it duplicates. */
export const ingestResultSchema = z.object({
  documentId: z.uuid(),
  version: z.number().int(),
  jobId: z.uuid().nullable(),
  status: z.enum(["processing", "duplicate"]),
});

export type IngestResult = z.infer<typeof ingestResultSchema>;
export type IngestStatus = IngestResult["status"];

export const batchResultSchema = z.object({
  results: z.array(
    z.object({
      index: z.number().int(),
      ok: z.boolean(),
      result: ingestResultSchema.optional(),
      error: z.object({ code: z.string(), message: z.string() }).optional(),
    }),
  ),
  accepted: z.number().int(),
  rejected: z.number().int(),
});

export type BatchResult = z.infer<typeof batchResultSchema>;

/** A signed URL for a direct upload, and how to PUT the file to it. */
export const uploadTicketSchema = z.object({
  uploadUrl: z.string(),
  uploadId: z.uuid(),
  method: z.literal("PUT"),
  /** Headers the PUT must carry: the content type is part of the signature. */
  headers: z.object({ "content-type": z.string() }),
  expiresAt: z.iso.datetime(),
});

export type UploadTicket = z.infer<typeof uploadTicketSchema>;

/**
 * The multipart form of POST /api/ingest/file, for the OpenAPI document (and so the API explorer
 * can send a file). The route reads the parts itself, in order, so the fields come first.
 */
export const fileUploadForm = z.object({
  title: z.string().max(500).optional().describe("defaults to the file's name"),
  docType: z.enum(DOCUMENT_TYPES).optional().describe("defaults to the file name's extension"),
  externalId: z.string().min(1).max(200).optional(),
  metadata: z.string().optional().describe("a JSON object of strings"),
  file: z.file().describe("the document (txt, md, html or pdf); the last part"),
});
