/**
 * The client addresses each API key has been used from (`api_key_addresses`): one row per
 * (key, address), written the first time the key authenticates from that address, which is
 * also when the `api_key.new_ip` audit row is written, in the same transaction.
 *
 * The primary key makes the write an `insert … on conflict do nothing`: of two requests that
 * use a key from a new address at once, one inserts (and records), the other waits for it on
 * the key's index entry and then inserts nothing. `ip` is text, exactly as the request
 * reported it (like `audit_events.ip_address`), so the two compare as strings.
 *
 * `tenant_id` is the key's, for the tenant's own queries and so that the rows go with the
 * tenant; the rows go with their key too.
 */
export const sql = `
create table api_key_addresses (
  key_id uuid not null references api_keys(id) on delete cascade,
  ip text not null,
  tenant_id uuid not null references tenants(id) on delete cascade,
  first_seen_at timestamptz not null default now(),
  primary key (key_id, ip)
);
create index api_key_addresses_tenant_idx on api_key_addresses (tenant_id, first_seen_at desc);
`;
