/**
 * Fair scheduling of jobs across tenants.
 *
 * `job_tenant_turns`: when the embedded queue last claimed a job of each tenant (`tenant_key`
 * is the tenant id, or the nil UUID for platform jobs). The claim serves the ready tenant whose
 * turn is oldest, so one tenant's backlog cannot hold back another's job. No foreign key: the
 * nil key is no tenant, and a deleted tenant's row is only a stale timestamp.
 *
 * `jobs_fair_idx`: the queued rows by tenant in claim order, for the claim's skip scan over
 * the tenants that have queued jobs and its look-up of each one's next job.
 *
 * `jobs_unrelayed_tenant_idx` and `jobs_inflight_idx`: the BullMQ adapter's relay hands each
 * tenant's rows to Redis oldest first, and no more of them than its window allows (rows handed
 * over and not yet finished).
 */
export const sql = `
create table job_tenant_turns (
  tenant_key uuid primary key,
  last_claimed_at timestamptz not null
);
create index jobs_fair_idx on jobs
  ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), priority desc, run_at, created_at)
  where status = 'queued';
create index jobs_unrelayed_tenant_idx on jobs
  ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), priority desc, created_at)
  where status = 'queued' and relayed_at is null;
create index jobs_inflight_idx on jobs
  ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)))
  where status in ('queued', 'running') and relayed_at is not null;
`;
