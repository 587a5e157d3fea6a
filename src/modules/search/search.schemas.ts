import { z } from "zod";
import { metadataSchema } from "../ingestion/index.js";

export const searchBody = z.strictObject({
  query: z.string().trim().min(1).max(2000),
  mode: z.enum(["vector", "text", "hybrid"]).default("hybrid"),
  limit: z.number().int().min(1).max(50).default(10),
  filters: z
    .strictObject({
      documentIds: z.array(z.uuid()).max(100).optional(),
      docTypes: z.array(z.string().min(1).max(50)).max(20).optional(),
      metadata: metadataSchema.optional(),
    })
    .optional(),
});

/** One ranked chunk of an active document version. */
export const searchResultSchema = z.object({
  text: z.string(),
  score: z.number(),
  documentId: z.uuid(),
  title: z.string(),
  version: z.number().int(),
  chunkIndex: z.number().int(),
  docType: z.string(),
  metadata: z.record(z.string(), z.string()),
});

export type SearchResult = z.infer<typeof searchResultSchema>;

export const searchResponse = z.object({ results: z.array(searchResultSchema) });
