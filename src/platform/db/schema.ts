import type { ColumnType, Selectable, Updateable } from "kysely";

/**
 * Every table and column the migrations create, declared once, by hand. The Kysely `Database`
 * type is derived from this object, and test/contract/schema-drift.test.ts compares it with
 * `information_schema` of a freshly migrated PGlite and PostgreSQL, both ways: a column that a
 * migration adds, drops or changes without a matching change here fails CI.
 *
 * A column is `"<pg type>[ null][ default]"`: `null` when it is nullable, `default` when the
 * database fills it in (a default, or a generated value) so that an insert may omit it. A
 * text column restricted by a check constraint may name its values with `oneOf` (checked
 * only by that constraint; the drift test sees `text`).
 *
 * Adding a table (a new migration): add an entry below with the table's columns in migration
 * order, with the types of PG_TYPES (add one there, and to `Types` below, if a migration needs it).
 * Keep it beside the migration's number, as the comments below do.
 */

/** The column types in use, and the `information_schema.columns.udt_name` of each. */
export const PG_TYPES = {
  uuid: "uuid",
  text: "text",
  integer: "int4",
  bigint: "int8",
  numeric: "numeric",
  double: "float8",
  boolean: "bool",
  timestamptz: "timestamptz",
  jsonb: "jsonb",
  bytea: "bytea",
  "text[]": "_text",
} as const;

export type PgType = keyof typeof PG_TYPES;
type Modifiers = "" | " null" | " default" | " null default";
export type ColumnSpec = `${PgType}${Modifiers}`;

/** A text column limited to `values` by a check constraint. */
export interface OneOf<S extends ColumnSpec, V extends string> {
  spec: S;
  values: readonly V[];
}

export function oneOf<S extends ColumnSpec, const V extends string>(
  spec: S,
  values: readonly V[],
): OneOf<S, V> {
  return { spec, values };
}

type Column = ColumnSpec | OneOf<ColumnSpec, string>;

/** The quota types of migration 0013's check constraints (modules/quotas names them too). */
const QUOTA_TYPE_VALUES = [
  "tokens",
  "chat_messages",
  "searches",
  "documents",
  "storage_bytes",
] as const;

