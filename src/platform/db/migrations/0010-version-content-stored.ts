/**
 * When a version's content was in place for processing: its bytes stored in the blob store
 * (the request is answered only after that), or at once for a URL the worker fetches. A version
 * without it belongs to a request that never completed (a crash between recording the version
 * and storing its bytes); crash repair discards such a version instead of failing it. Versions
 * recorded before this column existed count as stored: if their blob is missing, that shows as
 * `ingestion.content_missing` rather than the version vanishing.
 */
export const sql = `
alter table document_versions add column content_stored_at timestamptz;
update document_versions set content_stored_at = created_at;
`;
