/**
 * What each API key may do (`ingest`, `read`, `chat`, `admin`; see src/tenancy.ts). Keys made
 * before scopes existed acted as tenant admins; they get the default scopes of a new key
 * (`ingest`, `read`), not `admin`: a leaked ingestion key must not manage users or keys. A
 * tenant that needs an admin key creates one. The column has no default afterwards, so that
 * every insert says what it grants.
 */
export const sql = `
alter table api_keys add column scopes text[] not null default array['ingest', 'read'];
alter table api_keys alter column scopes drop default;
alter table api_keys add constraint api_keys_scopes_valid
  check (cardinality(scopes) > 0 and scopes <@ array['ingest', 'read', 'chat', 'admin']);
`;
