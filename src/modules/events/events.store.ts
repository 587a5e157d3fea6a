import {
  keysetPage,
  kysely,
  type PageAfter,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";
import type { EventName } from "./taxonomy.js";

export type EventRow = Row<"events">;

export interface NewEventRow {
  id: string;
  tenant_id: string;
  name: EventName;
  data: Record<string, unknown>;
  session_id: string | null;
  user_id: string | null;
  created_at: Date;
}

export interface EventFilter {
  name?: EventName | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

/** SQL of the events table. Every tenant query filters by tenant id; `null` is every tenant. */
export const eventsStore = {
  /**
   * Inserts the rows in one statement; a row whose id exists already is skipped (a retried
   * job's event). Returns the ids inserted.
   */
  async insert(q: Queryable, rows: NewEventRow[]): Promise<string[]> {
    if (rows.length === 0) return [];
    const inserted = await kysely(q)
      .insertInto("events")
      .values(rows.map((r) => ({ ...r, data: JSON.stringify(r.data) })))
      .onConflict((oc) => oc.column("id").doNothing())
      .returning("id")
      .execute();
    return inserted.map((r) => r.id);
  },

  /** One page of the feed, newest first. */
  async page(
    q: Queryable,
    tenantId: string | null,
    f: EventFilter,
    page: { after?: PageAfter | undefined; limit: number },
  ): Promise<EventRow[]> {
    let query = kysely(q).selectFrom("events").selectAll();
    if (tenantId !== null) query = query.where("tenant_id", "=", tenantId);
    if (f.name) query = query.where("name", "=", f.name);
    if (f.from) query = query.where("created_at", ">=", f.from);
    if (f.to) query = query.where("created_at", "<", f.to);
    return keysetPage(query, page).execute();
  },

  /**
   * Deletes at most `limit` events created before `cutoff`: of `name` only, or (with `except`)
   * of every name but those. One statement; returns the rows deleted.
   */
  async deleteBefore(
    q: Queryable,
    cutoff: Date,
    limit: number,
    which: { name: string } | { except: readonly string[] },
  ): Promise<number> {
    const db = kysely(q);
    let batch = db.selectFrom("events").select("id").where("created_at", "<", cutoff);
    if ("name" in which) batch = batch.where("name", "=", which.name as EventName);
    else if (which.except.length > 0)
      batch = batch.where("name", "not in", which.except as EventName[]);
    const r = await db
      .deleteFrom("events")
      .where("id", "in", batch.limit(limit))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  },
};

/** `tenant_id = $1`, or true for every tenant. */
const tenantIs = (tenantId: string | null) =>
  tenantId === null ? sql<boolean>`true` : sql<boolean>`tenant_id = ${tenantId}`;

export type Period = "day" | "week" | "month";

/**
 * The analytics' SQL (seed 003 §9 and what follows from it). Buckets are UTC: `date_trunc`
 * on the timestamp at UTC, turned back into an instant.
 */
export const analyticsStore = {
  /** Seed 003's first query: `conversation_started` per period, the latest `buckets`. */
  async conversations(
    q: Queryable,
    tenantId: string | null,
    period: Period,
    buckets: number,
  ): Promise<Array<{ start: Date; count: number }>> {
    const bucket = sql`(date_trunc(${period}::text, created_at at time zone 'UTC') at time zone 'UTC')`;
    const r = await sql<{ start: Date; count: number }>`
      select ${bucket} as start, count(*)::int as count
      from events
      where ${tenantIs(tenantId)} and name = 'conversation_started'
      group by 1 order by 1 desc limit ${buckets}`.execute(kysely(q));
    return r.rows.reverse();
  },

  /** How many events of each of `names` since `since` (absent names count 0). */
  async counts(
    q: Queryable,
    tenantId: string | null,
    names: readonly EventName[],
    since: Date,
  ): Promise<Record<string, { events: number; tenants: number }>> {
    const r = await sql<{ name: string; events: number; tenants: number }>`
      select name, count(*)::int as events, count(distinct tenant_id)::int as tenants
      from events
      where ${tenantIs(tenantId)} and name in (${sql.join(names)}) and created_at >= ${since}
      group by name`.execute(kysely(q));
    const out: Record<string, { events: number; tenants: number }> = {};
    for (const n of names) out[n] = { events: 0, tenants: 0 };
    for (const row of r.rows) out[row.name] = { events: row.events, tenants: row.tenants };
    return out;
  },

  /** Events of `names` per UTC day since `since`, days without any left out. */
  async daily(
    q: Queryable,
    tenantId: string | null,
    names: readonly EventName[],
    since: Date,
  ): Promise<Array<{ day: Date; name: string; count: number; chunks: number }>> {
    const r = await sql<{ day: Date; name: string; count: number; chunks: number }>`
      select (date_trunc('day', created_at at time zone 'UTC') at time zone 'UTC') as day, name,
        count(*)::int as count,
        coalesce(sum(case when jsonb_typeof(data->'chunks') = 'number'
          then (data->>'chunks')::bigint end), 0)::bigint as chunks
      from events
      where ${tenantIs(tenantId)} and name in (${sql.join(names)}) and created_at >= ${since}
      group by 1, 2 order by 1, 2`.execute(kysely(q));
    return r.rows;
  },

  /** Events of `name` since `since`, grouped by the text of `data->>key` (null: absent). */
  async byKey(
    q: Queryable,
    tenantId: string | null,
    name: EventName,
    key: string,
    since: Date,
  ): Promise<Array<{ value: string | null; count: number; tenants: number }>> {
    const r = await sql<{ value: string | null; count: number; tenants: number }>`
      select data->>(${key}::text) as value, count(*)::int as count,
        count(distinct tenant_id)::int as tenants
      from events
      where ${tenantIs(tenantId)} and name = ${name} and created_at >= ${since}
      group by 1 order by 2 desc, 1`.execute(kysely(q));
    return r.rows;
  },

  /** `plan_updated` since `since` by (previousPlan, newPlan). */
  async planTransitions(
    q: Queryable,
    tenantId: string | null,
    since: Date,
  ): Promise<Array<{ from: string | null; to: string | null; count: number }>> {
    const r = await sql<{ from: string | null; to: string | null; count: number }>`
      select data->>'previousPlan' as "from", data->>'newPlan' as "to", count(*)::int as count
      from events
      where ${tenantIs(tenantId)} and name = 'plan_updated' and created_at >= ${since}
      group by 1, 2 order by 3 desc, 1, 2`.execute(kysely(q));
    return r.rows;
  },
};
