/**
 * A document submitted without an externalId or a source URL is found again by its content
 * (a second submission of the same text is a duplicate, not a second document): the lookup
 * goes by the tenant and the content hash of live versions.
 */
export const sql = `
create index document_versions_tenant_hash_idx on document_versions (tenant_id, content_hash)
  where content_hash is not null;
`;
