import type { Multipart } from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import { AppError } from "../../errors.js";
import { badTextReason } from "../../http/text.js";
import { fileTooLarge } from "./limits.js";

/** A multipart/form-data body read whole: its text fields and its one file. */
export interface MultipartForm {
  fields: Map<string, string>;
  file: { filename: string; bytes: Buffer } | undefined;
}

export interface MultipartLimits {
  /** Largest file; one byte more is 413 `ingestion.file_too_large`. */
  fileBytes: number;
  /** The field names accepted; any other is refused, and so is a name sent twice. */
  fieldNames: readonly string[];
  /** Largest value of one field, in bytes. */
  fieldBytes: number;
}

const invalidField = (path: string, message: string) =>
  new AppError("validation.failed", `${path}: ${message}`, {
    location: "body",
    issues: [{ path, message }],
  });

/**
 * Reads the whole body, refusing (never ignoring or cutting) whatever exceeds a limit: a file
 * larger than `fileBytes` however the body is framed (chunked bodies announce no length), a
 * second file, an unknown or repeated field, a field value cut at `fieldBytes`. Errors of the
 * multipart parser become 4xx AppErrors: its FST_ limit errors by meaning, and a body it cannot
 * parse (no boundary, cut short, bad part headers) `request.malformed_multipart`.
 */
export async function readMultipart(
  req: FastifyRequest,
  limits: MultipartLimits,
): Promise<MultipartForm> {
  const form: MultipartForm = { fields: new Map(), file: undefined };
  const tooLarge = () => fileTooLarge(limits.fileBytes);
  let parts: AsyncIterator<Multipart>;
  try {
    parts = req
      .parts({
        // One more than allowed of each, so that the excess reaches the checks below (a clear
        // message naming the field) instead of being dropped by the parser.
        limits: {
          files: 1,
          fields: limits.fieldNames.length + 1,
          parts: limits.fieldNames.length + 2,
          fieldSize: limits.fieldBytes,
          fileSize: limits.fileBytes,
        },
      })
      [Symbol.asyncIterator]();
  } catch (err) {
    throw parserError(err, tooLarge);
  }
  for (;;) {
    let next: IteratorResult<Multipart>;
    try {
      next = await parts.next();
    } catch (err) {
      throw parserError(err, tooLarge);
    }
    if (next.done) return form;
    const part = next.value;
    if (part.type === "file") {
      let bytes: Buffer;
      try {
        bytes = await part.toBuffer();
      } catch (err) {
        throw parserError(err, tooLarge);
      }
      // The parser marks a cut file as truncated; its own check can miss the last chunk.
      if (part.file.truncated) throw tooLarge();
      const badName = badTextReason(part.filename);
      if (badName) throw invalidField("file", `file name ${badName}`);
      form.file = { filename: part.filename, bytes };
      continue;
    }
    const name = part.fieldname;
    if (!limits.fieldNames.includes(name)) {
      throw invalidField(name, `unknown field; the fields are ${limits.fieldNames.join(", ")}`);
    }
    if (form.fields.has(name)) throw invalidField(name, "sent more than once");
    if (part.valueTruncated) {
      throw invalidField(name, `longer than ${limits.fieldBytes} bytes`);
    }
    // Form fields bypass the JSON body's text check: the same rule, applied here.
    const value = String(part.value);
    const bad = badTextReason(value);
    if (bad) throw invalidField(name, bad);
    form.fields.set(name, value);
  }
}

/** The multipart plugin's and parser's errors, as the client's mistakes they are. */
function parserError(err: unknown, tooLarge: () => AppError): unknown {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string }).code;
  switch (code) {
    case "FST_REQ_FILE_TOO_LARGE":
      return tooLarge();
    case "FST_FILES_LIMIT":
      return new AppError("ingestion.too_many_files", "send one file per request");
    case "FST_FIELDS_LIMIT":
    case "FST_PARTS_LIMIT":
      return new AppError("validation.failed", "the form has more fields than allowed", {
        location: "body",
        issues: [{ path: "", message: "too many fields" }],
      });
    case "FST_PROTO_VIOLATION":
      return invalidField("", "a field name is not allowed");
    case "FST_INVALID_JSON_FIELD_ERROR":
      return invalidField("", "a field declared as JSON is not valid JSON");
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new AppError("request.unsupported_media_type", "send the file as multipart/form-data");
    case undefined:
    case "FST_MP_PREMATURE_CLOSE":
      // busboy's own errors carry no code: no boundary, a body cut short, bad part headers.
      return new AppError(
        "request.malformed_multipart",
        `the multipart body cannot be read: ${(err as Error).message}`,
      );
    default:
      return err;
  }
}
