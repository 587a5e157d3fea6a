import { extractText, getDocumentProxy } from "unpdf";
import { declaredCharset, htmlToDocument } from "./extract-html.js";

/**
 * Text extraction for the document types tenants ingest. Pure: bytes in, text out, no I/O.
 * Every failure is an `ExtractionError` with a code; retrying cannot fix any of them, so the
 * worker turns them into `NonRetryableError`.
 */

export type DocumentKind = "pdf" | "txt" | "html" | "md";

export type ExtractionErrorCode =
  | "ingestion.type_mismatch"
  | "ingestion.pdf_encrypted"
  | "ingestion.pdf_corrupt"
  | "ingestion.no_text"
  /** Extraction ran past its time limit (extract-pool.ts). */
  | "ingestion.extraction_timeout"
  /** The extraction thread died, e.g. past its memory limit (extract-pool.ts). */
  | "ingestion.extraction_failed";

export class ExtractionError extends Error {
  override name = "ExtractionError";
  constructor(
    readonly code: ExtractionErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface ExtractedDocument {
  /** The document's text; paragraphs separated by a blank line, line endings `\n`. */
  text: string;
  title?: string;
  /** PDFs only. */
  pageCount?: number;
  /** The MIME type of what was extracted, e.g. `application/pdf`. */
  contentType: string;
}

const CONTENT_TYPES: Record<DocumentKind, string> = {
  pdf: "application/pdf",
  txt: "text/plain",
  html: "text/html",
  md: "text/markdown",
};

/**
 * Extracts the text of a document of the declared kind. The bytes are sniffed first (unless
 * `opts.sniff` is false; a PDF is always checked, it cannot be read otherwise), so a PDF
 * declared as text (or text declared as PDF) is refused with `ingestion.type_mismatch` rather
 * than indexed as garbage. `sourceUrl` (pages fetched from a URL) names an HTML page that has
 * no title of its own.
 */
export async function extractDocument(
  bytes: Buffer,
  declared: DocumentKind,
  opts: ExtractOptions = {},
): Promise<ExtractedDocument> {
  const contentType = CONTENT_TYPES[declared];
  if (declared === "pdf") return { ...(await extractPdf(bytes)), contentType };
  const sniff = opts.sniff ?? true;
  if (sniff && isPdf(bytes)) {
    throw new ExtractionError(
      "ingestion.type_mismatch",
      `declared ${declared}, but the content is a PDF`,
    );
  }
  if (declared === "html") {
    const { text, title } = htmlToDocument(decodeHtml(bytes, sniff), opts.sourceUrl);
    return { text: nonEmpty(text), ...(title ? { title } : {}), contentType };
  }
  // Colour and cursor codes of terminal output are formatting, as tags are in HTML: the words
  // between them are what a query looks for ("\u001b[31mred" would index as "31mred").
  const decoded = decodeText(bytes, "utf-8", sniff).replace(ANSI_ESCAPE, "");
  const text = nonEmpty(normalizeNewlines(decoded));
  const title = declared === "md" ? markdownTitle(text) : undefined;
  return { text, ...(title ? { title } : {}), contentType };
}

export interface ExtractOptions {
  /** The page's address, for an HTML page without a title of its own. */
  sourceUrl?: string;
  /**
   * Whether to check that the bytes are what they are declared to be (a PDF or binary declared
   * as text). On by default; off for content stored at submit, which was checked there (files,
   * uploads) or was sent as a JSON string and is text by definition.
   */
  sniff?: boolean;
}

/** Why bytes are not of the kind declared, checked without extracting them. */
export type DeclaredTypeProblem = { kind: "not_pdf" | "is_pdf" | "not_text"; message: string };

/**
 * The checks extraction makes before it reads a file, for use at submit, where the bytes of a
 * file or an upload are at hand: a refusal then beats a document that fails later. Decoding is
 * fast next to extraction (no PDF parsing here), so it runs in the request.
 */
export function declaredTypeProblem(
  bytes: Buffer,
  declared: DocumentKind,
): DeclaredTypeProblem | undefined {
  if (declared === "pdf") {
    return looksLikePdf(bytes)
      ? undefined
      : { kind: "not_pdf", message: "declared pdf, but the content is not a PDF" };
  }
  if (isPdf(bytes)) return { kind: "is_pdf", message: `declared ${declared}, but it is a PDF` };
  try {
    if (declared === "html") decodeHtml(bytes, true);
    else decodeText(bytes, "utf-8", true);
  } catch (err) {
    if (err instanceof ExtractionError) return { kind: "not_text", message: err.message };
    throw err;
  }
  return undefined;
}

/** The first level-1 ATX heading (`# Title`), if it is of a sane length. */
function markdownTitle(text: string): string | undefined {
  const heading = /^#[ \t]+(.*)$/m.exec(text)?.[1];
  if (!heading || heading.length > 300) return undefined; // bounds the trailing-# strip below
  return heading.replace(/[ \t]+#+[ \t]*$/, "").trim() || undefined;
}

const PDF_MAGIC = Buffer.from("%PDF-");

function isPdf(bytes: Buffer): boolean {
  return bytes.subarray(0, PDF_MAGIC.length).equals(PDF_MAGIC);
}

function nonEmpty(text: string): string {
  if (text.trim() === "")
    throw new ExtractionError("ingestion.no_text", "the document contains no text");
  return text;
}

function normalizeNewlines(text: string): string {
  return text.replace(/\r\n?/g, "\n");
}

// ---------------------------------------------------------------------------------------------
// Text decoding

/** Control characters other than tab, line feed, form feed, carriage return (and vertical tab). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: detecting them is the point
const CONTROL = /[\u0001-\u0008\u000e-\u001f\u007f]/g;
/**
 * ANSI escape sequences, as terminal logs are full of: CSI (`ESC [ … final`, colours and cursor
 * moves), OSC (`ESC ] … BEL` or `ESC ] … ESC \`, titles and links) and two-character escapes.
 * They are text's formatting, so they neither count as control characters nor get indexed.
 * Each part is a bounded character class, so matching stays linear.
 */
const ANSI_ESCAPE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)|[@-Z\\-_])/g;
/** Text with more than this share of control characters is binary that happens to decode. */
const MAX_CONTROL_SHARE = 0.01;

/**
 * Decodes bytes as text in `encoding` (a byte-order mark wins over it) and refuses what is not
 * text: NUL bytes, bytes that are invalid in the encoding, or more than a trace of control
 * characters. Refusing beats indexing mojibake that no query will ever match.
 */
function decodeText(bytes: Buffer, encoding: string, sniff: boolean): string {
  const bom = byteOrderMark(bytes);
  let text: string;
  try {
    text = new TextDecoder(bom ?? encoding, { fatal: true }).decode(bytes);
  } catch {
    throw notText(`it is not valid ${bom ?? encoding}`);
  }
  if (text.includes("\u0000")) throw notText("it contains NUL bytes");
  if (sniff) {
    const controls = text.replace(ANSI_ESCAPE, "").match(CONTROL)?.length ?? 0;
    if (controls > text.length * MAX_CONTROL_SHARE) throw notText("it contains control characters");
  }
  return text;
}

function byteOrderMark(bytes: Buffer): string | undefined {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return "utf-8";
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return "utf-16le";
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return "utf-16be";
  return undefined;
}

function notText(why: string): ExtractionError {
  return new ExtractionError("ingestion.type_mismatch", `content does not look like text: ${why}`);
}

/**
 * A page is decoded in the charset its `<meta>` declares; without one, as UTF-8, and failing
 * that as windows-1252, the legacy default browsers use for undeclared pages.
 */
function decodeHtml(bytes: Buffer, sniff: boolean): string {
  const declared = declaredCharset(bytes);
  if (declared) return decodeText(bytes, declared, sniff);
  try {
    return decodeText(bytes, "utf-8", sniff);
  } catch (err) {
    if (byteOrderMark(bytes) || bytes.includes(0)) throw err;
    return decodeText(bytes, "windows-1252", sniff);
  }
}

// ---------------------------------------------------------------------------------------------
// PDF

/** Readers accept the header anywhere in the first KiB, so we do too. */
function looksLikePdf(bytes: Buffer): boolean {
  return bytes.subarray(0, 1024).includes(PDF_MAGIC);
}

async function extractPdf(bytes: Buffer): Promise<{ text: string; pageCount: number }> {
  if (!looksLikePdf(bytes)) {
    throw new ExtractionError(
      "ingestion.type_mismatch",
      "declared pdf, but the content is not a PDF",
    );
  }
  let doc: Awaited<ReturnType<typeof getDocumentProxy>> | undefined;
  try {
    // A copy: pdf.js may detach the buffer it is given, and the caller still owns `bytes`.
    doc = await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0, isEvalSupported: false });
    const { text, totalPages } = await extractText(doc, { mergePages: false });
    const pages = text.map((page) => normalizeNewlines(page).trim()).filter((page) => page !== "");
    if (pages.length === 0) {
      throw new ExtractionError(
        "ingestion.no_text",
        "the PDF has no extractable text (a scanned document needs OCR, which is not supported)",
      );
    }
    return { text: pages.join("\n\n"), pageCount: totalPages };
  } catch (err) {
    throw classifyPdfError(err);
  } finally {
    await doc?.destroy().catch(() => undefined);
  }
}

/**
 * pdf.js reports problems as its own exception classes (PasswordException, InvalidPDFException,
 * FormatError, …) and occasionally as plain values; anything not recognised as encryption is
 * treated as a damaged file, since the bytes are all we had and a retry reads the same bytes.
 */
function classifyPdfError(err: unknown): ExtractionError {
  if (err instanceof ExtractionError) return err;
  const name = (err as { name?: unknown })?.name;
  const message = String((err as { message?: unknown })?.message ?? err);
  if (name === "PasswordException" || /password|encrypt/i.test(message)) {
    return new ExtractionError("ingestion.pdf_encrypted", `the PDF is encrypted: ${message}`);
  }
  return new ExtractionError("ingestion.pdf_corrupt", `the PDF could not be read: ${message}`);
}
