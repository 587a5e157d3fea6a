/** Tenants, plans, per-tenant configuration, users, API keys and refresh-token sessions. */
export const sql = `
create table plans (
  id text primary key,
  name text not null,
  rate_limit_rpm integer not null,
  rate_limit_per_day integer not null,
  max_documents integer not null,
  max_file_size_mb integer not null,
  quotas jsonb not null default '{}'::jsonb,
  trial_days integer
);

insert into plans (id, name, rate_limit_rpm, rate_limit_per_day, max_documents, max_file_size_mb, trial_days) values
  ('trial', 'Trial', 60, 10000, 1000, 25, 14),
  ('free', 'Free', 30, 2000, 100, 10, null),
  ('pro', 'Pro', 600, 200000, 10000, 50, null),
  ('enterprise', 'Enterprise', 6000, 5000000, 1000000, 500, null);

create table tenants (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  status text not null default 'active' check (status in ('active', 'suspended', 'deleted')),
  plan_id text not null references plans(id),
  trial_ends_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table tenant_config (
  tenant_id uuid primary key references tenants(id) on delete cascade,
  rate_limit_rpm integer not null,
  rate_limit_per_day integer not null,
  max_documents integer not null,
  max_file_size_mb integer not null,
  allowed_document_types text[] not null default array['pdf', 'txt', 'html', 'md'],
  chunk_size integer not null default 1000,
  chunk_overlap integer not null default 200,
  chunk_strategy text not null default 'recursive',
  embedding_provider text not null default 'local',
  embedding_model text,
  provider_api_key_enc bytea,
  provider_api_key_last4 text,
  quota_overrides jsonb not null default '{}'::jsonb,
  updated_at timestamptz not null default now(),
  check (chunk_overlap < chunk_size)
);

-- Platform admins belong to no tenant; everybody else belongs to exactly one.
create table users (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid references tenants(id) on delete cascade,
  email text not null,
  password_hash text not null,
  role text not null check (role in ('owner', 'admin', 'member', 'platform_admin')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_login_at timestamptz,
  constraint users_email_key unique (email),
  check ((role = 'platform_admin') = (tenant_id is null))
);
create index users_tenant_idx on users (tenant_id);

create table api_keys (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  name text not null,
  prefix text not null,
  key_hash text not null unique,
  created_by uuid references users(id) on delete set null,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
create index api_keys_tenant_idx on api_keys (tenant_id, created_at desc);

-- A session is one login: its refresh tokens form a rotation family, and access tokens carry
-- its id, so revoking the session ends both at once.
create table auth_sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references users(id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revoked_reason text
);
create index auth_sessions_user_idx on auth_sessions (user_id);

create table refresh_tokens (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references auth_sessions(id) on delete cascade,
  token_hash text not null unique,
  created_at timestamptz not null default now(),
  used_at timestamptz
);
create index refresh_tokens_session_idx on refresh_tokens (session_id);
`;
