/**
 * The usage ledger: the price book, billable usage events and raw API-call telemetry.
 *
 * `prices`: USD per unit of a provider's model, in force from `effective_from` until the next
 * row of the same (provider, model, unit). `model = '*'` prices every model of the provider
 * that has no row of its own (local models cost 0). A correction is a new row, never an edit:
 * re-rating recomputes past events at the price in force at their time.
 *
 * `usage_events`: one row per billable fact, written in the transaction of the business write
 * it describes. The id is derived from (tenant, metric, subject type, subject id), so the
 * primary key is the dedupe: a retried job or request cannot record a fact twice, with no
 * time window. `cost_usd` is `quantity × usd_per_unit` of `price_id` (null: no price matched,
 * cost 0, listed by reconciliation). Gauges (documents stored, storage bytes) are snapshots:
 * their quantity is the level at `occurred_at`, and they are not summed.
 *
 * `api_calls`: one row per API call of a known tenant, written through the telemetry buffer
 * after the response. No foreign key (written at volume; swept by retention); the id is made
 * when the call ends, so a batch retried after a failed commit inserts each row once.
 */
export const sql = `
create table prices (
  id uuid primary key default gen_random_uuid(),
  provider text not null,
  model text not null,
  unit text not null check (unit in ('input_token', 'output_token', 'call', 'byte', 'document')),
  usd_per_unit numeric(24, 15) not null check (usd_per_unit >= 0),
  effective_from timestamptz not null,
  note text,
  created_by uuid references users(id) on delete set null,
  created_at timestamptz not null default now(),
  unique (provider, model, unit, effective_from)
);

insert into prices (provider, model, unit, usd_per_unit, effective_from, note) values
  ('openai', 'text-embedding-3-small', 'input_token', 0.00000002, '2024-01-01T00:00:00Z', 'public price, $0.02 per 1M tokens'),
  ('openai', 'text-embedding-3-large', 'input_token', 0.00000013, '2024-01-01T00:00:00Z', 'public price, $0.13 per 1M tokens'),
  ('openai', 'text-embedding-ada-002', 'input_token', 0.0000001, '2024-01-01T00:00:00Z', 'public price, $0.10 per 1M tokens'),
  ('openai', 'gpt-4o-mini', 'input_token', 0.00000015, '2024-07-18T00:00:00Z', 'public price, $0.15 per 1M input tokens'),
  ('openai', 'gpt-4o-mini', 'output_token', 0.0000006, '2024-07-18T00:00:00Z', 'public price, $0.60 per 1M output tokens'),
  ('openai', 'gpt-4o', 'input_token', 0.0000025, '2024-10-01T00:00:00Z', 'public price, $2.50 per 1M input tokens'),
  ('openai', 'gpt-4o', 'output_token', 0.00001, '2024-10-01T00:00:00Z', 'public price, $10 per 1M output tokens'),
  ('openai', 'gpt-4.1-mini', 'input_token', 0.0000004, '2025-04-14T00:00:00Z', 'public price, $0.40 per 1M input tokens'),
  ('openai', 'gpt-4.1-mini', 'output_token', 0.0000016, '2025-04-14T00:00:00Z', 'public price, $1.60 per 1M output tokens'),
  ('openai', 'gpt-4.1', 'input_token', 0.000002, '2025-04-14T00:00:00Z', 'public price, $2 per 1M input tokens'),
  ('openai', 'gpt-4.1', 'output_token', 0.000008, '2025-04-14T00:00:00Z', 'public price, $8 per 1M output tokens'),
  ('local', '*', 'input_token', 0, '2000-01-01T00:00:00Z', 'local models run on the operator''s machines'),
  ('local', '*', 'output_token', 0, '2000-01-01T00:00:00Z', 'local models run on the operator''s machines'),
  ('tenantrag', 'search', 'call', 0, '2000-01-01T00:00:00Z', 'searches are free unless the operator prices them'),
  ('tenantrag', 'storage', 'byte', 0, '2000-01-01T00:00:00Z', 'a snapshot, not billed per event'),
  ('tenantrag', 'storage', 'document', 0, '2000-01-01T00:00:00Z', 'a snapshot, not billed per event');

create table usage_events (
  id uuid primary key,
  tenant_id uuid not null references tenants(id) on delete cascade,
  metric text not null check (metric in (
    'embedding_tokens', 'search_queries', 'chat_input_tokens', 'chat_output_tokens',
    'chat_messages', 'documents_stored', 'storage_bytes'
  )),
  quantity bigint not null check (quantity >= 0),
  items integer not null default 1 check (items >= 0),
  unit text not null check (unit in ('input_token', 'output_token', 'call', 'byte', 'document')),
  provider text not null,
  model text not null,
  payer text not null check (payer in ('platform', 'tenant')),
  price_id uuid references prices(id),
  cost_usd numeric(20, 10) not null default 0,
  subject_type text not null,
  subject_id text not null,
  document_id uuid,
  actor_type text not null,
  actor_id text,
  request_id text,
  occurred_at timestamptz not null,
  recorded_at timestamptz not null default now(),
  rated_at timestamptz not null default now(),
  metadata jsonb not null default '{}'::jsonb
);
create index usage_events_tenant_time_idx on usage_events (tenant_id, occurred_at);
create index usage_events_time_idx on usage_events (occurred_at);
create index usage_events_document_idx on usage_events (tenant_id, document_id) where document_id is not null;
create index usage_events_rating_idx on usage_events (provider, model, occurred_at);

create table api_calls (
  id uuid primary key,
  tenant_id uuid not null,
  occurred_at timestamptz not null,
  request_id text not null,
  method text not null,
  route text not null,
  route_group text not null,
  status integer not null,
  error_code text,
  latency_ms double precision not null,
  bytes_in bigint not null,
  bytes_out bigint not null,
  actor_type text not null,
  actor_id text
);
create index api_calls_time_idx on api_calls (occurred_at);
create index api_calls_tenant_time_idx on api_calls (tenant_id, occurred_at);
`;
