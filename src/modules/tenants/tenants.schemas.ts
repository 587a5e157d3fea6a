import { z } from "zod";
import { plainText } from "../../http/schemas.js";

export const DOCUMENT_TYPES = ["pdf", "txt", "html", "md"] as const;
export const CHUNK_STRATEGIES = ["fixed", "paragraph", "recursive"] as const;
export const EMBEDDING_PROVIDERS = ["local", "openai"] as const;
/** How hybrid search fuses its two lists (modules/search/fusion.ts). */
export const SEARCH_FUSIONS = ["rrf", "weighted"] as const;

export const companyName = plainText().trim().min(1).max(200);

export const tenantSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  status: z.enum(["active", "suspended", "deleted"]),
  plan: z.string(),
  trialEndsAt: z.iso.datetime().nullable(),
  createdAt: z.iso.datetime(),
});

export const profileUpdateSchema = z.strictObject({ companyName });

export const configUpdateSchema = z
  .strictObject({
    rateLimitPerMinute: z.number().int().min(1).max(1_000_000),
    rateLimitPerDay: z.number().int().min(1).max(100_000_000),
    maxDocuments: z.number().int().min(1).max(100_000_000),
    maxFileSizeMb: z.number().int().min(1).max(1024),
    allowedDocumentTypes: z
      .array(z.enum(DOCUMENT_TYPES))
      .min(1)
      .refine((a) => new Set(a).size === a.length, "must not repeat a type"),
    chunkSize: z.number().int().min(100).max(8000),
    chunkOverlap: z.number().int().min(0).max(4000),
    chunkStrategy: z.enum(CHUNK_STRATEGIES),
    embeddingProvider: z.enum(EMBEDDING_PROVIDERS),
    embeddingModel: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[\w.:/-]+$/, "letters, digits and . : / - _ only")
      .nullable(),
    /** The tenant's own provider key; null removes it. */
    providerApiKey: z.string().trim().min(8).max(500).nullable(),
    /** Hybrid search: fusion by rank or by normalised score; null: the embedder's default. */
    searchFusion: z.enum(SEARCH_FUSIONS).nullable(),
    /** Hybrid search: the full-text list's weight (vector's is the rest); null: the default. */
    searchTextWeight: z.number().min(0).max(1).nullable(),
  })
  .partial()
  .refine((v) => Object.keys(v).length > 0, "name at least one setting to change");

export type ConfigUpdate = z.infer<typeof configUpdateSchema>;

const limitsSchema = z.object({
  rateLimitPerMinute: z.number(),
  rateLimitPerDay: z.number(),
  maxDocuments: z.number(),
  maxFileSizeMb: z.number(),
});

export const configSchema = z.object({
  rateLimitPerMinute: z.number(),
  rateLimitPerDay: z.number(),
  maxDocuments: z.number(),
  maxFileSizeMb: z.number(),
  allowedDocumentTypes: z.array(z.string()),
  chunkSize: z.number(),
  chunkOverlap: z.number(),
  chunkStrategy: z.enum(CHUNK_STRATEGIES),
  embeddingProvider: z.enum(EMBEDDING_PROVIDERS),
  embeddingModel: z.string().nullable(),
  providerApiKey: z.object({ set: z.boolean(), last4: z.string().nullable() }),
  /** As set; null means the default for the embedder (README, "Search settings"). */
  // A string, not a nullable enum: OpenAPI 3.0's `nullable` does not admit null into an `enum`.
  searchFusion: z.string().nullable().describe("rrf | weighted; null: the embedder's default"),
  searchTextWeight: z.number().nullable(),
  /** The plan's ceilings: a tenant may lower its limits, never raise them past these. */
  planLimits: limitsSchema,
  updatedAt: z.iso.datetime(),
});

export type TenantConfig = z.infer<typeof configSchema>;
