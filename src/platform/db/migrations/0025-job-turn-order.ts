/**
 * The fair claim's turns in claim order rather than by the clock.
 *
 * `job_tenant_turns.turn` is drawn from a sequence at each claim, and the claim serves the
 * ready tenant with the lowest turn (none first). Before, the turn was `clock_timestamp()`, so
 * a wall clock stepped back (seen on loaded virtual machines) left the tenant claimed before
 * the step with the newest-looking turn, and it waited behind another tenant's whole backlog
 * for as long as the step. `last_claimed_at` stays as information.
 */
export const sql = `
create sequence job_tenant_turn_seq;
alter table job_tenant_turns add column turn bigint;
with ordered as (
  select tenant_key, row_number() over (order by last_claimed_at, tenant_key) as n
  from job_tenant_turns
)
update job_tenant_turns t set turn = ordered.n from ordered where ordered.tenant_key = t.tenant_key;
select setval('job_tenant_turn_seq', coalesce((select max(turn) from job_tenant_turns), 0) + 1, false);
alter table job_tenant_turns alter column turn set not null;
`;
