/**
 * The route group of a route pattern: the unit that rate limits and usage reports count by.
 * Decided by the pattern as registered (`/api/documents/:id`), never the raw URL, so every
 * call of a route lands in one group however its parameters are spelt.
 *
 * - `ingest`: everything that brings knowledge in (the ingest routes, document and knowledge
 *   writes).
 * - `search`: retrieval.
 * - `chat`: the assistant (chat, widget chat, the OpenAI-compatible API, MCP) once they exist.
 * - `auth`: signup, login, refresh, logout.
 * - `management`: every other API route (reads of documents, config, keys, users, metrics,
 *   admin).
 * - `system`: health, readiness, the API documents and anything outside `/api` (no tenant).
 */
export const ROUTE_GROUPS = ["ingest", "search", "chat", "auth", "management", "system"] as const;
export type RouteGroup = (typeof ROUTE_GROUPS)[number];

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function routeGroupOf(method: string, pattern: string | undefined): RouteGroup {
  if (pattern === undefined) return "system";
  if (
    pattern.startsWith("/api/chat") ||
    pattern.startsWith("/api/widget/chat") ||
    pattern.startsWith("/v1/") ||
    pattern === "/mcp"
  ) {
    return "chat";
  }
  if (!pattern.startsWith("/api/")) return "system";
  if (pattern.startsWith("/api/ingest/")) return "ingest";
  if (pattern === "/api/search" || pattern.startsWith("/api/search/")) return "search";
  if (pattern.startsWith("/api/auth/") && pattern !== "/api/auth/me") return "auth";
  if (
    WRITE_METHODS.has(method.toUpperCase()) &&
    (pattern.startsWith("/api/documents") || pattern.startsWith("/api/knowledge/"))
  ) {
    return "ingest";
  }
  return "management";
}
