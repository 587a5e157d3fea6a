import { randomUUID } from "node:crypto";
import cors from "@fastify/cors";
import helmet from "@fastify/helmet";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RouteOptions } from "fastify";
import {
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { z } from "zod";
import type { AppContext } from "../context.js";
import { AppError } from "../errors.js";
import { adminRoutes } from "../modules/admin/index.js";
import { alertsRoutes } from "../modules/alerts/index.js";
import { auditRoutes } from "../modules/audit/index.js";
import { authRoutes } from "../modules/auth/index.js";
import { chatRoutes } from "../modules/chat/index.js";
import { eventsRoutes } from "../modules/events/index.js";
import { documentsRoutes, ingestionRoutes, uploadsRoutes } from "../modules/ingestion/index.js";
import { knowledgeRoutes } from "../modules/knowledge/index.js";
import { quotaHeadersHook, quotasRoutes } from "../modules/quotas/index.js";
import { searchRoutes } from "../modules/search/index.js";
import { tenantsRoutes } from "../modules/tenants/index.js";
import { metricsRoutes, reconciliationRoutes, usageAdminRoutes } from "../modules/usage/index.js";
import { createAuthHook } from "./auth-hook.js";
import { createClientErrorHandler } from "./client-errors.js";
import { errorHandler } from "./error-handler.js";
import { registerMetricsRoute } from "./metrics-route.js";
import { createNotFoundHandler } from "./not-found.js";
import { openapiOptions } from "./openapi.js";
import { rateLimitRoutes } from "./rate-limit.routes.js";
import { createRateLimitHook } from "./rate-limit-hook.js";
import { registerTelemetryHook } from "./telemetry-hook.js";
import { registerJsonParser, rejectBadTextInUrl } from "./text.js";

const REQUEST_ID_RE = /^[\w.:-]{1,128}$/;

declare module "fastify" {
  interface FastifyInstance {
    /** Every route registered, in order: the tenant-isolation walk reads it. */
    routeTable: RouteOptions[];
  }
}

/**
 * Node's HTTP server limits. `requestTimeout` bounds receiving a whole request, body included,
 * so a client trickling its body is cut off (408) instead of holding a connection forever;
 * headers get at most 10 s of it. Node checks these on an interval (30 s by default), which
 * would let a short timeout run far over: it checks at a quarter of the timeout, at most each
 * second. The idle socket timeout (`connectionTimeout`) stays off: it would also cut a client
 * waiting for a slow answer, which is not the client's fault.
 */
function serverTimeouts(requestTimeoutMs: number) {
  return {
    requestTimeout: requestTimeoutMs,
    http: {
      headersTimeout: Math.min(requestTimeoutMs, 10_000),
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(requestTimeoutMs / 4))),
    },
  };
}

