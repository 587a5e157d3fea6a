/**
 * Transactional enqueue and scheduled jobs.
 *
 * `jobs.relayed_at`: when the BullMQ adapter handed the job to Redis. A job is written in its
 * caller's transaction and handed over only after the commit; a row still queued without it
 * is one whose process died in between, and the relay hands it over. Rows from before have
 * none: the relay re-adds those still queued, which BullMQ ignores for the ones it holds.
 *
 * `jobs.tenant_id` may be null: a platform job (crash repair, sweeps) acts for no tenant, and
 * no tenant's status API can see it.
 *
 * `job_schedules`: the repeatable jobs of the embedded queue, one row per schedule. A worker
 * claims due rows with FOR UPDATE SKIP LOCKED and, in the same transaction, enqueues the run
 * and moves `next_run_at` on, so each due time runs once across all workers.
 */
export const sql = `
alter table jobs add column relayed_at timestamptz;
alter table jobs alter column tenant_id drop not null;
create index jobs_unrelayed_idx on jobs (created_at) where status = 'queued' and relayed_at is null;

create table job_schedules (
  key text primary key,
  type text not null,
  payload jsonb not null,
  cron text,
  every_ms integer check (every_ms > 0),
  next_run_at timestamptz not null,
  last_run_at timestamptz,
  updated_at timestamptz not null default now(),
  check ((cron is null) <> (every_ms is null))
);
create index job_schedules_due_idx on job_schedules (next_run_at);
`;
