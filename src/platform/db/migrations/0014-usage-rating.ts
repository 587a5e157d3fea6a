/**
 * Costs from the ledger, and re-rating runs.
 *
 * `documents.embedding_cost_usd` gets the ledger's scale (10 decimals; it had 6, which rounds a
 * short document's cost to 0), and each version keeps its own cost: the cost the ledger holds
 * for the version's `embedding_tokens` event, written in the transaction that records it and
 * rewritten by a re-rating run.
 *
 * `rerate_runs`: one row per re-rating (POST /api/admin/usage/rerate): who ran it, the window
 * [window_from, window_to) and filters, how many events changed, the old and new totals per
 * tenant (`totals`: [{ tenantId, events, changed, oldCostUsd, newCostUsd }], money as decimal
 * strings) and the hour windows whose roll-ups it invalidated (`windows`: [{ tenantId, hours }]).
 */
export const sql = `
alter table documents alter column embedding_cost_usd type numeric(20, 10);
alter table document_versions add column embedding_cost_usd numeric(20, 10) not null default 0;

create table rerate_runs (
  id uuid primary key default gen_random_uuid(),
  created_by uuid references users(id) on delete set null,
  created_at timestamptz not null default now(),
  window_from timestamptz not null,
  window_to timestamptz not null,
  provider text,
  model text,
  events_matched integer not null,
  events_changed integer not null,
  old_cost_usd numeric(24, 10) not null,
  new_cost_usd numeric(24, 10) not null,
  totals jsonb not null,
  windows jsonb not null,
  check (window_from < window_to)
);
create index rerate_runs_created_idx on rerate_runs (created_at, id);
`;
