import { describe, expect, it } from "vitest";
import { routeGroupOf } from "../../src/http/route-groups.js";

describe("route groups", () => {
  it.each([
    ["POST", "/api/ingest/document", "ingest"],
    ["POST", "/api/ingest/uploads/:id/complete", "ingest"],
    ["POST", "/api/documents", "ingest"],
    ["DELETE", "/api/documents/:id", "ingest"],
    ["PUT", "/api/knowledge/faqs/:id", "ingest"],
    ["GET", "/api/documents/:id", "management"],
    ["GET", "/api/knowledge/faqs", "management"],
    ["POST", "/api/search", "search"],
    ["POST", "/api/chat", "chat"],
    ["GET", "/api/chat/sessions/:id", "chat"],
    ["POST", "/v1/chat/completions", "chat"],
    ["POST", "/mcp", "chat"],
    ["POST", "/api/auth/login", "auth"],
    ["GET", "/api/auth/me", "management"],
    ["GET", "/api/customers/config", "management"],
    ["GET", "/api/admin/customers", "management"],
    ["GET", "/healthz", "system"],
    ["GET", "/docs/json", "system"],
  ])("%s %s is %s", (method, pattern, group) => {
    expect(routeGroupOf(method, pattern)).toBe(group);
  });

  it("puts a request that matched no route in system", () => {
    expect(routeGroupOf("GET", undefined)).toBe("system");
  });
});
