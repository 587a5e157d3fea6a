import { kysely, type Queryable, sql } from "../../platform/db/index.js";

/** Metrics whose events add up over a window (gauges — documents_stored, storage_bytes — do not). */
export const SUMMED_METRICS = [
  "embedding_tokens",
  "search_queries",
  "chat_input_tokens",
  "chat_output_tokens",
  "chat_messages",
] as const;
export type SummedMetric = (typeof SUMMED_METRICS)[number];

/** Routes whose successful calls are searches (`/search` is seed 004's alias of `/api/search`). */
export const SEARCH_ROUTES = ["/api/search", "/search"] as const;

/** SQL of reconciliation over this module's tables (`usage_events`, `api_calls`). */
export const reconciliationStore = {
  /** Per metric, the events' summed quantity in [from, to) (exact, as text). */
  async eventTotals(q: Queryable, tenantId: string, from: Date, to: Date) {
    const rows = await kysely(q)
      .selectFrom("usage_events")
      .select(["metric", sql<string>`sum(quantity)::text`.as("quantity")])
      .where("tenant_id", "=", tenantId)
      .where("occurred_at", ">=", from)
      .where("occurred_at", "<", to)
      .groupBy("metric")
      .execute();
    return rows;
  },

  /** The events' cost in [from, to), every metric; exact. */
  async eventCost(q: Queryable, tenantId: string, from: Date, to: Date): Promise<string> {
    const row = await kysely(q)
      .selectFrom("usage_events")
      .select(sql<string>`coalesce(sum(cost_usd), 0)::text`.as("cost"))
      .where("tenant_id", "=", tenantId)
      .where("occurred_at", ">=", from)
      .where("occurred_at", "<", to)
      .executeTakeFirstOrThrow();
    return row.cost;
  },

  /** The tenant's embedding events of document versions in [from, to). */
  async versionEvents(q: Queryable, tenantId: string, from: Date, to: Date) {
    return kysely(q)
      .selectFrom("usage_events")
      .select(["id", "subject_id", "document_id", "quantity"])
      .where("tenant_id", "=", tenantId)
      .where("metric", "=", "embedding_tokens")
      .where("subject_type", "=", "document_version")
      .where("occurred_at", ">=", from)
      .where("occurred_at", "<", to)
      .execute();
  },

  /** Of these version ids, those with an embedding event at any time. */
  async versionsWithEvents(q: Queryable, tenantId: string, versionIds: string[]) {
    if (versionIds.length === 0) return new Set<string>();
    const rows = await kysely(q)
      .selectFrom("usage_events")
      .select("subject_id")
      .where("tenant_id", "=", tenantId)
      .where("metric", "=", "embedding_tokens")
      .where("subject_type", "=", "document_version")
      .where(sql<boolean>`subject_id = any(${versionIds}::text[])`)
      .execute();
    return new Set(rows.map((r) => r.subject_id));
  },

  /** Successful search calls (2xx on a search route) in [from, to). */
  async searchCalls(q: Queryable, tenantId: string, from: Date, to: Date): Promise<number> {
    const row = await kysely(q)
      .selectFrom("api_calls")
      .select(sql<number>`count(*)::int`.as("n"))
      .where("tenant_id", "=", tenantId)
      .where("method", "=", "POST")
      .where("route", "in", [...SEARCH_ROUTES])
      .where("status", ">=", 200)
      .where("status", "<", 300)
      .where("occurred_at", ">=", from)
      .where("occurred_at", "<", to)
      .executeTakeFirstOrThrow();
    return row.n;
  },

  /** Tenants with a billable event or an API call in [from, to). */
  async activeTenants(q: Queryable, from: Date, to: Date): Promise<string[]> {
    const k = kysely(q);
    const rows = await k
      .selectFrom("usage_events")
      .select("tenant_id")
      .distinct()
      .where("occurred_at", ">=", from)
      .where("occurred_at", "<", to)
      .union(
        k
          .selectFrom("api_calls")
          .select("tenant_id")
          .distinct()
          .where("occurred_at", ">=", from)
          .where("occurred_at", "<", to),
      )
      .execute();
    return rows.map((r) => r.tenant_id);
  },
};
