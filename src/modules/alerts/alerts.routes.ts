import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { platformContext, tenantContext } from "../../http/auth-hook.js";
import { idParams } from "../../http/schemas.js";
import {
  adminListQuerySchema,
  alertPageSchema,
  alertSchema,
  listQuerySchema,
  settingsBodySchema,
  settingsSchema,
} from "./alerts.schemas.js";
import type { AlertsService } from "./alerts.service.js";

/** /api/alerts (the tenant's) and /api/admin/alerts (every tenant's, platform admins). */
export const alertsRoutes: FastifyPluginAsyncZod<{ alerts: AlertsService }> = async (
  app,
  { alerts },
) => {
  app.get(
    "/api/alerts",
    {
      config: { scope: "read" },
      schema: {
        tags: ["alerts"],
        summary: "The tenant's alerts, newest first (filter by kind and acknowledgement)",
        querystring: listQuerySchema,
        response: { 200: alertPageSchema },
      },
    },
    async (req) => alerts.list(tenantContext(req), req.query),
  );

  app.post(
    "/api/alerts/:id/ack",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["alerts"],
        summary: "Acknowledge an alert (idempotent: the first acknowledgement stays)",
        params: idParams,
        response: { 200: alertSchema },
      },
    },
    async (req) => alerts.ack(tenantContext(req), req.params.id),
  );

  app.get(
    "/api/alerts/settings",
    {
      config: { scope: "read" },
      schema: {
        tags: ["alerts"],
        summary: "The tenant's alert thresholds: as set, and in force (defaults filled in)",
        response: { 200: settingsSchema },
      },
    },
    async (req) => alerts.settings(tenantContext(req)),
  );

  app.put(
    "/api/alerts/settings",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["alerts"],
        summary: "Replace the tenant's alert thresholds (keys left out take the defaults)",
        body: settingsBodySchema,
        response: { 200: settingsSchema },
      },
    },
    async (req) => alerts.putSettings(tenantContext(req), req.body),
  );

  app.get(
    "/api/admin/alerts",
    {
      config: { auth: "platform_admin" },
      schema: {
        tags: ["admin"],
        summary: "Every tenant's alerts, newest first (or one tenant's)",
        querystring: adminListQuerySchema,
        response: { 200: alertPageSchema },
      },
    },
    async (req) => alerts.adminList(platformContext(req), req.query),
  );
};
