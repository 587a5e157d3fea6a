import { type Db, kysely, sql } from "../../platform/db/index.js";

const HOUR_MS = 3_600_000;

/**
 * The figures the alert rules read from the raw usage tables (`api_calls`, `usage_events`),
 * owned by this module; the composition root hands them to the alerts module as its
 * `UsageSignals`. Failed calls are status ≥ 400 except 429 (rate limited is its own figure).
 */
export function createUsageSignals(deps: { db: Db }) {
  const k = () => kysely(deps.db);
  return {
    async activeTenants(since: Date): Promise<string[]> {
      const rows = await k()
        .selectFrom("api_calls")
        .select("tenant_id")
        .distinct()
        .where("occurred_at", ">=", since)
        .union(
          k()
            .selectFrom("usage_events")
            .select("tenant_id")
            .distinct()
            .where("occurred_at", ">=", since),
        )
        .execute();
      return rows.map((r) => r.tenant_id);
    },

    async callCounts(tenantId: string, from: Date, to: Date) {
      const row = await k()
        .selectFrom("api_calls")
        .select([
          sql<number>`count(*)::int`.as("total"),
          sql<number>`(count(*) filter (where status >= 400 and status <> 429))::int`.as("failed"),
        ])
        .where("tenant_id", "=", tenantId)
        .where("occurred_at", ">=", from)
        .where("occurred_at", "<", to)
        .executeTakeFirstOrThrow();
      return { total: row.total, failed: row.failed };
    },

    async hourlyCalls(tenantId: string, from: Date, to: Date): Promise<number[]> {
      // Hours by epoch arithmetic, not date_trunc, whose hours follow the session's time zone.
      const rows = await k()
        .selectFrom("api_calls")
        .select([
          sql<number>`floor(extract(epoch from occurred_at) / 3600)::int`.as("hour"),
          sql<number>`count(*)::int`.as("calls"),
        ])
        .where("tenant_id", "=", tenantId)
        .where("occurred_at", ">=", from)
        .where("occurred_at", "<", to)
        .groupBy(sql`1`)
        .execute();
      const byHour = new Map(rows.map((r) => [r.hour, r.calls]));
      const out: number[] = [];
      for (let t = from.getTime(); t < to.getTime(); t += HOUR_MS) {
        out.push(byHour.get(Math.floor(t / HOUR_MS)) ?? 0);
      }
      return out;
    },

    async costUsd(tenantId: string, from: Date, to: Date): Promise<string> {
      const row = await k()
        .selectFrom("usage_events")
        .select(sql<string>`coalesce(sum(cost_usd), 0)::text`.as("cost"))
        .where("tenant_id", "=", tenantId)
        .where("occurred_at", ">=", from)
        .where("occurred_at", "<", to)
        .executeTakeFirstOrThrow();
      return row.cost;
    },
  };
}

export type UsageSignalsReader = ReturnType<typeof createUsageSignals>;
