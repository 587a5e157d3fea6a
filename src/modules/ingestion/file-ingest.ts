import { AppError } from "../../errors.js";
import { type DocType, fileDocType } from "./doc-types.js";
import { type DocumentKind, declaredTypeProblem } from "./extract.js";
import { documentItemSchema, externalIdSchema, metadataSchema } from "./ingestion.schemas.js";
import type { DocumentInput } from "./ingestion.service.js";
import type { TenantLimits } from "./limits.js";
import type { MultipartForm } from "./multipart.js";

/** The form fields of POST /api/ingest/file, besides the file. */
export const FILE_FIELDS = ["title", "docType", "externalId", "metadata"] as const;
/** Largest field value: metadata (50 keys of 64 + 500 characters) fits with room. */
export const FILE_FIELD_BYTES = 100_000;

const invalid = (path: string, message: string) =>
  new AppError("validation.failed", `${path}: ${message}`, {
    location: "body",
    issues: [{ path, message }],
  });

function parseField<T>(
  schema: {
    safeParse(
      v: unknown,
    ):
      | { success: true; data: T }
      | { success: false; error: { issues: Array<{ message: string }> } };
  },
  path: string,
  value: unknown,
): T {
  const r = schema.safeParse(value);
  if (!r.success) throw invalid(path, r.error.issues[0]?.message ?? "invalid");
  return r.data;
}

/**
 * The JSON body parser refuses prototype poisoning (400 `request.malformed_json`); a form's
 * metadata is JSON too, and JSON.parse would keep a `__proto__` key that the schema then drops
 * without a word. Refused the same way, as the field's bad JSON.
 */
function refusePrototypeKeys(key: string, value: unknown): unknown {
  if (key === "__proto__") throw new SyntaxError("__proto__ key");
  if (key === "constructor" && typeof value === "object" && value !== null) {
    if (Object.hasOwn(value, "prototype")) throw new SyntaxError("constructor.prototype key");
  }
  return value;
}

/**
 * A file's bytes are at hand at submit, so the checks extraction would make of them (a PDF
 * declared as text, or a text file that is binary) refuse it now instead of failing it later:
 * 400 `ingestion.invalid_text` for text that is not text, 415 `ingestion.type_mismatch` for a
 * PDF declared otherwise or a .pdf that is not one.
 */
export function assertDeclaredType(bytes: Buffer, format: DocumentKind): void {
  const problem = declaredTypeProblem(bytes, format);
  if (!problem) return;
  if (problem.kind === "not_text")
    throw new AppError("ingestion.invalid_text", `the ${format} file: ${problem.message}`);
  throw new AppError("ingestion.type_mismatch", problem.message);
}

/**
 * An uploaded form as a submission: the file within the tenant's limits, then the form's
 * fields checked as the JSON routes check theirs, the type, and the content.
 */
export function fileSubmission(
  form: MultipartForm,
  limits: TenantLimits,
): { input: DocumentInput; content: { kind: "bytes"; bytes: Buffer; format: DocType } } {
  const { file, fields } = form;
  if (!file) throw invalid("file", "required");
  // The reader refused larger bodies already; this holds whatever read the form.
  limits.assertFileSize(file.bytes.length);
  const docType = fileDocType(fields.get("docType"), file.filename);
  limits.assertType(docType);
  const rawTitle = fields.get("title");
  const title =
    rawTitle !== undefined && rawTitle.trim() !== ""
      ? parseField(documentItemSchema.shape.title, "title", rawTitle)
      : // The name is the title then: held to the same rules (a 400 rather than a cut).
        parseField(documentItemSchema.shape.title, "filename", file.filename || "untitled");
  const rawMeta = fields.get("metadata");
  let metadata: Record<string, string> | undefined;
  if (rawMeta !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(rawMeta, refusePrototypeKeys);
    } catch {
      throw invalid(
        "metadata",
        "must be a JSON object of strings (without __proto__ or constructor.prototype)",
      );
    }
    metadata = parseField(metadataSchema, "metadata", json);
  }
  const rawExternalId = fields.get("externalId");
  const externalId =
    rawExternalId === undefined
      ? undefined
      : parseField(externalIdSchema, "externalId", rawExternalId);
  if (file.bytes.length === 0) throw new AppError("ingestion.empty_content", "the file is empty");
  assertDeclaredType(file.bytes, docType);
  return {
    input: { title, docType, externalId, metadata },
    content: { kind: "bytes", bytes: file.bytes, format: docType },
  };
}
