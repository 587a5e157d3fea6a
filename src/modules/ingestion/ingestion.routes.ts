import multipart from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { AppError } from "../../errors.js";
import { tenantContext } from "../../http/auth-hook.js";
import { checkUrlTarget, FetchError } from "../../platform/fetch/safe-fetch.js";
import type { TenantContext } from "../../tenancy.js";
import type { TenantsService } from "../tenants/index.js";
import { assertAllowedType } from "./doc-types.js";
import { createFileIngestion, FILE_FIELD_BYTES, FILE_FIELDS } from "./file-ingest.js";
import type { WithIdempotency } from "./idempotency.js";
import {
  batchResultSchema,
  batchSchema,
  documentItemSchema,
  fileUploadForm,
  ingestResultSchema,
  urlItemSchema,
  webhookSchema,
} from "./ingestion.schemas.js";
import type { IngestionService, IngestResult } from "./ingestion.service.js";
import { readMultipart } from "./multipart.js";

export interface IngestionRouteDeps {
  ingestion: IngestionService;
  tenants: TenantsService;
  withIdempotency: WithIdempotency;
  /** Largest JSON body of an ingestion route (a document's text travels in it). */
  bodyLimitBytes: number;
  allowPrivateUrls: boolean;
}

const idempotencyHeaders = z.object({ "idempotency-key": z.string().optional() }).loose();

