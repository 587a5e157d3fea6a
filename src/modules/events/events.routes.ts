import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { z } from "zod";
import { platformContext, tenantContext } from "../../http/auth-hook.js";
import type { EventsFeed } from "./analytics.js";
import {
  adminConversationsQuerySchema,
  adminDaysQuerySchema,
  adminListQuerySchema,
  conversationsQuerySchema,
  conversationsSchema,
  daysQuerySchema,
  escalationRateSchema,
  eventsPageSchema,
  ingestionSchema,
  listQuerySchema,
  planFunnelSchema,
  quotaFrictionSchema,
} from "./events.schemas.js";

/**
 * /api/events (the tenant's feed: owners and admins, admin-scoped keys), /api/analytics/…
 * (aggregates: owners and admins, read-scoped keys, so that a dashboard's key need not be an
 * admin key) and their platform-admin twins under /api/admin/…, across tenants or one
 * (`tenantId`). Read-only: no route creates an event; the server writes them.
 */
export const eventsRoutes: FastifyPluginAsyncZod<{ feed: EventsFeed }> = async (app, { feed }) => {
  const feedAccess = { minRole: "admin", scope: "admin" } as const;
  const analyticsAccess = { minRole: "admin", scope: "read" } as const;

  app.get(
    "/api/events",
    {
      config: feedAccess,
      schema: {
        tags: ["events"],
        summary: "The tenant's events feed, newest first (name and time filters, cursor pages)",
        querystring: listQuerySchema,
        response: { 200: eventsPageSchema },
      },
    },
    async (req) => feed.list(tenantContext(req).tenantId, req.query),
  );

  app.get(
    "/api/admin/events",
    {
      config: { auth: "platform_admin" },
      schema: {
        tags: ["admin"],
        summary: "Events of one tenant (tenantId) or of every tenant, newest first",
        querystring: adminListQuerySchema,
        response: { 200: eventsPageSchema },
      },
    },
    async (req) => {
      platformContext(req);
      const { tenantId, ...q } = req.query;
      return feed.list(tenantId ?? null, q);
    },
  );

  /**
   * One analytics read, for a tenant and (with tenantId or across tenants) for admins. `read`
   * is typed against the schemas; the route options see them as plain zod types, which
   * Fastify's generic reply typing cannot resolve.
   */
  function analytics<Q extends z.ZodType, AQ extends z.ZodType, R extends z.ZodType>(
    path: string,
    summary: string,
    query: Q,
    adminQuery: AQ,
    response: R,
    read: (tenantId: string | null, q: z.output<Q>) => Promise<z.input<R>>,
  ) {
    app.get(
      `/api/analytics/${path}`,
      {
        config: analyticsAccess,
        schema: {
          tags: ["events"],
          summary,
          querystring: query as z.ZodType,
          response: { 200: response as z.ZodType },
        },
      },
      async (req) => read(tenantContext(req).tenantId, req.query as z.output<Q>),
    );
    app.get(
      `/api/admin/analytics/${path}`,
      {
        config: { auth: "platform_admin" },
        schema: {
          tags: ["admin"],
          summary: `${summary}: of one tenant (tenantId) or of every tenant`,
          querystring: adminQuery as z.ZodType,
          response: { 200: response as z.ZodType },
        },
      },
      async (req) => {
        platformContext(req);
        const { tenantId, ...q } = req.query as { tenantId?: string } & z.output<Q>;
        return read(tenantId ?? null, q as z.output<Q>);
      },
    );
  }

  analytics(
    "conversations",
    "Conversations started per day, week or month (UTC)",
    conversationsQuerySchema,
    adminConversationsQuerySchema,
    conversationsSchema,
    (t, q) => feed.conversations(t, q),
  );
  analytics(
    "escalation-rate",
    "Escalations per conversation started over the last days",
    daysQuerySchema(30),
    adminDaysQuerySchema(30),
    escalationRateSchema,
    (t, q) => feed.escalationRate(t, q),
  );
  analytics(
    "ingestion",
    "Ingestion throughput per day and failure rate over the last days",
    daysQuerySchema(30),
    adminDaysQuerySchema(30),
    ingestionSchema,
    (t, q) => feed.ingestion(t, q),
  );
  analytics(
    "quota-friction",
    "Quota refusals over the last days, by quota",
    daysQuerySchema(30),
    adminDaysQuerySchema(30),
    quotaFrictionSchema,
    (t, q) => feed.quotaFriction(t, q),
  );
  analytics(
    "plan-funnel",
    "Trials, checkouts, plan changes and cancellations over the last days",
    daysQuerySchema(90),
    adminDaysQuerySchema(90),
    planFunnelSchema,
    (t, q) => feed.planFunnel(t, q),
  );
};
