import { AppError } from "../../errors.js";
import { DOCUMENT_TYPES } from "../tenants/index.js";

export type DocType = (typeof DOCUMENT_TYPES)[number];

/** Document type from a file's name, or undefined when the extension is not one we parse. */
export function typeFromFilename(name: string): DocType | undefined {
  const ext = name.toLowerCase().split(".").pop() ?? "";
  const map: Record<string, DocType> = {
    pdf: "pdf",
    txt: "txt",
    text: "txt",
    md: "md",
    markdown: "md",
    html: "html",
    htm: "html",
  };
  return map[ext];
}

/** The declared type if given, else the file name's; 415 when neither names a type we parse. */
export function fileDocType(declared: string | undefined, filename: string): DocType {
  const docType = declared ?? typeFromFilename(filename);
  if (!docType || !(DOCUMENT_TYPES as readonly string[]).includes(docType)) {
    throw new AppError(
      "ingestion.unsupported_type",
      `unsupported file type; send one of ${DOCUMENT_TYPES.join(", ")}`,
    );
  }
  return docType as DocType;
}
