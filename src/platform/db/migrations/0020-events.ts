/**
 * The analytics events feed (seed 003): one row per business fact of a tenant (a conversation
 * started, a document ingested, a quota refused), written by the server only, in the
 * transaction of the fact it describes (src/modules/events).
 *
 * Departures from seed 003's sketch: `id` is a uuid (a job derives its events' ids from its own
 * id, so that a retried job inserts nothing new: `on conflict do nothing`); `data` is never
 * null (an event without data is `{}`); `session_id` (a widget session, seed 003's `sessionId`)
 * and `user_id` (the user who acted, when one did: the seed's open question) are columns of
 * their own so that per-session and per-user analytics need no jsonb extraction; `created_at`
 * is set by the application's clock (the default covers rows written by hand).
 *
 * Indexes: (tenant_id, name, created_at desc) for the analytics' time series of one name;
 * (tenant_id, created_at desc, id desc) for the feed, newest first with keyset pages;
 * (created_at) for retention, which deletes across tenants by age.
 *
 * No row-level security (seed 003 §6): the application is the only client of the database,
 * and no route inserts an event.
 */
export const sql = `
create table events (
  id uuid primary key,
  tenant_id uuid not null references tenants(id) on delete cascade,
  name text not null,
  data jsonb not null default '{}'::jsonb,
  session_id text,
  user_id uuid,
  created_at timestamptz not null default now()
);
create index events_tenant_name_time_idx on events (tenant_id, name, created_at desc);
create index events_tenant_time_idx on events (tenant_id, created_at desc, id desc);
create index events_time_idx on events (created_at);
`;
