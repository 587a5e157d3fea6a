import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { tenantContext } from "../../http/auth-hook.js";
import { idParams, noContent } from "../../http/schemas.js";
import {
  fieldsInput,
  type KnowledgeInput,
  type KnowledgeType,
  listQuery,
  responseSchemas,
} from "./knowledge.schemas.js";
import type { KnowledgeService } from "./knowledge.service.js";

/** One collection per item type; the URL segment is the plural a client expects. */
const COLLECTIONS: ReadonlyArray<{ type: KnowledgeType; path: string; noun: string }> = [
  { type: "faq", path: "/api/knowledge/faqs", noun: "FAQ" },
  { type: "menu_item", path: "/api/knowledge/menu-items", noun: "menu item" },
  { type: "policy", path: "/api/knowledge/policies", noun: "policy" },
];

/**
 * /api/knowledge/{faqs,menu-items,policies}: reads for any tenant principal, writes for admins.
 * Writes answer 202 with the item and its processing state: the embedding runs in the
 * background, and GET shows when it has completed or failed.
 */
export const knowledgeRoutes: FastifyPluginAsyncZod<{ knowledge: KnowledgeService }> = async (
  app,
  { knowledge },
) => {
  for (const { type, path, noun } of COLLECTIONS) {
    const body = fieldsInput[type];
    const res = responseSchemas[type];
    const tags = ["knowledge"];
    // The body was checked against this type's schema, so the pairing holds.
    const input = (fields: unknown) => ({ type, fields }) as KnowledgeInput;

    app.get(
      path,
      {
        config: { scope: "read" },
        schema: {
          tags,
          summary: `The tenant's ${noun} items, newest first, with their processing state`,
          querystring: listQuery,
          response: { 200: res.list },
        },
      },
      async (req) => knowledge.list(tenantContext(req), type, req.query),
    );

    app.post(
      path,
      {
        config: { minRole: "admin", scope: "ingest" },
        schema: {
          tags,
          summary: `Create a ${noun}; it becomes searchable once its embedding job completes`,
          body,
          response: { 202: res.write },
        },
      },
      async (req, reply) =>
        reply.status(202).send(await knowledge.create(tenantContext(req), input(req.body))),
    );

    app.get(
      `${path}/:id`,
      {
        config: { scope: "read" },
        schema: {
          tags,
          summary: `One ${noun}, with the state of its embedding job`,
          params: idParams,
          response: { 200: res.detail },
        },
      },
      async (req) => knowledge.get(tenantContext(req), type, req.params.id),
    );

    app.put(
      `${path}/:id`,
      {
        config: { minRole: "admin", scope: "ingest" },
        schema: {
          tags,
          summary: `Replace the ${noun}'s fields; changed content is embedded again, unchanged is a duplicate`,
          params: idParams,
          body,
          response: { 202: res.write },
        },
      },
      async (req, reply) =>
        reply
          .status(202)
          .send(await knowledge.update(tenantContext(req), req.params.id, input(req.body))),
    );

    app.delete(
      `${path}/:id`,
      {
        config: { minRole: "admin", scope: "ingest" },
        schema: {
          tags,
          summary: `Delete the ${noun}; search stops showing it at once`,
          params: idParams,
          response: { 204: noContent },
        },
      },
      async (req, reply) => {
        await knowledge.delete(tenantContext(req), type, req.params.id);
        return reply.status(204).send();
      },
    );
  }
};
