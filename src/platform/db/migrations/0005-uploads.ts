/**
 * Direct uploads: a client asks for a presigned URL, PUTs the file to object storage, then
 * completes the upload, which ingests the object. The row records what was announced (type,
 * size) so that completion checks the object against it, and the answer of the completion so
 * that a retried completion gets the same answer instead of a second document.
 */
export const sql = `
create table uploads (
  id uuid primary key,
  tenant_id uuid not null references tenants(id) on delete cascade,
  blob_key text not null,
  filename text not null,
  title text not null,
  doc_type text not null,
  content_type text not null,
  size_bytes bigint not null,
  external_id text,
  status text not null default 'pending' check (status in ('pending', 'completing', 'completed')),
  -- A completion holds the upload until then; one interrupted by a crash can be retried after it.
  claimed_until timestamptz,
  result jsonb,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  completed_at timestamptz
);
create index uploads_tenant_created_idx on uploads (tenant_id, created_at desc);
`;