export const schema = {
  schema_migrations: {
    version: "integer",
    name: "text",
    applied_at: "timestamptz default",
  },

  // 0001 tenants and auth
  plans: {
    id: "text",
    name: "text",
    rate_limit_rpm: "integer",
    rate_limit_per_day: "integer",
    max_documents: "integer",
    max_file_size_mb: "integer",
    trial_days: "integer null",
  },
  tenants: {
    id: "uuid default",
    name: "text",
    status: oneOf("text default", ["active", "suspended", "deleted"]),
    plan_id: "text",
    trial_ends_at: "timestamptz null",
    created_at: "timestamptz default",
    updated_at: "timestamptz default",
  },
  tenant_config: {
    tenant_id: "uuid",
    rate_limit_rpm: "integer",
    rate_limit_per_day: "integer",
    max_documents: "integer",
    max_file_size_mb: "integer",
    allowed_document_types: "text[] default",
    chunk_size: "integer default",
    chunk_overlap: "integer default",
    chunk_strategy: "text default",
    embedding_provider: "text default",
    embedding_model: "text null",
    provider_api_key_enc: "bytea null",
    provider_api_key_last4: "text null",
    updated_at: "timestamptz default",
    // 0021 hybrid-search settings (null: the default for the tenant's embedder)
    search_fusion: oneOf("text null", ["rrf", "weighted"]),
    search_text_weight: "double null",
  },
  users: {
    id: "uuid default",
    tenant_id: "uuid null",
    email: "text",
    password_hash: "text",
    role: oneOf("text", ["owner", "admin", "member", "platform_admin"]),
    created_at: "timestamptz default",
    updated_at: "timestamptz default",
    last_login_at: "timestamptz null",
  },
  api_keys: {
    id: "uuid default",
    tenant_id: "uuid",
    name: "text",
    prefix: "text",
    key_hash: "text",
    created_by: "uuid null",
    created_at: "timestamptz default",
    last_used_at: "timestamptz null",
    revoked_at: "timestamptz null",
    // 0008
    scopes: oneOf("text[]", ["ingest", "read", "chat", "admin"]),
  },
  auth_sessions: {
    id: "uuid default",
    user_id: "uuid",
    created_at: "timestamptz default",
    expires_at: "timestamptz",
    revoked_at: "timestamptz null",
    revoked_reason: "text null",
  },
  refresh_tokens: {
    id: "uuid default",
    session_id: "uuid",
    token_hash: "text",
    created_at: "timestamptz default",
    used_at: "timestamptz null",
  },

  // 0002 jobs
  jobs: {
    id: "uuid default",
    // null since 0011: a platform job acts for no tenant.
    tenant_id: "uuid null",
    type: "text",
    payload: "jsonb",
    status: oneOf("text default", ["queued", "running", "completed", "failed", "dead"]),
    priority: "integer default",
    attempts: "integer default",
    max_attempts: "integer default",
    run_at: "timestamptz default",
    locked_by: "text null",
    locked_until: "timestamptz null",
    last_error: "text null",
    created_at: "timestamptz default",
    started_at: "timestamptz null",
    finished_at: "timestamptz null",
    updated_at: "timestamptz default",
    // 0011
    relayed_at: "timestamptz null",
  },

  // 0003 documents
  documents: {
    id: "uuid default",
    tenant_id: "uuid",
    external_id: "text null",
    title: "text",
    doc_type: "text",
    source_url: "text null",
    metadata: "jsonb default",
    status: oneOf("text default", ["processing", "completed", "failed"]),
    error_code: "text null",
    error_message: "text null",
    active_version: "integer null",
    latest_version: "integer default",
    content_hash: "text null",
    blob_key: "text null",
    file_size_bytes: "bigint null",
    page_count: "integer null",
    chunk_count: "integer default",
    character_count: "integer default",
    embedding_tokens: "bigint default",
    embedding_cost_usd: "numeric default",
    processing_time_ms: "integer null",
    created_at: "timestamptz default",
    updated_at: "timestamptz default",
  },
  document_versions: {
    id: "uuid default",
    tenant_id: "uuid",
    document_id: "uuid",
    version: "integer",
    content_hash: "text null",
    blob_key: "text null",
    content_type: "text",
    status: oneOf("text default", [
      "pending",
      "processing",
      "active",
      "superseded",
      "duplicate",
      "failed",
    ]),
    is_active: "boolean default",
    job_id: "uuid null",
    chunk_count: "integer default",
    character_count: "integer default",
    page_count: "integer null",
    embedding_tokens: "bigint default",
    embedding_model: "text null",
    error_code: "text null",
    error_message: "text null",
    created_at: "timestamptz default",
    activated_at: "timestamptz null",
    // 0010
    content_stored_at: "timestamptz null",
    // 0014
    embedding_cost_usd: "numeric default",
  },
  idempotency_keys: {
    tenant_id: "uuid",
    key: "text",
    route: "text",
    request_hash: "text",
    // 0006: null while the key is claimed and its request runs
    status_code: "integer null",
    response: "jsonb null",
    created_at: "timestamptz default",
    claimed_until: "timestamptz null",
  },

  // 0004 knowledge
  knowledge_items: {
    id: "uuid default",
    tenant_id: "uuid",
    type: oneOf("text", ["faq", "menu_item", "policy"]),
    fields: "jsonb",
    document_id: "uuid null",
    created_at: "timestamptz default",
    updated_at: "timestamptz default",
    // 0007
    document_version: "integer null",
  },

  // 0005 uploads
  uploads: {
    id: "uuid",
    tenant_id: "uuid",
    blob_key: "text",
    filename: "text",
    title: "text",
    doc_type: "text",
    content_type: "text",
    size_bytes: "bigint",
    external_id: "text null",
    status: oneOf("text default", ["pending", "completing", "completed"]),
    claimed_until: "timestamptz null",
    result: "jsonb null",
    expires_at: "timestamptz",
    created_at: "timestamptz default",
    completed_at: "timestamptz null",
  },

  // 0011 job schedules (embedded queue)
  job_schedules: {
    key: "text",
    type: "text",
    payload: "jsonb",
    cron: "text null",
    every_ms: "integer null",
    next_run_at: "timestamptz",
    last_run_at: "timestamptz null",
    updated_at: "timestamptz default",
  },
  // 0022 the embedded queue's round-robin turn of each tenant (nil UUID: platform jobs)
  job_tenant_turns: {
    tenant_key: "uuid",
    last_claimed_at: "timestamptz",
    // 0025 the claim order, from job_tenant_turn_seq: the clock can step back
    turn: "bigint",
  },
  // 0024 each tenant's document figures (ingestion), kept by triggers on documents
  tenant_document_counts: {
    tenant_id: "uuid",
    documents: "bigint default",
    stored_bytes: "bigint default",
  },
  // 0012 usage ledger
  prices: {
    id: "uuid default",
    provider: "text",
    model: "text",
    unit: oneOf("text", ["input_token", "output_token", "call", "byte", "document"]),
    usd_per_unit: "numeric",
    effective_from: "timestamptz",
    note: "text null",
    created_by: "uuid null",
    created_at: "timestamptz default",
  },
  usage_events: {
    id: "uuid",
    tenant_id: "uuid",
    metric: oneOf("text", [
      "embedding_tokens",
      "search_queries",
      "chat_input_tokens",
      "chat_output_tokens",
      "chat_messages",
      "documents_stored",
      "storage_bytes",
    ]),
    quantity: "bigint",
    items: "integer default",
    unit: oneOf("text", ["input_token", "output_token", "call", "byte", "document"]),
    provider: "text",
    model: "text",
    payer: oneOf("text", ["platform", "tenant"]),
    price_id: "uuid null",
    cost_usd: "numeric default",
    subject_type: "text",
    subject_id: "text",
    document_id: "uuid null",
    actor_type: "text",
    actor_id: "text null",
    request_id: "text null",
    occurred_at: "timestamptz",
    recorded_at: "timestamptz default",
    rated_at: "timestamptz default",
    metadata: "jsonb default",
  },
  api_calls: {
    id: "uuid",
    tenant_id: "uuid",
    occurred_at: "timestamptz",
    request_id: "text",
    method: "text",
    route: "text",
    route_group: "text",
    status: "integer",
    error_code: "text null",
    latency_ms: "double",
    bytes_in: "bigint",
    bytes_out: "bigint",
    actor_type: "text",
    actor_id: "text null",
    // 0015
    recorded_at: "timestamptz default",
  },
  // 0015 usage roll-ups
  usage_rollups: {
    tenant_id: "uuid",
    period: oneOf("text", ["hour", "day", "month"]),
    period_start: "timestamptz",
    period_end: "timestamptz",
    api_calls_total: "bigint default",
    api_calls_successful: "bigint default",
    api_calls_failed: "bigint default",
    api_calls_rate_limited: "bigint default",
    quota_exceeded_count: "bigint default",
    error_count: "bigint default",
    error_rate: "double default",
    latency_count: "bigint default",
    latency_sum_ms: "double default",
    latency_avg_ms: "double default",
    latency_p95_ms: "double null",
    latency_p99_ms: "double null",
    latency_sketch: "bytea null",
    peak_qps: "integer default",
    bytes_in: "bigint default",
    bytes_out: "bigint default",
    embeddings_generated: "bigint default",
    embedding_tokens: "bigint default",
    searches: "bigint default",
    chat_messages: "bigint default",
    chat_input_tokens: "bigint default",
    chat_output_tokens: "bigint default",
    total_tokens: "bigint default",
    documents_ingested: "bigint default",
    documents_failed: "bigint default",
    documents_stored: "bigint null",
    storage_bytes: "bigint null",
    cost_usd: "numeric default",
    cost_platform_usd: "numeric default",
    cost_tenant_usd: "numeric default",
    quota_limit: "bigint null",
    quota_remaining: "bigint null",
    computed_at: "timestamptz default",
  },
  usage_rollup_watermarks: {
    name: "text",
    recorded_to: "timestamptz",
    updated_at: "timestamptz default",
  },
  // 0014 usage rating
  rerate_runs: {
    id: "uuid default",
    created_by: "uuid null",
    created_at: "timestamptz default",
    window_from: "timestamptz",
    window_to: "timestamptz",
    provider: "text null",
    model: "text null",
    events_matched: "integer",
    events_changed: "integer",
    old_cost_usd: "numeric",
    new_cost_usd: "numeric",
    totals: "jsonb",
    windows: "jsonb",
  },

  // 0016 alerts
  alerts: {
    id: "uuid default",
    tenant_id: "uuid",
    kind: oneOf("text", [
      "quota_80",
      "quota_100",
      "error_rate",
      "cost_threshold",
      "runaway_usage",
      "reconciliation_mismatch",
    ]),
    severity: oneOf("text", ["info", "warning", "critical"]),
    dedupe_key: "text",
    message: "text",
    details: "jsonb default",
    created_at: "timestamptz default",
    acked_at: "timestamptz null",
    acked_by: "jsonb null",
  },
  alert_settings: {
    tenant_id: "uuid",
    thresholds: "jsonb default",
    updated_at: "timestamptz default",
  },

  // 0019 the addresses each API key was used from (first use from each: an audit row)
  api_key_addresses: {
    key_id: "uuid",
    ip: "text",
    tenant_id: "uuid",
    first_seen_at: "timestamptz default",
  },

  // 0020 the analytics events feed (modules/events)
  events: {
    id: "uuid",
    tenant_id: "uuid",
    name: "text",
    data: "jsonb default",
    session_id: "text null",
    user_id: "uuid null",
    created_at: "timestamptz default",
  },

  // 0013 quotas (plans.quotas and tenant_config.quota_overrides dropped there)
  plan_quotas: {
    plan_id: "text",
    quota: oneOf("text", QUOTA_TYPE_VALUES),
    limit_value: "bigint null",
    updated_at: "timestamptz default",
  },
  tenant_quota_overrides: {
    tenant_id: "uuid",
    quota: oneOf("text", QUOTA_TYPE_VALUES),
    limit_value: "bigint null",
    updated_at: "timestamptz default",
  },
  quota_counters: {
    tenant_id: "uuid",
    quota: oneOf("text", QUOTA_TYPE_VALUES),
    period_start: "timestamptz",
    used: "bigint default",
    reserved: "bigint default",
    updated_at: "timestamptz default",
  },
  quota_reservations: {
    id: "uuid default",
    tenant_id: "uuid",
    quota: oneOf("text", QUOTA_TYPE_VALUES),
    period_start: "timestamptz",
    amount: "bigint",
    state: oneOf("text default", ["reserved", "settled", "released", "expired"]),
    settled_amount: "bigint null",
    expires_at: "timestamptz",
    created_at: "timestamptz default",
    finished_at: "timestamptz null",
  },

  // 0018 audit log (append-only: triggers refuse UPDATE, DELETE and TRUNCATE)
  audit_events: {
    id: "uuid",
    tenant_id: "uuid null",
    chain_id: "uuid",
    seq: "bigint",
    event_type: "text",
    entity_type: "text",
    entity_id: "text null",
    action: oneOf("text", ["create", "update", "delete", "access", "failure"]),
    actor_type: oneOf("text", [
      "user",
      "api_key",
      "widget_visitor",
      "platform_admin",
      "system",
      "anonymous",
    ]),
    actor_id: "text null",
    caused_by: "jsonb null",
    old_values: "jsonb null",
    new_values: "jsonb null",
    changes_summary: "text null",
    result: oneOf("text", ["success", "failure", "partial"]),
    error_message: "text null",
    ip_address: "text null",
    user_agent: "text null",
    request_id: "text null",
    created_at: "timestamptz",
    prev_hash: "text",
    hash: "text",
  },
  audit_chains: {
    chain_id: "uuid",
    seq: "bigint",
    hash: "text",
  },
  audit_digests: {
    id: "uuid",
    chain_id: "uuid",
    tenant_id: "uuid null",
    period_start: "timestamptz",
    period_end: "timestamptz",
    last_event_id: "uuid",
    last_seq: "bigint",
    last_hash: "text",
    row_count: "bigint",
    prev_digest_hash: "text null",
    key_id: "text",
    created_at: "timestamptz",
    hash: "text",
    signature: "text",
  },
  // 0023 chat (modules/chat): sessions keyed by (tenant, id), their messages, the settings
  chat_sessions: {
    tenant_id: "uuid",
    id: "uuid",
    external_id: "text null",
    user_id: "uuid null",
    external_user_id: "text null",
    metadata: "jsonb default",
    message_count: "integer default",
    last_message_at: "timestamptz null",
    summary: "text null",
    key_points: "jsonb null",
    summarized_at: "timestamptz null",
    created_at: "timestamptz default",
    updated_at: "timestamptz default",
  },
  chat_messages: {
    id: "uuid",
    tenant_id: "uuid",
    session_id: "uuid",
    seq: "integer",
    role: oneOf("text", ["user", "assistant", "agent"]),
    content: "text",
    citations: "jsonb default",
    confidence: "double null",
    prompt_tokens: "integer null",
    completion_tokens: "integer null",
    cost_usd: "numeric null",
    provider: "text null",
    model: "text null",
    latency_ms: "integer null",
    status: oneOf("text default", ["complete", "incomplete", "failed"]),
    created_at: "timestamptz default",
  },
  chat_settings: {
    tenant_id: "uuid",
    settings: "jsonb default",
    updated_at: "timestamptz default",
  },
} as const satisfies Record<string, Record<string, Column>>;

