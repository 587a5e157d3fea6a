/** The error codes the documents module raises; their HTTP statuses are in `src/http/errors.ts`. */
export type DocumentErrorCode = "document.managed_by_knowledge";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<DocumentErrorCode, true> {}
}
