import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { AppError, type ErrorBody, type ErrorCode } from "./errors.js";

/** Fastify's own request errors, by code, mapped to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "request.malformed_json",
  FST_ERR_CTP_EMPTY_JSON_BODY: "request.malformed_json",
  FST_ERR_CTP_BODY_TOO_LARGE: "request.body_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "request.unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "validation.failed",
};

/** Turns `/a/0/b` into `a[0].b`, the path a client wrote. */
function fieldPath(instancePath: string): string {
  return instancePath
    .split("/")
    .filter(Boolean)
    .map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join("");
}

/** Maps any error to the one error shape. Unknown errors are logged and hidden behind a 500. */
export function toErrorResponse(
  err: unknown,
  req: FastifyRequest,
): { status: number; body: ErrorBody; headers?: Record<string, string> } {
  const wrap = (code: string, message: string, details?: Record<string, unknown>): ErrorBody => ({
    error: { code, message, ...(details ? { details } : {}) },
    requestId: req.id,
  });

  if (err instanceof AppError) {
    return {
      status: err.status,
      body: wrap(err.code, err.message, err.details),
      headers: err.headers,
    };
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const location = (err as { validationContext?: string }).validationContext ?? "body";
    const issues = err.validation.map((v) => ({
      path: fieldPath(v.instancePath),
      message: v.message ?? "invalid",
    }));
    const first = issues[0];
    const where = first?.path ? `${location}.${first.path}` : location;
    return {
      status: 400,
      body: wrap("validation.failed", `${where}: ${first?.message ?? "invalid"}`, {
        location,
        issues,
      }),
    };
  }
  const fe = err as FastifyError;
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) {
    const status = mapped === "validation.failed" ? 400 : (fe.statusCode ?? 400);
    return { status, body: wrap(mapped, fe.message) };
  }
  if (err instanceof SyntaxError && fe.statusCode === 400) {
    return {
      status: 400,
      body: wrap("request.malformed_json", `body is not valid JSON: ${err.message}`),
    };
  }
  req.log.error({ err }, "unhandled error");
  return {
    status: 500,
    body: wrap("internal", "internal error; quote the request id when reporting it"),
  };
}

export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply) {
  const { status, body, headers } = toErrorResponse(err, req);
  if (headers) reply.headers(headers);
  return reply.status(status).send(body);
}