/** Builds the HTTP application over an assembled context. Listening is the caller's business. */
export async function buildApp(ctx: AppContext): Promise<FastifyInstance> {
  const logger = ctx.logger as FastifyBaseLogger;
  const timeouts = serverTimeouts(ctx.config.requestTimeoutMs);
  const clientErrors = createClientErrorHandler(logger);
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: ctx.config.bodyLimitBytes,
    trustProxy: ctx.config.trustProxy,
    requestTimeout: timeouts.requestTimeout,
    // Node would answer a request without Host itself, outside the error shape (and before
    // clientErrorHandler): the onRequest hook below refuses it instead.
    http: { ...timeouts.http, requireHostHeader: false },
    clientErrorHandler: clientErrors.handle,
    // Bad percent-encoding and over-long path parameters are caught by the router before
    // there is a route: they get the same error handler (and shape) as everything else.
    frameworkErrors: (err, req, reply) => {
      reply.header("x-request-id", req.id);
      return errorHandler(err, req, reply);
    },
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID_RE.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<ZodTypeProvider>();

  // Bodies are JSON (and multipart where a route registers it): a text/plain body would reach
  // validation as a string and be answered 400; it is a media type the API does not take (415).
  app.removeContentTypeParser("text/plain");
  registerJsonParser(app);
  app.addHook("preValidation", rejectBadTextInUrl);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(createNotFoundHandler(app));

  app.decorate("routeTable", [] as RouteOptions[]);
  app.addHook("onRoute", (route) => {
    // The OpenAPI pages register their own routes; they are public documentation.
    if (route.url.startsWith("/docs")) route.config = { ...(route.config ?? {}), auth: "public" };
    app.routeTable.push(route as RouteOptions);
  });
  app.decorateRequest("principal", undefined);
  app.decorateRequest("requestMeta", undefined);
  app.decorateRequest("caller", undefined);
  // First of the onRequest hooks: the call's time is taken before anything else runs.
  if (ctx.config.telemetryEnabled) {
    registerTelemetryHook(app, {
      telemetry: ctx.telemetry,
      clock: ctx.clock,
      registry: ctx.metrics.registry,
      drainTimeoutMs: ctx.config.requestTimeoutMs,
    });
  }
  app.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
    clientErrors.track(req.raw, req.id);
    // HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
    if (req.raw.headers.host === undefined && req.raw.httpVersion !== "1.0") {
      throw new AppError("request.malformed", "an HTTP/1.1 request needs a Host header");
    }
  });
  app.addHook("onResponse", async (req) => clientErrors.answeredEarly(req.raw));

  // Security and CORS headers go on before authentication can refuse a request, so that errors
  // carry them too and a CORS preflight (which has no credentials) is answered, not refused.
  await app.register(helmet, { global: true });
  if (ctx.config.corsOrigins.length > 0) {
    await app.register(cors, { origin: ctx.config.corsOrigins, credentials: false });
  }
  app.addHook("onRequest", createAuthHook(ctx.auth, { serviceToken: ctx.config.metricsToken }));
  // After authentication, before the body is read: a refused request costs no parsing.
  if (ctx.rateLimits) app.addHook("onRequest", createRateLimitHook(ctx.rateLimits));
  // X-Quota-* on every response whose request touched a quota (errors included).
  if (ctx.config.quotaHeadersEnabled) app.addHook("onSend", quotaHeadersHook(ctx.quotas));
  await app.register(swagger, openapiOptions);
  await app.register(swaggerUi, { routePrefix: "/docs", staticCSP: true });

  app.get(
    "/healthz",
    {
      config: { auth: "public" },
      schema: {
        tags: ["health"],
        summary: "The process is up",
        response: { 200: z.object({ status: z.literal("ok") }) },
      },
    },
    async () => ({ status: "ok" as const }),
  );
  app.get(
    "/readyz",
    {
      config: { auth: "public" },
      schema: {
        tags: ["health"],
        summary: "The database answers",
        response: { 200: z.object({ status: z.literal("ready"), database: z.literal("ok") }) },
      },
    },
    async () => {
      try {
        await ctx.db.ping();
      } catch (err) {
        throw new AppError("service.unavailable", "database is not reachable", {
          reason: (err as Error).message,
        });
      }
      return { status: "ready" as const, database: "ok" as const };
    },
  );

  registerMetricsRoute(app, { registry: ctx.metrics.registry, jobs: ctx.jobMetrics });

  await app.register(authRoutes, { auth: ctx.auth, tenants: ctx.tenants });
  await app.register(tenantsRoutes, { tenants: ctx.tenants });
  await app.register(adminRoutes, { tenants: ctx.tenants });
  await app.register(usageAdminRoutes, { usage: ctx.usage });
  await app.register(ingestionRoutes, {
    ingestion: ctx.ingestion,
    withIdempotency: ctx.withIdempotency,
    bodyLimitBytes: ctx.config.ingestBodyLimitBytes,
  });
  await app.register(documentsRoutes, {
    documents: ctx.documents,
    ingestion: ctx.ingestion,
    bodyLimitBytes: ctx.config.ingestBodyLimitBytes,
  });
  await app.register(uploadsRoutes, { uploads: ctx.uploads });
  await app.register(searchRoutes, { search: ctx.search });
  await app.register(chatRoutes, { chat: ctx.chat });
  await app.register(knowledgeRoutes, { knowledge: ctx.knowledge });
  await app.register(rateLimitRoutes, { limiter: ctx.rateLimits, clock: ctx.clock });
  await app.register(alertsRoutes, { alerts: ctx.alerts });
  await app.register(auditRoutes, { trail: ctx.auditTrail });
  await app.register(eventsRoutes, { feed: ctx.eventsFeed });
  await app.register(reconciliationRoutes, { reconciliation: ctx.reconciliation });
  await app.register(quotasRoutes, { quotas: ctx.quotas });
  await app.register(metricsRoutes, { reports: ctx.usage.reports, exports: ctx.usage.exports });
  return app;
}
