import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantContext } from "../../http/auth-hook.js";
import { idParams, noContent } from "../../http/schemas.js";
import {
  documentItemSchema,
  ingestResultSchema,
  metadataSchema,
} from "../ingestion/ingestion.schemas.js";
import type { IngestionService } from "../ingestion/ingestion.service.js";
import type { TenantsService } from "../tenants/index.js";
import type { DocumentsService } from "./documents.service.js";

const errorSchema = z.object({ code: z.string(), message: z.string() }).nullable();

const documentSchema = z.object({
  id: z.uuid(),
  externalId: z.string().nullable(),
  title: z.string(),
  docType: z.string(),
  sourceUrl: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  status: z.enum(["processing", "completed", "failed"]),
  error: errorSchema,
  activeVersion: z.number().int().nullable(),
  latestVersion: z.number().int(),
  contentHash: z.string().nullable(),
  fileSizeBytes: z.number().nullable(),
  pageCount: z.number().int().nullable(),
  chunkCount: z.number().int(),
  characterCount: z.number().int(),
  embeddingTokens: z.number().int(),
  embeddingCostUsd: z.string(),
  processingTimeMs: z.number().int().nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});

const versionSchema = z.object({
  version: z.number().int(),
  status: z.enum(["pending", "processing", "active", "superseded", "duplicate", "failed"]),
  isActive: z.boolean(),
  contentHash: z.string().nullable(),
  chunkCount: z.number().int(),
  characterCount: z.number().int(),
  pageCount: z.number().int().nullable(),
  embeddingTokens: z.number().int(),
  embeddingModel: z.string().nullable(),
  jobId: z.uuid().nullable(),
  error: errorSchema,
  createdAt: z.iso.datetime(),
  activatedAt: z.iso.datetime().nullable(),
});

/** PUT body: new content makes a new version; title and metadata may change with it. */
const updateSchema = z.strictObject({
  content: documentItemSchema.shape.content,
  title: documentItemSchema.shape.title.optional(),
  metadata: metadataSchema.optional(),
});

export const documentsRoutes: FastifyPluginAsyncZod<{
  documents: DocumentsService;
  ingestion: IngestionService;
  tenants: TenantsService;
  bodyLimitBytes: number;
}> = async (app, { documents, ingestion, bodyLimitBytes }) => {
  app.get(
    "/api/documents",
    {
      config: { scope: "read" },
      schema: {
        tags: ["documents"],
        summary: "The tenant's documents, newest first",
        querystring: z.strictObject({
          limit: z.coerce.number().int().min(1).max(200).default(50),
          cursor: z.string().max(200).optional(),
          status: z.enum(["processing", "completed", "failed"]).optional(),
          docType: z.string().max(50).optional(),
        }),
        response: {
          200: z.object({ items: z.array(documentSchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    async (req) => documents.list(tenantContext(req), req.query),
  );

  app.get(
    "/api/documents/:id",
    {
      config: { scope: "read" },
      schema: {
        tags: ["documents"],
        summary: "One document",
        params: idParams,
        response: { 200: documentSchema },
      },
    },
    async (req) => documents.get(tenantContext(req), req.params.id),
  );

  app.get(
    "/api/documents/:id/versions",
    {
      config: { scope: "read" },
      schema: {
        tags: ["documents"],
        summary: "Version history, newest first",
        params: idParams,
        response: { 200: z.object({ items: z.array(versionSchema) }) },
      },
    },
    async (req) => ({ items: await documents.versions(tenantContext(req), req.params.id) }),
  );

  app.get(
    "/api/documents/:id/status",
    {
      config: { scope: "read" },
      schema: {
        tags: ["documents"],
        summary: "Processing state of the latest version and its job",
        params: idParams,
        response: {
          200: z.object({
            documentId: z.uuid(),
            status: z.enum(["processing", "completed", "failed"]),
            activeVersion: z.number().int().nullable(),
            latestVersion: z.number().int(),
            error: errorSchema,
            job: z
              .object({
                id: z.uuid(),
                status: z.enum(["queued", "running", "completed", "failed", "dead"]),
                attempts: z.number().int(),
                maxAttempts: z.number().int(),
                lastError: z.string().nullable(),
              })
              .nullable(),
          }),
        },
      },
    },
    async (req) => documents.status(tenantContext(req), req.params.id),
  );

  app.put(
    "/api/documents/:id",
    {
      config: { scope: "ingest" },
      bodyLimit: bodyLimitBytes,
      schema: {
        tags: ["documents"],
        summary: "New content for the document: a new version (unchanged content is a duplicate)",
        params: idParams,
        body: updateSchema,
        response: { 202: ingestResultSchema },
      },
    },
    async (req, reply) => {
      const ctx = tenantContext(req);
      const doc = await documents.get(ctx, req.params.id);
      const result = await ingestion.submit(
        ctx,
        {
          title: req.body.title ?? doc.title,
          docType: doc.docType,
          metadata: req.body.metadata ?? doc.metadata,
        },
        {
          kind: "bytes",
          bytes: Buffer.from(req.body.content, "utf8"),
          // New content arrives as text: kept in the document's own text format, else plain.
          format: doc.docType === "md" || doc.docType === "html" ? doc.docType : "txt",
        },
        { documentId: doc.id },
      );
      return reply.status(202).send(result);
    },
  );

  app.delete(
    "/api/documents/:id",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["documents"],
        summary: "Delete the document, its versions, chunks and files",
        params: idParams,
        response: { 204: noContent },
      },
    },
    async (req, reply) => {
      await documents.delete(tenantContext(req), req.params.id);
      return reply.status(204).send();
    },
  );
};
