import { kysely, type Queryable } from "../../platform/db/index.js";

/** One API call as stored in `api_calls` (migration 12). */
export interface ApiCallRow {
  /** Made when the call ended: a batch written twice (retry after an unknown commit) stays one row each. */
  id: string;
  tenantId: string;
  occurredAt: Date;
  requestId: string;
  method: string;
  /** The route pattern as registered (`/api/documents/:id`), never the raw URL. */
  route: string;
  routeGroup: string;
  status: number;
  /** The error body's `code`; null for a success. */
  errorCode: string | null;
  latencyMs: number;
  bytesIn: number;
  bytesOut: number;
  actorType: string;
  actorId: string | null;
}

/**
 * Parameters of one statement stay under PostgreSQL's 65 535 bind parameters (14 columns a
 * row): a bigger batch is written as several statements.
 */
const ROWS_PER_VALUES_STATEMENT = 4000;

function toInsert(r: ApiCallRow) {
  return {
    id: r.id,
    tenant_id: r.tenantId,
    occurred_at: r.occurredAt,
    request_id: r.requestId,
    method: r.method,
    route: r.route,
    route_group: r.routeGroup,
    status: r.status,
    error_code: r.errorCode,
    latency_ms: r.latencyMs,
    bytes_in: r.bytesIn,
    bytes_out: r.bytesOut,
    actor_type: r.actorType,
    actor_id: r.actorId,
  };
}

/** How a batch is sent: one multi-row VALUES list, or one array per column through unnest(). */
export type InsertMethod = "values" | "unnest";

/** SQL of `api_calls`. Written at volume by the telemetry buffer, read by roll-ups, swept by retention. */
export const apiCallsStore = {
  /**
   * Inserts `rows`; a row whose id is already there is skipped (`ON CONFLICT (id) DO NOTHING`),
   * so writing a batch again after a commit whose outcome was unknown inserts each row once.
   * Returns how many rows were new.
   */
  async insertMany(
    q: Queryable,
    rows: readonly ApiCallRow[],
    method: InsertMethod = "unnest",
  ): Promise<number> {
    if (rows.length === 0) return 0;
    if (method === "unnest") return insertUnnest(q, rows);
    let inserted = 0;
    for (let i = 0; i < rows.length; i += ROWS_PER_VALUES_STATEMENT) {
      const part = rows.slice(i, i + ROWS_PER_VALUES_STATEMENT).map(toInsert);
      const result = await kysely(q)
        .insertInto("api_calls")
        .values(part)
        .onConflict((oc) => oc.column("id").doNothing())
        .executeTakeFirst();
      inserted += Number(result.numInsertedOrUpdatedRows ?? 0);
    }
    return inserted;
  },

  /**
   * Deletes at most `limit` calls that occurred before `cutoff`, in one statement; returns how
   * many. Retention calls it until it deletes fewer than `limit`.
   */
  async deleteBefore(q: Queryable, cutoff: Date, limit: number): Promise<number> {
    const db = kysely(q);
    const result = await db
      .deleteFrom("api_calls")
      .where(
        "id",
        "in",
        db.selectFrom("api_calls").select("id").where("occurred_at", "<", cutoff).limit(limit),
      )
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  },
};

/**
 * One statement for the whole batch whatever its size: 14 array parameters, which PostgreSQL
 * parses far faster than 14 × N scalar ones (see bench/RESULTS.md, Metering).
 */
async function insertUnnest(q: Queryable, rows: readonly ApiCallRow[]): Promise<number> {
  const n = rows.length;
  const cols = {
    id: new Array<string>(n),
    tenant: new Array<string>(n),
    at: new Array<string>(n),
    request: new Array<string>(n),
    method: new Array<string>(n),
    route: new Array<string>(n),
    group: new Array<string>(n),
    status: new Array<number>(n),
    code: new Array<string | null>(n),
    latency: new Array<number>(n),
    bytesIn: new Array<number>(n),
    bytesOut: new Array<number>(n),
    actorType: new Array<string>(n),
    actorId: new Array<string | null>(n),
  };
  rows.forEach((r, i) => {
    cols.id[i] = r.id;
    cols.tenant[i] = r.tenantId;
    cols.at[i] = r.occurredAt.toISOString();
    cols.request[i] = r.requestId;
    cols.method[i] = r.method;
    cols.route[i] = r.route;
    cols.group[i] = r.routeGroup;
    cols.status[i] = r.status;
    cols.code[i] = r.errorCode;
    cols.latency[i] = r.latencyMs;
    cols.bytesIn[i] = r.bytesIn;
    cols.bytesOut[i] = r.bytesOut;
    cols.actorType[i] = r.actorType;
    cols.actorId[i] = r.actorId;
  });
  // Typed by the casts; the statement's shape never changes, so it is written out once here.
  const { affected } = await q.run(INSERT_UNNEST, [
    cols.id,
    cols.tenant,
    cols.at,
    cols.request,
    cols.method,
    cols.route,
    cols.group,
    cols.status,
    cols.code,
    cols.latency,
    cols.bytesIn,
    cols.bytesOut,
    cols.actorType,
    cols.actorId,
  ]);
  return affected;
}

const INSERT_UNNEST = `
insert into api_calls (id, tenant_id, occurred_at, request_id, method, route, route_group,
  status, error_code, latency_ms, bytes_in, bytes_out, actor_type, actor_id)
select * from unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[],
  $6::text[], $7::text[], $8::int4[], $9::text[], $10::float8[], $11::int8[], $12::int8[],
  $13::text[], $14::text[])
on conflict (id) do nothing`;
