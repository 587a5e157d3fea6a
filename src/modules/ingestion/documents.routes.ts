import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantContext } from "../../http/auth-hook.js";
import { idParams, noContent } from "../../http/schemas.js";
import {
  documentPageSchema,
  documentProcessingSchema,
  documentSchema,
  documentStatusSchema,
  versionSchema,
} from "./documents.schemas.js";
import type { DocumentsService } from "./documents.service.js";
import { contentUpdateSchema, ingestResultSchema } from "./ingestion.schemas.js";
import type { IngestionService } from "./ingestion.service.js";

export const documentsRoutes: FastifyPluginAsyncZod<{
  documents: DocumentsService;
  ingestion: IngestionService;
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
          status: documentStatusSchema.optional(),
          docType: z.string().max(50).optional(),
        }),
        response: { 200: documentPageSchema },
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
        response: { 200: documentProcessingSchema },
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
        body: contentUpdateSchema,
        response: { 202: ingestResultSchema },
      },
    },
    async (req, reply) =>
      reply
        .status(202)
        .send(await ingestion.replaceContent(tenantContext(req), req.params.id, req.body)),
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
