import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { AppError, type ErrorCode } from "../errors.js";
import { ERROR_STATUS, type ErrorBody, statusFor } from "./errors.js";

/** Fastify's own request errors, by code, mapped to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "request.malformed_json",
  FST_ERR_CTP_EMPTY_JSON_BODY: "request.malformed_json",
  FST_ERR_CTP_BODY_TOO_LARGE: "request.body_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "request.unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "validation.failed",
  FST_ERR_BAD_URL: "request.malformed_url",
  FST_ERR_MAX_PARAM_LENGTH: "request.uri_too_long",
};

/**
 * A client that closed its connection (or reset it) while its body was being read. Node
 * raises "aborted" (ECONNRESET) on the request stream, and Fastify hands it on as an error;
 * it is the client's doing, not a server fault, so it is answered (to no one) with a 4xx and
 * logged at info, not as an unhandled error. The client's socket must really be gone: an
 * ECONNRESET from the database or a fetch is a server fault and stays a 500.
 */
function isAborted(err: FastifyError & { code?: string }, req: FastifyRequest): boolean {
  const gone = req.raw.socket?.destroyed !== false;
  return (
    gone &&
    (err.code === "ECONNRESET" ||
      err.code === "ERR_STREAM_PREMATURE_CLOSE" ||
      err.message === "aborted")
  );
}

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
      status: statusFor(err.code),
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
  if (mapped) return { status: ERROR_STATUS[mapped], body: wrap(mapped, fe.message) };
  if (isAborted(fe, req)) {
    req.log.info({ code: fe.code }, "client aborted the request");
    return { status: 400, body: wrap("request.aborted", "the client closed the connection") };
  }
  // The documentation's static files (@fastify/static) refuse a path out of their folder with
  // 403 and a missing file with 404, as plain errors: neither is a server fault.
  if (fe.statusCode === 403 || fe.statusCode === 404) {
    return { status: 404, body: wrap("not_found", "no such file") };
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
