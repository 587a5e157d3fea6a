/**
 * Documents and their versions. A document is what a tenant knows by one identity (its
 * externalId, its source URL, or its id); each distinct content is a version. Exactly one
 * version is active once processing has succeeded; search shows only active versions.
 */
export const sql = `
create table documents (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  external_id text,
  title text not null,
  doc_type text not null,
  source_url text,
  metadata jsonb not null default '{}'::jsonb,
  status text not null default 'processing' check (status in ('processing', 'completed', 'failed')),
  error_code text,
  error_message text,
  active_version integer,
  latest_version integer not null default 0,
  content_hash text,
  blob_key text,
  file_size_bytes bigint,
  page_count integer,
  chunk_count integer not null default 0,
  character_count integer not null default 0,
  embedding_tokens bigint not null default 0,
  embedding_cost_usd numeric(14, 6) not null default 0,
  processing_time_ms integer,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index documents_external_id_key on documents (tenant_id, external_id) where external_id is not null;
create index documents_tenant_created_idx on documents (tenant_id, created_at desc, id desc);
create index documents_tenant_status_idx on documents (tenant_id, status);
create index documents_source_url_idx on documents (tenant_id, source_url) where source_url is not null;

create table document_versions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  document_id uuid not null references documents(id) on delete cascade,
  version integer not null,
  content_hash text,
  blob_key text,
  content_type text not null,
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'active', 'superseded', 'duplicate', 'failed')),
  is_active boolean not null default false,
  job_id uuid,
  chunk_count integer not null default 0,
  character_count integer not null default 0,
  page_count integer,
  embedding_tokens bigint not null default 0,
  embedding_model text,
  error_code text,
  error_message text,
  created_at timestamptz not null default now(),
  activated_at timestamptz,
  constraint document_versions_version_key unique (document_id, version)
);
create unique index document_versions_one_active on document_versions (document_id) where is_active;
create index document_versions_hash_idx on document_versions (document_id, content_hash);

-- A retried request with the same Idempotency-Key gets the first answer, not a second effect.
create table idempotency_keys (
  tenant_id uuid not null references tenants(id) on delete cascade,
  key text not null,
  route text not null,
  request_hash text not null,
  status_code integer not null,
  response jsonb not null,
  created_at timestamptz not null default now(),
  primary key (tenant_id, key)
);
`;
