import {
  keysetPage,
  kysely,
  type PageAfter,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";
import type { AlertCandidate, AlertKind } from "./rules.js";

const COLUMNS = [
  "id",
  "tenant_id",
  "kind",
  "severity",
  "dedupe_key",
  "message",
  "details",
  "created_at",
  "acked_at",
  "acked_by",
] as const;

export type AlertRow = Row<"alerts", (typeof COLUMNS)[number]>;

export interface AlertFilter {
  kind?: AlertKind | undefined;
  acked?: boolean | undefined;
  limit: number;
  after?: PageAfter | undefined;
}

/** SQL of `alerts` and `alert_settings`. Every tenant query filters by tenant id. */
export const alertsStore = {
  /**
   * Inserts the alert unless one with its dedupe key exists for the tenant; returns the new
   * row, or undefined when it was already raised. One statement, so concurrent raisers of one
   * key insert one row (the unique constraint decides) and none of them fails.
   */
  async insert(
    q: Queryable,
    tenantId: string,
    a: AlertCandidate,
    createdAt: Date,
  ): Promise<AlertRow | undefined> {
    return kysely(q)
      .insertInto("alerts")
      .values({
        tenant_id: tenantId,
        kind: a.kind,
        severity: a.severity,
        dedupe_key: a.dedupeKey,
        message: a.message,
        details: JSON.stringify(a.details),
        created_at: createdAt,
      })
      .onConflict((oc) => oc.columns(["tenant_id", "dedupe_key"]).doNothing())
      .returning(COLUMNS)
      .executeTakeFirst();
  },

  /** Alerts newest first; `tenantId` undefined lists every tenant's (platform admins). */
  async list(q: Queryable, tenantId: string | undefined, f: AlertFilter): Promise<AlertRow[]> {
    let query = kysely(q).selectFrom("alerts").select(COLUMNS);
    if (tenantId !== undefined) query = query.where("tenant_id", "=", tenantId);
    if (f.kind) query = query.where("kind", "=", f.kind);
    if (f.acked === true) query = query.where("acked_at", "is not", null);
    if (f.acked === false) query = query.where("acked_at", "is", null);
    return keysetPage(query, { after: f.after, limit: f.limit }).execute();
  },

  async get(q: Queryable, tenantId: string, id: string): Promise<AlertRow | undefined> {
    return kysely(q)
      .selectFrom("alerts")
      .select(COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .executeTakeFirst();
  },

  /**
   * Acknowledges the alert if it is not yet; the first acknowledgement stays (time and actor).
   * Returns the row either way (`acked`: whether this call acknowledged it), undefined when the
   * tenant has no such alert.
   */
  async ack(
    q: Queryable,
    tenantId: string,
    id: string,
    by: unknown,
    at: Date,
  ): Promise<{ row: AlertRow; acked: boolean } | undefined> {
    const updated = await kysely(q)
      .updateTable("alerts")
      .set({ acked_at: at, acked_by: JSON.stringify(by) })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .where("acked_at", "is", null)
      .returning(COLUMNS)
      .executeTakeFirst();
    if (updated) return { row: updated, acked: true };
    const row = await alertsStore.get(q, tenantId, id);
    return row && { row, acked: false };
  },

  async settings(q: Queryable, tenantId: string): Promise<unknown> {
    const row = await kysely(q)
      .selectFrom("alert_settings")
      .select("thresholds")
      .where("tenant_id", "=", tenantId)
      .executeTakeFirst();
    return row?.thresholds;
  },

  async putSettings(q: Queryable, tenantId: string, thresholds: unknown): Promise<void> {
    const json = JSON.stringify(thresholds);
    await kysely(q)
      .insertInto("alert_settings")
      .values({ tenant_id: tenantId, thresholds: json })
      .onConflict((oc) =>
        oc.column("tenant_id").doUpdateSet({ thresholds: json, updated_at: sql`now()` }),
      )
      .execute();
  },
};