/** POST /api/ingest/*: every route answers 202 once the work is queued, or with a duplicate. */
export const ingestionRoutes: FastifyPluginAsyncZod<IngestionRouteDeps> = async (app, deps) => {
  const { ingestion, tenants, withIdempotency } = deps;
  // Limits are set per request (readMultipart): the file limit is the tenant's.
  await app.register(multipart, { throwFileSizeLimit: true });
  const files = createFileIngestion({ ingestion, tenants });

  async function ingestItem(
    ctx: TenantContext,
    item: z.infer<typeof documentItemSchema>,
  ): Promise<IngestResult> {
    const config = await tenants.getConfig(ctx);
    assertAllowedType(config.allowedDocumentTypes, item.docType);
    return ingestion.submit(
      ctx,
      {
        title: item.title,
        docType: item.docType,
        sourceUrl: item.sourceUrl,
        externalId: item.externalId,
        metadata: item.metadata,
      },
      { kind: "bytes", bytes: Buffer.from(item.content, "utf8"), format: item.docType },
    );
  }

  async function ingestUrl(
    ctx: TenantContext,
    item: z.infer<typeof urlItemSchema>,
  ): Promise<IngestResult> {
    const config = await tenants.getConfig(ctx);
    assertAllowedType(config.allowedDocumentTypes, "html");
    // Refused targets get a clear 4xx now; the worker checks again when it fetches (DNS can change).
    try {
      await checkUrlTarget(item.url, { allowPrivate: deps.allowPrivateUrls });
    } catch (err) {
      if (!(err instanceof FetchError)) throw err;
      throw new AppError(
        err.code === "ingestion.url_forbidden"
          ? "ingestion.url_forbidden"
          : "ingestion.url_unreachable",
        err.message,
      );
    }
    return ingestion.submit(
      ctx,
      {
        title: item.title ?? item.url,
        docType: "html",
        sourceUrl: item.url,
        externalId: item.externalId,
        metadata: item.metadata,
      },
      { kind: "url", url: item.url },
    );
  }

  async function ingestBatch(ctx: TenantContext, items: unknown[]) {
    const results: z.infer<typeof batchResultSchema>["results"] = [];
    for (const [index, raw] of items.entries()) {
      const parsed = documentItemSchema.safeParse(raw);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        results.push({
          index,
          ok: false,
          error: {
            code: "validation.failed",
            message: `${issue?.path.join(".") || "item"}: ${issue?.message ?? "invalid"}`,
          },
        });
        continue;
      }
      try {
        results.push({ index, ok: true, result: await ingestItem(ctx, parsed.data) });
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        results.push({ index, ok: false, error: { code: err.code, message: err.message } });
      }
    }
    const accepted = results.filter((r) => r.ok).length;
    return { results, accepted, rejected: results.length - accepted };
  }

  /** Runs `fn` under the request's Idempotency-Key and sends what it (or the first run) answered. */
  function idempotent(
    route: string,
    fn: (ctx: TenantContext, req: FastifyRequest) => Promise<{ status: number; body: unknown }>,
  ) {
    return async (req: FastifyRequest, reply: import("fastify").FastifyReply) => {
      const ctx = tenantContext(req);
      const key = req.headers["idempotency-key"];
      const stored = await withIdempotency(
        ctx,
        typeof key === "string" ? key : undefined,
        route,
        req.body,
        () => fn(ctx, req),
      );
      return reply.status(stored.status).send(stored.body);
    };
  }

  const accepted = (r: IngestResult) => ({ status: 202, body: r });
  const common = { bodyLimit: deps.bodyLimitBytes };

  app.post(
    "/api/ingest/document",
    {
      config: { scope: "ingest" },
      ...common,
      schema: {
        tags: ["ingestion"],
        summary: "Ingest one document given as text (txt, md or html)",
        headers: idempotencyHeaders,
        body: documentItemSchema,
        response: { 202: ingestResultSchema },
      },
    },
    idempotent("document", async (ctx, req) =>
      accepted(await ingestItem(ctx, req.body as z.infer<typeof documentItemSchema>)),
    ),
  );

  app.post(
    "/api/ingest/batch",
    {
      config: { scope: "ingest" },
      ...common,
      schema: {
        tags: ["ingestion"],
        summary: "Ingest many documents; each item succeeds or fails on its own",
        headers: idempotencyHeaders,
        body: batchSchema,
        response: { 202: batchResultSchema },
      },
    },
    idempotent("batch", async (ctx, req) => ({
      status: 202,
      body: await ingestBatch(ctx, (req.body as z.infer<typeof batchSchema>).documents),
    })),
  );

  app.post(
    "/api/ingest/url",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["ingestion"],
        summary: "Fetch a web page or PDF by URL and ingest it",
        headers: idempotencyHeaders,
        body: urlItemSchema,
        response: { 202: ingestResultSchema },
      },
    },
    idempotent("url", async (ctx, req) =>
      accepted(await ingestUrl(ctx, req.body as z.infer<typeof urlItemSchema>)),
    ),
  );

  app.post(
    "/api/ingest/webhook",
    {
      config: { scope: "ingest" },
      ...common,
      schema: {
        tags: ["ingestion"],
        summary: "Generic automation (n8n) payload: a document, a URL, or {documents: […]}",
        headers: idempotencyHeaders,
        body: webhookSchema,
        response: { 202: z.union([ingestResultSchema, batchResultSchema]) },
      },
    },
    idempotent("webhook", async (ctx, req) => {
      const body = req.body as z.infer<typeof webhookSchema>;
      if ("documents" in body) return { status: 202, body: await ingestBatch(ctx, body.documents) };
      if ("url" in body) return accepted(await ingestUrl(ctx, body));
      return accepted(await ingestItem(ctx, body));
    }),
  );

  app.post(
    "/api/ingest/file",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["ingestion"],
        summary:
          "Upload a file (multipart/form-data: fields title, docType, externalId, metadata (JSON); then the file)",
        multipartForm: fileUploadForm,
        response: { 202: ingestResultSchema },
      },
    },
    async (req, reply) => {
      const ctx = tenantContext(req);
      if (!req.isMultipart()) {
        throw new AppError(
          "request.unsupported_media_type",
          "send the file as multipart/form-data",
        );
      }
      const fileBytes = await files.maxFileBytes(ctx);
      // Refuse an announced oversize body before reading any of it; an unannounced one (chunked)
      // is refused by the reader at the first byte over the limit.
      if (Number(req.headers["content-length"] ?? 0) > fileBytes + 64 * 1024) {
        throw new AppError(
          "ingestion.file_too_large",
          `files may be at most ${fileBytes / 1024 / 1024} MB`,
          { maxFileSizeMb: fileBytes / 1024 / 1024 },
        );
      }
      const form = await readMultipart(req, {
        fileBytes,
        fieldNames: FILE_FIELDS,
        fieldBytes: FILE_FIELD_BYTES,
      });
      const result = await files.submit(ctx, form);
      return reply.status(202).send(result);
    },
  );
};
