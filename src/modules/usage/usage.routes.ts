import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { platformContext } from "../../http/auth-hook.js";
import type { UsageService } from "./ledger.js";
import {
  priceInputSchema,
  priceListQuery,
  pricePageSchema,
  priceSchema,
  rerateInputSchema,
  rerateListQuery,
  rerateRunPageSchema,
  rerateRunSchema,
} from "./usage.schemas.js";

/** The price book and re-rating: platform admins only. */
export const usageAdminRoutes: FastifyPluginAsyncZod<{
  usage: Pick<UsageService, "prices" | "rerating">;
}> = async (app, { usage }) => {
  const config = { auth: "platform_admin" as const };

  app.get(
    "/api/admin/prices",
    {
      config,
      schema: {
        tags: ["admin", "usage"],
        summary: "The price book, newest first (filter by provider and model)",
        querystring: priceListQuery,
        response: { 200: pricePageSchema },
      },
    },
    async (req) => usage.prices.list(platformContext(req), req.query),
  );

  app.post(
    "/api/admin/prices",
    {
      config,
      schema: {
        tags: ["admin", "usage"],
        summary:
          "Add a price from an effective date (a correction is a new price; re-rate to apply it to past events)",
        body: priceInputSchema,
        response: { 201: priceSchema },
      },
    },
    async (req, reply) => {
      const price = await usage.prices.create(platformContext(req), req.body);
      return reply.code(201).send(price);
    },
  );

  app.post(
    "/api/admin/usage/rerate",
    {
      config,
      schema: {
        tags: ["admin", "usage"],
        summary:
          "Recompute the cost of the events in [from, to) at the prices in force at each event's time",
        body: rerateInputSchema,
        response: { 200: rerateRunSchema },
      },
    },
    async (req) => usage.rerating.run(platformContext(req), req.body),
  );

  app.get(
    "/api/admin/usage/rerates",
    {
      config,
      schema: {
        tags: ["admin", "usage"],
        summary: "Re-rating runs, newest first",
        querystring: rerateListQuery,
        response: { 200: rerateRunPageSchema },
      },
    },
    async (req) => usage.rerating.list(platformContext(req), req.query),
  );
};
