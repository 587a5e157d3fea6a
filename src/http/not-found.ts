import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from "fastify";
import { AppError } from "../errors.js";

const METHODS: HTTPMethods[] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/**
 * The methods `path` has routes for, as the router matches a real request (parameters,
 * wildcards, the trailing slash). OPTIONS alone does not make a path exist: with CORS on, a
 * catch-all OPTIONS route answers preflights for every path.
 */
export function allowedMethods(app: FastifyInstance, path: string): HTTPMethods[] {
  const allowed = METHODS.filter((method) => app.findRoute({ method, url: path }) !== null);
  return allowed.some((m) => m !== "OPTIONS") ? allowed : [];
}

/**
 * Answers a request no route took: 405 with `Allow` when the path exists under other methods
 * (a client that used the wrong verb learns which ones work), 404 otherwise.
 */
export function createNotFoundHandler(app: FastifyInstance) {
  return (req: FastifyRequest, _reply: FastifyReply) => {
    const path = req.url.split("?")[0] ?? "/";
    const allowed = allowedMethods(app, path);
    // A route of this very method sent the request here (a static file that is not there).
    if (allowed.length > 0 && !allowed.includes(req.method as HTTPMethods)) {
      throw new AppError(
        "route.method_not_allowed",
        `${req.method} is not allowed on ${path}; use ${allowed.join(", ")}`,
        { allowed },
        { allow: allowed.join(", ") },
      );
    }
    throw new AppError("route.not_found", `no route ${req.method} ${path}`);
  };
}
