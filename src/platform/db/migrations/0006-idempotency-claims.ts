/**
 * An Idempotency-Key is claimed before its request runs, so that a concurrent retry with the
 * same key waits (409) instead of running a second time. A claimed row has no answer yet; a
 * claim whose holder died is taken over once `claimed_until` has passed.
 */
export const sql = `
alter table idempotency_keys
  alter column status_code drop not null,
  alter column response drop not null,
  add column claimed_until timestamptz,
  add constraint idempotency_keys_answer_or_claim
    check ((status_code is null) = (response is null)
      and (status_code is not null or claimed_until is not null));
`;