/** A column's parts, parsed from its spec at run time (the drift test compares these). */
export function describeColumn(column: Column): {
  type: PgType;
  nullable: boolean;
  hasDefault: boolean;
} {
  const spec = typeof column === "string" ? column : column.spec;
  const [type, ...mods] = spec.split(" ") as [PgType, ...string[]];
  return { type, nullable: mods.includes("null"), hasDefault: mods.includes("default") };
}

// The TypeScript side: what the drivers return for each type (see db.ts: int8 as number,
// numeric as string, timestamps as Date, jsonb parsed) and what a write may pass.

interface Types {
  uuid: [select: string, write: string];
  text: [string, string];
  integer: [number, number];
  bigint: [number, number];
  numeric: [string, string | number];
  double: [number, number];
  boolean: [boolean, boolean];
  timestamptz: [Date, Date | string];
  // Written as JSON text (JSON.stringify): `pg` would turn a JavaScript array into a Postgres
  // array, not JSON, so the stores serialise jsonb themselves on both drivers.
  jsonb: [unknown, string];
  bytea: [Uint8Array, Uint8Array];
  "text[]": [string[], readonly string[]];
}

type Parse<S> = S extends `${infer T extends PgType} null default`
  ? [T, "null", "default"]
  : S extends `${infer T extends PgType} null`
    ? [T, "null", ""]
    : S extends `${infer T extends PgType} default`
      ? [T, "", "default"]
      : S extends PgType
        ? [S, "", ""]
        : never;

