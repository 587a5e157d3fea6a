import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  preValidationHookHandler,
} from "fastify";
import { AppError } from "../errors.js";

/**
 * What text the API accepts, decided once for every request: any Unicode string except one
 * holding NUL (U+0000) or a lone UTF-16 surrogate. PostgreSQL stores neither (it answers
 * "invalid byte sequence" / "unsupported Unicode escape"), no client means them, and they
 * reach us only through JSON escapes (`"\u0000"`, `"\ud800"`) or percent-encoding (`%00`).
 * The check walks every string of a JSON body — keys and nested values included — and of the
 * query string and path parameters, so that a field a schema forgets is covered too.
 * Raw bytes that are not UTF-8 are decoded to U+FFFD before this and are accepted.
 */

// NUL, a high surrogate not followed by a low one, or a low one not preceded by a high one.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching NUL is the point
const BAD_TEXT_RE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `s` is not acceptable text, or undefined when it is. */
export function badTextReason(s: string): string | undefined {
  const m = BAD_TEXT_RE.exec(s);
  if (!m) return undefined;
  return m[0] === "\u0000"
    ? "must not contain NUL characters"
    : "must not contain lone UTF-16 surrogates";
}

interface TextIssue {
  path: string;
  message: string;
}

/**
 * The first unacceptable string or key in a parsed JSON value, in document order, with the
 * path a client wrote (`metadata.tag`, `documents[2].title`). Iterative: a deeply nested body
 * must not overflow the stack.
 */
export function findBadText(root: unknown): TextIssue | undefined {
  const stack: Array<[unknown, string]> = [[root, ""]];
  while (stack.length > 0) {
    const [value, path] = stack.pop() as [unknown, string];
    if (typeof value === "string") {
      const message = badTextReason(value);
      if (message) return { path, message };
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], `${path}[${i}]`]);
    } else if (value !== null && typeof value === "object") {
      const entries = Object.entries(value);
      for (const [key] of entries) {
        const message = badTextReason(key);
        if (message) return { path: path ? `${path}.${key}` : key, message: `key ${message}` };
      }
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i] as [string, unknown];
        stack.push([child, path ? `${path}.${key}` : key]);
      }
    }
  }
  return undefined;
}

/** The validation error for bad text, in the shape schema validation errors have. */
function invalidText(location: string, issue: TextIssue): AppError {
  const where = issue.path ? `${location}.${issue.path}` : location;
  return new AppError("validation.failed", `${where}: ${issue.message}`, {
    location,
    issues: [issue],
  });
}

/** Checks query string and path parameters before any schema sees them. */
export const rejectBadTextInUrl: preValidationHookHandler = async (
  req: FastifyRequest,
  _reply: FastifyReply,
) => {
  for (const [location, value] of [
    ["params", req.params],
    ["querystring", req.query],
  ] as const) {
    const issue = findBadText(value);
    if (issue) throw invalidText(location, issue);
  }
};

const UTF8_RE = /^utf-?8$/i;

/** The charset parameter of a Content-Type header, if it names one. */
function charsetOf(contentType: string | undefined): string | undefined {
  for (const param of (contentType ?? "").split(";").slice(1)) {
    const [name, ...rest] = param.split("=");
    if (name?.trim().toLowerCase() === "charset")
      return rest
        .join("=")
        .trim()
        .replace(/^"(.*)"$/, "$1");
  }
  return undefined;
}

/**
 * Replaces the JSON body parser with one that refuses charsets other than UTF-8 (a body sent
 * as UTF-16 would otherwise be read as UTF-8 garbage: 415) and then checks the text of every
 * string. Parsing itself stays Fastify's own, with its malformed-JSON and `__proto__` errors.
 */
export function registerJsonParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser(
    "application/json",
    { parseAs: "string" },
    (
      req: FastifyRequest,
      raw: string | Buffer,
      done: (err: Error | null, body?: unknown) => void,
    ) => {
      const charset = charsetOf(req.headers["content-type"]);
      if (charset !== undefined && !UTF8_RE.test(charset)) {
        done(
          new AppError(
            "request.unsupported_media_type",
            `charset "${charset}" is not accepted; send JSON as UTF-8`,
          ),
        );
        return;
      }
      parseJson(req, raw as string, (err, body) => {
        if (err) return done(err);
        const issue = findBadText(body);
        if (issue) return done(invalidText("body", issue));
        done(null, body);
      });
    },
  );
}
