import type { FastifyReply } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { platformContext, tenantContext } from "../../http/auth-hook.js";
import { idParams } from "../../http/schemas.js";
import { sendDownload } from "../../http/stream.js";
import type { ExportFormat, Exports } from "./export.js";
import {
  adminCustomerUsageResponse,
  costsQuery,
  costsResponse,
  customerUsageResponse,
  documentsMetricsResponse,
  exportQuery,
  globalQuery,
  globalResponse,
  overviewResponse,
  reportQuery,
  reportResponse,
  tokensQuery,
  tokensResponse,
  usageQuery,
  usageSeries,
} from "./metrics.schemas.js";
import type { Reports } from "./reports.js";

const DAY = 86_400_000;

/**
 * Usage metrics, reports and exports (seed 004's /api/metrics/*, seed 001's report) for a
 * tenant's members and up, and the platform admins' views across tenants. API keys need the
 * `read` scope: these are reads, and a reporting integration should not need an admin key.
 */
export const metricsRoutes: FastifyPluginAsyncZod<{ reports: Reports; exports: Exports }> = async (
  app,
  { reports, exports },
) => {
  const tenant = { minRole: "member" as const, scope: "read" as const };
  const tags = ["metrics"];

  app.get(
    "/api/metrics/overview",
    {
      config: tenant,
      schema: {
        tags,
        summary: "Dashboard figures: the last 24 hours, the month to date, documents",
        response: { 200: overviewResponse },
      },
    },
    async (req) => reports.overview(tenantContext(req)),
  );

  app.get(
    "/api/metrics/usage",
    {
      config: tenant,
      schema: {
        tags,
        summary: "Usage over time: one roll-up row per hour, day or month (UTC) in [from, to)",
        querystring: usageQuery,
        response: { 200: usageSeries },
      },
    },
    async (req) => reports.series(tenantContext(req).tenantId, req.query),
  );

  app.get(
    "/api/metrics/documents",
    {
      config: tenant,
      schema: {
        tags,
        summary: "Document statistics: by status and type, size, tokens, ingested in 30 days",
        response: { 200: documentsMetricsResponse },
      },
    },
    async (req) => reports.documents(tenantContext(req)),
  );

  app.get(
    "/api/metrics/tokens",
    {
      config: tenant,
      schema: {
        tags,
        summary:
          "Embedding tokens per document in [from, to) (default the last 30 days), most first",
        querystring: tokensQuery,
        response: { 200: tokensResponse },
      },
    },
    async (req) => reports.tokens(tenantContext(req), req.query),
  );

  app.get(
    "/api/metrics/costs",
    {
      config: tenant,
      schema: {
        tags,
        summary: "Costs by period, metric and payer (exact decimals)",
        querystring: costsQuery,
        response: { 200: costsResponse },
      },
    },
    async (req) => reports.costs(tenantContext(req), req.query),
  );

  app.get(
    "/api/metrics/report",
    {
      config: tenant,
      schema: {
        tags,
        summary: "Usage report: the last day, week or month against the one before, top documents",
        querystring: reportQuery,
        response: { 200: reportResponse },
      },
    },
    async (req) => reports.report(tenantContext(req), req.query.period),
  );

  app.get(
    "/api/metrics/export",
    {
      config: tenant,
      schema: {
        tags,
        summary:
          "Export billable events (kind=events) or roll-ups (kind=usage) as CSV (RFC 4180) or JSON Lines, streamed",
        description:
          "The format is `format`, else `Accept: application/x-ndjson` for JSON Lines, else CSV. Events default to the last 30 days.",
        querystring: exportQuery,
        response: {
          200: {
            description: "The rows, streamed",
            content: {
              "text/csv": { schema: z.string() },
              "application/x-ndjson": { schema: z.string() },
            },
          },
        },
      },
    },
    async (req, reply) => {
      const ctx = tenantContext(req);
      const q = req.query;
      const accept = String(req.headers.accept ?? "");
      const format: ExportFormat =
        q.format ??
        (accept.includes("application/x-ndjson") && !accept.includes("text/csv") ? "jsonl" : "csv");
      let from: Date;
      let to: Date;
      if (q.kind === "events") {
        to = q.to ?? (q.from ? new Date(q.from.getTime() + 30 * DAY) : new Date());
        from = q.from ?? new Date(to.getTime() - 30 * DAY);
      } else {
        ({ from, to } = reports.windowOf(q));
      }
      await exports.recordExport(ctx, {
        kind: q.kind,
        format,
        from,
        to,
        ...(q.kind === "usage" ? { period: q.period } : {}),
      });
      const body =
        q.kind === "events"
          ? exports.events(ctx, from, to, format)
          : exports.usage(ctx, q.period, from, to, format);
      const name = `usage-${q.kind}-${from.toISOString().slice(0, 10)}-${to.toISOString().slice(0, 10)}`;
      // The documented body is text; the type provider types send() as string, but Fastify
      // streams a Readable as is (the plain reply type takes any payload). Nothing is sent
      // before the first page is read: a failed first read is an ordinary error answer.
      return sendDownload(
        reply as FastifyReply,
        format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson; charset=utf-8",
        `${name}.${format === "csv" ? "csv" : "jsonl"}`,
        body,
      );
    },
  );

  app.get(
    "/api/customers/usage",
    {
      config: tenant,
      schema: {
        tags,
        summary: "The tenant's usage this month and today",
        response: { 200: customerUsageResponse },
      },
    },
    async (req) => reports.customerUsage(tenantContext(req)),
  );

  const admin = { auth: "platform_admin" as const };

  app.get(
    "/api/admin/metrics/global",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary:
          "Usage across the platform this month: per customer, top token users, system stats",
        querystring: globalQuery,
        response: { 200: globalResponse },
      },
    },
    async (req) => reports.global(platformContext(req), req.query),
  );

  app.get(
    "/api/admin/customers/:id/usage",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "One tenant's usage over time, with totals",
        params: idParams,
        querystring: usageQuery,
        response: { 200: adminCustomerUsageResponse },
      },
    },
    async (req) => reports.adminCustomerUsage(platformContext(req), req.params.id, req.query),
  );
};
