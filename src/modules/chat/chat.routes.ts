import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { tenantContext } from "../../http/auth-hook.js";
import { noContent } from "../../http/schemas.js";
import {
  chatBody,
  chatResponse,
  chatSettingsSchema,
  chatSettingsView,
  sessionDetailSchema,
  sessionListQuery,
  sessionMessagesQuery,
  sessionPageSchema,
  sessionParams,
} from "./chat.schemas.js";
import type { ChatService } from "./chat.service.js";

/**
 * /api/chat: a turn (scope `chat`), the sessions' history (scopes `read` or `chat`: a
 * dashboard key reads conversations, a chat integration its own), deletion (`chat`), and the
 * assistant's settings (read: `read`; change: admin role, `admin` scope).
 */
export const chatRoutes: FastifyPluginAsyncZod<{ chat: ChatService }> = async (app, { chat }) => {
  app.post(
    "/api/chat",
    {
      config: { scope: "chat" },
      schema: {
        tags: ["chat"],
        summary:
          "Ask the tenant's assistant: an answer from the knowledge base, cited inline as [n]",
        body: chatBody,
        response: { 200: chatResponse },
      },
    },
    async (req) => chat.turn(tenantContext(req), req.body),
  );

  app.get(
    "/api/chat/sessions",
    {
      config: { scope: ["read", "chat"] as const },
      schema: {
        tags: ["chat"],
        summary: "The tenant's chat sessions, newest first (filter by the visitor's userId)",
        querystring: sessionListQuery,
        response: { 200: sessionPageSchema },
      },
    },
    async (req) => chat.listSessions(tenantContext(req), req.query),
  );

  app.get(
    "/api/chat/sessions/:id",
    {
      config: { scope: ["read", "chat"] as const },
      schema: {
        tags: ["chat"],
        summary:
          "A session (by its id or the caller's own) and its messages in order, with citations",
        params: sessionParams,
        querystring: sessionMessagesQuery,
        response: { 200: sessionDetailSchema },
      },
    },
    async (req) => chat.getSession(tenantContext(req), req.params.id, req.query),
  );

  app.delete(
    "/api/chat/sessions/:id",
    {
      config: { scope: "chat" },
      schema: {
        tags: ["chat"],
        summary: "Delete a session and its messages (the billable usage stays, without content)",
        params: sessionParams,
        response: { 204: noContent },
      },
    },
    async (req, reply) => {
      await chat.deleteSession(tenantContext(req), req.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    "/api/chat/settings",
    {
      config: { scope: "read" },
      schema: {
        tags: ["chat"],
        summary: "The assistant's settings: as set, and in force (defaults filled in)",
        response: { 200: chatSettingsView },
      },
    },
    async (req) => chat.settings(tenantContext(req)),
  );

  app.put(
    "/api/chat/settings",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["chat"],
        summary: "Replace the assistant's settings (keys left out take their defaults)",
        body: chatSettingsSchema,
        response: { 200: chatSettingsView },
      },
    },
    async (req) => chat.putSettings(tenantContext(req), req.body),
  );
};
