import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantContext } from "../../http/auth-hook.js";
import { idParams, plainText } from "../../http/schemas.js";
import { externalIdSchema, ingestResultSchema, uploadTicketSchema } from "./ingestion.schemas.js";
import type { UploadsService } from "./uploads.js";

export interface UploadsRouteDeps {
  uploads: UploadsService;
}

/** A MIME type as a header carries it: type/subtype, optional parameters, printable ASCII. */
const mimeType = z
  .string()
  .trim()
  .max(200)
  .regex(/^[\w.+-]+\/[\w.+-]+( *;[\x20-\x7e]*)?$/, "must be a MIME type such as application/pdf");

const presignQuery = z.strictObject({
  filename: plainText().trim().min(1).max(255),
  size: z.coerce
    .number({ message: "the file's size in bytes is required" })
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER),
  contentType: mimeType.optional(),
  /** pdf, txt, md or html; taken from the file name's extension when omitted. */
  docType: z.string().trim().min(1).max(20).optional(),
  title: plainText().trim().min(1).max(500).optional(),
  externalId: externalIdSchema.optional(),
});

/**
 * Direct uploads (S3-compatible blob storage only): sign a URL, the client PUTs the file to it,
 * then completes the upload, which ingests the file as POST /api/ingest/file would.
 */
export const uploadsRoutes: FastifyPluginAsyncZod<UploadsRouteDeps> = async (app, { uploads }) => {
  app.get(
    "/api/ingest/presigned-url",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["ingestion"],
        summary:
          "Sign a URL to PUT a file to object storage directly; then POST /api/ingest/uploads/:id/complete",
        querystring: presignQuery,
        response: { 200: uploadTicketSchema },
      },
    },
    async (req) => uploads.create(tenantContext(req), req.query),
  );

  app.post(
    "/api/ingest/uploads/:id/complete",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["ingestion"],
        summary: "Ingest a file uploaded through a presigned URL",
        params: idParams,
        response: { 202: ingestResultSchema },
      },
    },
    async (req, reply) =>
      reply.status(202).send(await uploads.complete(tenantContext(req), req.params.id)),
  );
};
