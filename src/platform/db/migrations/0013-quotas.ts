/**
 * Quotas: limits per plan and per tenant, and the counters enforcement reserves against.
 *
 * `plan_quotas`: a plan's limit per quota type (`limit_value` null: unlimited). Replaces the
 * never-used `plans.quotas` jsonb, and `tenant_quota_overrides` replaces
 * `tenant_config.quota_overrides`: a row is an override (null again meaning unlimited), no row
 * means the plan's limit. Typed rows rather than jsonb, so a limit is a checked bigint.
 *
 * `quota_counters`: per tenant, quota type and period (`period_start`: the first instant of a
 * UTC calendar month for monthly quotas, the epoch for levels), what is used and what is
 * reserved by work in flight. Reservations are taken by one conditional upsert, so that
 * concurrent requests cannot together pass the limit.
 *
 * `quota_reservations`: each reservation, so that one a crash left behind expires (a schedule
 * gives its amount back) and a settle or release is done at most once.
 */
export const sql = `
alter table plans drop column quotas;
alter table tenant_config drop column quota_overrides;

create table plan_quotas (
  plan_id text not null references plans(id) on delete cascade,
  quota text not null check (quota in ('tokens', 'chat_messages', 'searches', 'documents', 'storage_bytes')),
  limit_value bigint check (limit_value >= 0),
  updated_at timestamptz not null default now(),
  primary key (plan_id, quota)
);

insert into plan_quotas (plan_id, quota, limit_value) values
  ('trial', 'tokens', 1000000),
  ('trial', 'chat_messages', 1000),
  ('trial', 'searches', 5000),
  ('trial', 'documents', 1000),
  ('trial', 'storage_bytes', 524288000),
  ('free', 'tokens', 200000),
  ('free', 'chat_messages', 200),
  ('free', 'searches', 1000),
  ('free', 'documents', 100),
  ('free', 'storage_bytes', 104857600),
  ('pro', 'tokens', 20000000),
  ('pro', 'chat_messages', 20000),
  ('pro', 'searches', 200000),
  ('pro', 'documents', 10000),
  ('pro', 'storage_bytes', 21474836480),
  ('enterprise', 'tokens', 500000000),
  ('enterprise', 'chat_messages', 1000000),
  ('enterprise', 'searches', 5000000),
  ('enterprise', 'documents', 1000000),
  ('enterprise', 'storage_bytes', 1099511627776);

create table tenant_quota_overrides (
  tenant_id uuid not null references tenants(id) on delete cascade,
  quota text not null check (quota in ('tokens', 'chat_messages', 'searches', 'documents', 'storage_bytes')),
  limit_value bigint check (limit_value >= 0),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, quota)
);

create table quota_counters (
  tenant_id uuid not null references tenants(id) on delete cascade,
  quota text not null check (quota in ('tokens', 'chat_messages', 'searches', 'documents', 'storage_bytes')),
  period_start timestamptz not null,
  used bigint not null default 0 check (used >= 0),
  reserved bigint not null default 0 check (reserved >= 0),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, quota, period_start)
);

create table quota_reservations (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  quota text not null check (quota in ('tokens', 'chat_messages', 'searches', 'documents', 'storage_bytes')),
  period_start timestamptz not null,
  amount bigint not null check (amount >= 0),
  state text not null default 'reserved' check (state in ('reserved', 'settled', 'released', 'expired')),
  settled_amount bigint,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  finished_at timestamptz
);
create index quota_reservations_expiry_idx on quota_reservations (expires_at) where state = 'reserved';
create index quota_reservations_finished_idx on quota_reservations (finished_at) where state <> 'reserved';
`;