/** [select, write] of a column: its type's, or its named values'. */
type Values<C, T extends PgType> =
  C extends OneOf<ColumnSpec, infer V>
    ? T extends "text[]"
      ? [V[], readonly V[]]
      : [V, V]
    : Types[T];

type ColumnOf<C> =
  Parse<C extends OneOf<infer S, string> ? S : C> extends [infer T extends PgType, infer N, infer D]
    ? Values<C, T> extends [infer Sel, infer W]
      ? N extends "null"
        ? ColumnType<Sel | null, W | null | undefined, W | null>
        : D extends "default"
          ? ColumnType<Sel, W | undefined, W>
          : ColumnType<Sel, W, W>
      : never
    : never;

type Schema = typeof schema;

/** The Kysely database type: every table of `schema`, with its columns' select/insert/update types. */
export type Database = {
  [T in keyof Schema]: { [C in keyof Schema[T]]: ColumnOf<Schema[T][C]> };
};

/** A row of `table` as selected with `columns` (e.g. `Row<"users", "id" | "email">`). */
export type Row<
  T extends keyof Database,
  C extends keyof Selectable<Database[T]> = keyof Selectable<Database[T]>,
> = Pick<Selectable<Database[T]>, C>;

/** The columns of `table` an UPDATE may set (undefined ones are left alone). */
export type Patch<T extends keyof Database> = Updateable<Database[T]>;
