import { AppError } from "../../errors.js";

const MB = 1024 * 1024;

/** 413 for a file over the tenant's limit, wherever the file arrives (form, upload, reader). */
export function fileTooLarge(maxFileBytes: number): AppError {
  const maxFileSizeMb = maxFileBytes / MB;
  return new AppError("ingestion.file_too_large", `files may be at most ${maxFileSizeMb} MB`, {
    maxFileSizeMb,
  });
}

/**
 * A tenant's ingestion limits from its settings, and the checks that hold every way in (JSON,
 * URL, file, direct upload) to them. The document count is checked apart, when a document is
 * created, on the tenant's locked document figures (ingestion.service.ts).
 */
export function tenantLimits(config: {
  allowedDocumentTypes: string[];
  maxFileSizeMb: number;
  maxDocuments: number;
}) {
  const maxFileBytes = config.maxFileSizeMb * MB;
  return {
    maxFileBytes,
    /** How many documents the tenant may keep (checked when one is created). */
    maxDocuments: config.maxDocuments,
    /** Refuses a type the tenant's settings do not allow (422, with the allowed list). */
    assertType(docType: string): void {
      if (config.allowedDocumentTypes.includes(docType)) return;
      throw new AppError(
        "ingestion.type_not_allowed",
        `this tenant does not ingest '${docType}' documents`,
        { allowedDocumentTypes: config.allowedDocumentTypes },
      );
    },
    /** Refuses a file larger than the tenant allows (413). */
    assertFileSize(bytes: number): void {
      if (bytes > maxFileBytes) throw fileTooLarge(maxFileBytes);
    },
  };
}

export type TenantLimits = ReturnType<typeof tenantLimits>;
