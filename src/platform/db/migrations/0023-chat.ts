/**
 * The chat module's tables (modules/chat).
 *
 * `chat_sessions`: one conversation of a tenant's visitor. Its id is the caller's session id
 * when that is a UUID, else a UUIDv5 of it in the tenant's namespace (modules/chat/ids.ts), so
 * two tenants may hold the same id: the key is (tenant_id, id). `external_id` keeps the string
 * the caller sent (null when the service made the id); `user_id` / `external_user_id` the same
 * for the visitor. `message_count` is the last message's `seq`: a turn locks the session row,
 * numbers its two messages after it and moves it, so concurrent turns of one session are
 * stored one after the other. `summary`, `key_points`, `summarized_at` are for session
 * summaries (filled later).
 *
 * `chat_messages`: the turns' messages, ordered by `seq` within the session. `citations` are
 * the citation objects the answer gave (the same ones the API returned); tokens, cost, model,
 * latency and status describe the generation of an assistant message (null for the others).
 * They go with their session (the usage ledger keeps the billable facts, which hold no content).
 *
 * `chat_settings`: the tenant's assistant settings (system prompt, retrieval depth, minimum
 * score, confidence threshold, history budget), jsonb validated by the chat module.
 *
 * Prices: the offline `extractive` answerer and the chat message count are the platform's
 * own work, priced 0 until the operator prices them.
 */
export const sql = `
create table chat_sessions (
  tenant_id uuid not null references tenants(id) on delete cascade,
  id uuid not null,
  external_id text,
  user_id uuid,
  external_user_id text,
  metadata jsonb not null default '{}'::jsonb,
  message_count integer not null default 0,
  last_message_at timestamptz,
  summary text,
  key_points jsonb,
  summarized_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index chat_sessions_page_idx on chat_sessions (tenant_id, created_at desc, id desc);
create index chat_sessions_user_idx on chat_sessions (tenant_id, user_id, created_at desc) where user_id is not null;

create table chat_messages (
  id uuid primary key,
  tenant_id uuid not null,
  session_id uuid not null,
  seq integer not null,
  role text not null check (role in ('user', 'assistant', 'agent')),
  content text not null,
  citations jsonb not null default '[]'::jsonb,
  confidence double precision,
  prompt_tokens integer,
  completion_tokens integer,
  cost_usd numeric(20, 10),
  provider text,
  model text,
  latency_ms integer,
  status text not null default 'complete' check (status in ('complete', 'incomplete', 'failed')),
  created_at timestamptz not null default now(),
  foreign key (tenant_id, session_id) references chat_sessions (tenant_id, id) on delete cascade,
  unique (tenant_id, session_id, seq)
);

create table chat_settings (
  tenant_id uuid primary key references tenants(id) on delete cascade,
  settings jsonb not null default '{}'::jsonb,
  updated_at timestamptz not null default now()
);

insert into prices (provider, model, unit, usd_per_unit, effective_from, note) values
  ('tenantrag', 'extractive', 'input_token', 0, '2000-01-01T00:00:00Z', 'the offline answerer runs on the operator''s machines'),
  ('tenantrag', 'extractive', 'output_token', 0, '2000-01-01T00:00:00Z', 'the offline answerer runs on the operator''s machines'),
  ('tenantrag', 'chat', 'call', 0, '2000-01-01T00:00:00Z', 'chat messages are free unless the operator prices them');
`;
