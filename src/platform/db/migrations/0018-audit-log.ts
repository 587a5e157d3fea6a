/**
 * The tamper-evident audit log (seed 000 §3).
 *
 * `audit_events`: one row per audited action, append-only. Seed 000's columns, with these
 * departures: `id` is a UUIDv7 (time-ordered) set by the application; `tenant_id` is null for
 * the platform's own chain and has **no foreign key** (the trail outlives its tenant, and a
 * cascade would be a delete); `entity_id` is text (a composite thing has a natural key);
 * `ip_address` is text, exactly as received, so that the stored value is the hashed one;
 * `created_at` (seed's `timestamp`) is set by the application's clock in milliseconds. Added:
 * `chain_id` (the tenant id, or the nil uuid for the platform chain), `seq` (1, 2, … per chain),
 * `caused_by` (a job's cause), `prev_hash` and `hash` (SHA-256 over the row's canonical content
 * and the previous row's hash; src/modules/audit/canonical.ts).
 *
 * `audit_chains`: one head row per chain (its last seq and hash), upserted by every append so
 * that concurrent writers of one chain take turns on its row lock and never fork it.
 *
 * `audit_digests`: per chain and hour, the chain's head signed with the deployment's Ed25519
 * key and chained to the previous digest. Append-only too.
 *
 * Append-only: BEFORE UPDATE OR DELETE row triggers and BEFORE TRUNCATE statement triggers
 * raise on `audit_events` and `audit_digests`. The one exception is the retention job: it sets
 * the transaction-local `tenantrag.audit_retention_cutoff` and may then delete rows of
 * `audit_events` created before that cutoff, and no others (`retention` in
 * src/modules/audit/audit.trail.ts).
 */
export const sql = `
create table audit_events (
  id uuid primary key,
  tenant_id uuid,
  chain_id uuid not null,
  seq bigint not null check (seq >= 1),
  event_type text not null,
  entity_type text not null,
  entity_id text,
  action text not null check (action in ('create', 'update', 'delete', 'access', 'failure')),
  actor_type text not null check (actor_type in (
    'user', 'api_key', 'widget_visitor', 'platform_admin', 'system', 'anonymous'
  )),
  actor_id text,
  caused_by jsonb,
  old_values jsonb,
  new_values jsonb,
  changes_summary text,
  result text not null check (result in ('success', 'failure', 'partial')),
  error_message text,
  ip_address text,
  user_agent text,
  request_id text,
  created_at timestamptz not null,
  prev_hash text not null,
  hash text not null,
  check (chain_id = coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)),
  unique (chain_id, seq)
);
create index audit_events_chain_time_idx on audit_events (chain_id, created_at desc, id desc);
create index audit_events_type_time_idx on audit_events (chain_id, event_type, created_at desc);
create index audit_events_entity_idx on audit_events (chain_id, entity_type, entity_id);
create index audit_events_failures_idx on audit_events (chain_id, created_at desc)
  where result = 'failure';

create table audit_chains (
  chain_id uuid primary key,
  seq bigint not null,
  hash text not null
);

create table audit_digests (
  id uuid primary key,
  chain_id uuid not null,
  tenant_id uuid,
  period_start timestamptz not null,
  period_end timestamptz not null,
  last_event_id uuid not null,
  last_seq bigint not null,
  last_hash text not null,
  row_count bigint not null,
  prev_digest_hash text,
  key_id text not null,
  created_at timestamptz not null,
  hash text not null,
  signature text not null,
  unique (chain_id, period_start)
);
create index audit_digests_chain_seq_idx on audit_digests (chain_id, last_seq desc);

create function audit_refuse_change() returns trigger language plpgsql as $$
declare
  cutoff text;
begin
  if tg_op = 'DELETE' and tg_table_name = 'audit_events' then
    cutoff := current_setting('tenantrag.audit_retention_cutoff', true);
    if cutoff is not null and cutoff <> '' and old.created_at < cutoff::timestamptz then
      return old;
    end if;
  end if;
  raise exception '% is append-only: % refused', tg_table_name, tg_op
    using errcode = 'P0001', hint = 'audit rows are removed only by the audit retention job';
end;
$$;

create trigger audit_events_append_only before update or delete on audit_events
  for each row execute function audit_refuse_change();
create trigger audit_events_no_truncate before truncate on audit_events
  for each statement execute function audit_refuse_change();
create trigger audit_digests_append_only before update or delete on audit_digests
  for each row execute function audit_refuse_change();
create trigger audit_digests_no_truncate before truncate on audit_digests
  for each statement execute function audit_refuse_change();
`;
