import { randomUUID } from "node:crypto";
import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import type { ErrorCode } from "../errors.js";
import { ERROR_STATUS, type ErrorBody } from "./errors.js";

/**
 * Errors of the HTTP connection itself, raised by Node's parser before there is a request:
 * malformed framing (conflicting Content-Length, Content-Length with Transfer-Encoding, a bad
 * chunk size, control characters in a header), headers too large, a request not received in
 * time. They get the one error shape too, with a request id made up on the spot (there is no
 * request to take one from), sent as a raw response on a connection that is then closed.
 */
function codeFor(err: NodeJS.ErrnoException): ErrorCode {
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") return "request.timeout";
  if (err.code === "HPE_HEADER_OVERFLOW") return "request.headers_too_large";
  return "request.malformed";
}

const MESSAGES: Partial<Record<ErrorCode, string>> = {
  "request.timeout": "the request was not received in time",
  "request.headers_too_large": "the request headers are too large",
  "request.malformed": "the request is not valid HTTP",
};

/** The raw HTTP/1.1 response for a connection-level error. */
export function rawErrorResponse(code: ErrorCode, message: string, requestId: string): string {
  const status = ERROR_STATUS[code];
  const body: ErrorBody = { error: { code, message }, requestId };
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    "Content-Type: application/json; charset=utf-8\r\n" +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    `X-Request-Id: ${requestId}\r\n` +
    "Connection: close\r\n\r\n" +
    json
  );
}

type InFlight = { headersSent?: boolean; req?: IncomingMessage };

/**
 * Fastify's `clientErrorHandler`: one shape, logged at debug (a client's fault, not ours).
 * A request whose body was still arriving (a timeout mid-body) already has an id: `track`
 * remembers it so that the answer quotes it; `answeredEarly` (on every response) remembers a
 * request answered before its body was in, so that it is not answered twice.
 */
export function createClientErrorHandler(log: FastifyBaseLogger) {
  const ids = new WeakMap<IncomingMessage, string>();
  // Sockets whose current request was answered before its body had arrived (a refusal by the
  // auth hook, say): a later error of that request (its timeout) must not send a second answer.
  const answered = new WeakSet<Socket>();
  const track = (raw: IncomingMessage, id: string) => {
    ids.set(raw, id);
    answered.delete(raw.socket);
  };
  const answeredEarly = (raw: IncomingMessage) => {
    if (!raw.complete) answered.add(raw.socket);
  };
  const handle = (err: NodeJS.ErrnoException, socket: Socket): void => {
    // A reset connection has no one left to answer.
    if (err.code === "ECONNRESET" || socket.destroyed) return;
    const code = codeFor(err);
    log.debug({ err: { code: err.code, message: err.message } }, `client error: ${code}`);
    // Like Node's own handler: answer only if no response of a request on this socket has
    // started, or the bytes would corrupt it.
    const inFlight = (socket as Socket & { _httpMessage?: InFlight })._httpMessage;
    if (socket.writable && !inFlight?.headersSent && !answered.has(socket)) {
      const id = (inFlight?.req && ids.get(inFlight.req)) || randomUUID();
      socket.write(rawErrorResponse(code, MESSAGES[code] ?? code, id));
    }
    socket.destroy();
  };
  return { handle, track, answeredEarly };
}
