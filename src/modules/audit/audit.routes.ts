import type { FastifyReply } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { platformContext, tenantContext } from "../../http/auth-hook.js";
import { sendDownload } from "../../http/stream.js";
import {
  adminListQuerySchema,
  adminWindowQuerySchema,
  auditPageSchema,
  listQuerySchema,
  publicKeySchema,
  verifySchema,
  windowQuerySchema,
} from "./audit.schemas.js";
import type { AuditTrail } from "./audit.trail.js";

const jsonLines = {
  200: {
    description:
      "JSON Lines, streamed: a header, the rows (with prev_hash and hash) in seq order, then the signed digests",
    content: { "application/x-ndjson": { schema: z.string() } },
  },
};

/**
 * /api/audit… (a tenant's own chain: owners and admins, and admin-scoped keys; read-only) and
 * /api/admin/audit… (any tenant's chain by `tenantId`, or the platform's: platform admins).
 */
export const auditRoutes: FastifyPluginAsyncZod<{ trail: AuditTrail }> = async (app, { trail }) => {
  const tenantRead = { minRole: "admin", scope: "admin" } as const;
  const stream = (reply: FastifyReply, name: string, lines: AsyncGenerator<string>) =>
    sendDownload(reply, "application/x-ndjson; charset=utf-8", `${name}.jsonl`, lines);

  app.get(
    "/api/audit/public-key",
    {
      config: { auth: "public" },
      schema: {
        tags: ["audit"],
        summary: "The public key that verifies the audit digests' signatures, and its key id",
        response: { 200: publicKeySchema },
      },
    },
    async () => ({
      algorithm: "Ed25519" as const,
      keyId: trail.signingKey.keyId,
      publicKey: trail.signingKey.publicKeyPem,
    }),
  );

  app.get(
    "/api/audit",
    {
      config: tenantRead,
      schema: {
        tags: ["audit"],
        summary: "The tenant's audit trail, newest first (filters, cursor pages)",
        querystring: listQuerySchema,
        response: { 200: auditPageSchema },
      },
    },
    async (req) => trail.list(tenantContext(req).tenantId, req.query),
  );

  app.get(
    "/api/audit/verify",
    {
      config: tenantRead,
      schema: {
        tags: ["audit"],
        summary:
          "Verify the tenant's audit chain (or the rows of [from, to)): hashes, links, seqs, signed digests",
        querystring: windowQuerySchema,
        response: { 200: verifySchema },
      },
    },
    async (req) => trail.verify({ tenantId: tenantContext(req).tenantId, ...req.query }),
  );

  app.get(
    "/api/audit/export",
    {
      config: tenantRead,
      schema: {
        tags: ["audit"],
        summary:
          "Export the tenant's audit chain as JSON Lines for offline verification (itself audited)",
        querystring: windowQuerySchema,
        response: jsonLines,
      },
    },
    async (req, reply) => {
      const ctx = tenantContext(req);
      const lines = await trail.export(ctx, { tenantId: ctx.tenantId, ...req.query });
      return stream(reply as FastifyReply, `audit-${ctx.tenantId}`, lines);
    },
  );

  app.get(
    "/api/admin/audit",
    {
      config: { auth: "platform_admin" },
      schema: {
        tags: ["admin"],
        summary: "A tenant's audit trail (tenantId), or the platform's own without it",
        querystring: adminListQuerySchema,
        response: { 200: auditPageSchema },
      },
    },
    async (req) => {
      platformContext(req);
      const { tenantId, ...q } = req.query;
      return trail.list(tenantId ?? null, q);
    },
  );

  app.get(
    "/api/admin/audit/verify",
    {
      config: { auth: "platform_admin" },
      schema: {
        tags: ["admin"],
        summary: "Verify a tenant's audit chain (tenantId), or the platform's own without it",
        querystring: adminWindowQuerySchema,
        response: { 200: verifySchema },
      },
    },
    async (req) => {
      platformContext(req);
      const { tenantId, ...w } = req.query;
      return trail.verify({ tenantId: tenantId ?? null, ...w });
    },
  );

  app.get(
    "/api/admin/audit/export",
    {
      config: { auth: "platform_admin" },
      schema: {
        tags: ["admin"],
        summary: "Export a tenant's audit chain (tenantId), or the platform's own, as JSON Lines",
        querystring: adminWindowQuerySchema,
        response: jsonLines,
      },
    },
    async (req, reply) => {
      const ctx = platformContext(req);
      const { tenantId, ...w } = req.query;
      const lines = await trail.export(ctx, { tenantId: tenantId ?? null, ...w });
      return stream(reply as FastifyReply, `audit-${tenantId ?? "platform"}`, lines);
    },
  );
};
