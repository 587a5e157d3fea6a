/**
 * Alerts and their per-tenant thresholds.
 *
 * `alerts`: one row per condition a tenant should hear about (quota at 80 % / 100 %, error
 * rate, cost, runaway usage, a reconciliation difference). `dedupe_key` names the condition
 * and its period (`quota_100:tokens:2026-12`, `error_rate:2026-12-02T04`); the unique
 * (tenant_id, dedupe_key) makes raising an `insert … on conflict do nothing`, so any number of
 * concurrent evaluators raise it once. The row is the source outbound deliveries (webhooks,
 * the integrations issue) will read: it is written once and changes only by its
 * acknowledgement (`acked_at`, `acked_by`, the actor by id as jsonb).
 *
 * `alert_settings`: a tenant's thresholds (jsonb, validated by the alerts module); absent keys
 * take the documented defaults (src/modules/alerts/thresholds.ts).
 */
export const sql = `
create table alerts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  kind text not null check (kind in (
    'quota_80', 'quota_100', 'error_rate', 'cost_threshold', 'runaway_usage',
    'reconciliation_mismatch'
  )),
  severity text not null check (severity in ('info', 'warning', 'critical')),
  dedupe_key text not null,
  message text not null,
  details jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  acked_at timestamptz,
  acked_by jsonb,
  unique (tenant_id, dedupe_key)
);
create index alerts_tenant_created_idx on alerts (tenant_id, created_at desc, id desc);
create index alerts_created_idx on alerts (created_at desc, id desc);

create table alert_settings (
  tenant_id uuid primary key references tenants(id) on delete cascade,
  thresholds jsonb not null default '{}'::jsonb,
  updated_at timestamptz not null default now()
);
`;
