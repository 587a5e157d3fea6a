/**
 * The record of every background job, whichever queue adapter runs it; the embedded queue also
 * claims its work from this table.
 */
export const sql = `
create table jobs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  type text not null,
  payload jsonb not null,
  status text not null default 'queued'
    check (status in ('queued', 'running', 'completed', 'failed', 'dead')),
  priority integer not null default 0 check (priority between -100 and 100),
  attempts integer not null default 0,
  max_attempts integer not null default 3 check (max_attempts >= 1),
  run_at timestamptz not null default now(),
  locked_by text,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now()
);

-- The claim takes the first ready row in (priority desc, run_at, created_at) order. A partial
-- index in exactly that order lets it stop at the first row whose run_at has come, and stays
-- small: finished jobs, the bulk of the table, are not in it.
create index jobs_claim_idx on jobs (priority desc, run_at, created_at) where status = 'queued';
-- The sweep looks for running jobs whose lease has expired.
create index jobs_lease_idx on jobs (locked_until) where status = 'running';
create index jobs_tenant_idx on jobs (tenant_id, created_at desc);
`;
