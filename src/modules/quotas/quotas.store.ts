import { kysely, type Queryable, sql } from "../../platform/db/index.js";
import type { Limit, QuotaType } from "./quota-types.js";

/** A counter's figures after a statement changed it. */
export interface CounterFigures {
  used: number;
  reserved: number;
}

/** One counter's key: tenant, quota type, period. */
interface CounterKey {
  tenantId: string;
  quota: QuotaType;
  periodStart: Date;
}

/**
 * SQL of the quotas module's tables (plan_quotas, tenant_quota_overrides, quota_counters,
 * quota_reservations). Every tenant query filters by tenant id.
 */
export const quotasStore = {
  /** Every plan's limits, as rows (plans without rows have no quotas to show). */
  async planRows(q: Queryable, planId?: string) {
    let query = kysely(q)
      .selectFrom("plan_quotas")
      .select(["plan_id", "quota", "limit_value", "updated_at"])
      .orderBy("plan_id")
      .orderBy("quota");
    if (planId) query = query.where("plan_id", "=", planId);
    return query.execute();
  },

  /** Sets some of a plan's limits (an upsert per type). */
  async setPlanLimits(
    q: Queryable,
    planId: string,
    limits: Array<{ quota: QuotaType; limit: Limit }>,
  ): Promise<void> {
    if (limits.length === 0) return;
    await kysely(q)
      .insertInto("plan_quotas")
      .values(limits.map((l) => ({ plan_id: planId, quota: l.quota, limit_value: l.limit })))
      .onConflict((oc) =>
        oc.columns(["plan_id", "quota"]).doUpdateSet({
          limit_value: (eb) => eb.ref("excluded.limit_value"),
          updated_at: sql`now()`,
        }),
      )
      .execute();
  },

  /** The tenant's overrides and its plan's limits, in one read. */
  async limitRows(q: Queryable, tenantId: string, planId: string) {
    const overrides = kysely(q)
      .selectFrom("tenant_quota_overrides")
      .select(["quota", "limit_value", sql<"plan" | "override">`'override'`.as("source")])
      .where("tenant_id", "=", tenantId);
    const plan = kysely(q)
      .selectFrom("plan_quotas")
      .select(["quota", "limit_value", sql<"plan" | "override">`'plan'`.as("source")])
      .where("plan_id", "=", planId);
    return overrides.unionAll(plan).execute();
  },

  /** The tenant's overrides. */
  async overrideRows(q: Queryable, tenantId: string) {
    return kysely(q)
      .selectFrom("tenant_quota_overrides")
      .select(["quota", "limit_value"])
      .where("tenant_id", "=", tenantId)
      .execute();
  },

  /** Replaces the tenant's overrides with `limits` (none: the plan's limits apply). */
  async replaceOverrides(
    q: Queryable,
    tenantId: string,
    limits: Array<{ quota: QuotaType; limit: Limit }>,
  ): Promise<void> {
    await kysely(q)
      .deleteFrom("tenant_quota_overrides")
      .where("tenant_id", "=", tenantId)
      .execute();
    if (limits.length === 0) return;
    await kysely(q)
      .insertInto("tenant_quota_overrides")
      .values(limits.map((l) => ({ tenant_id: tenantId, quota: l.quota, limit_value: l.limit })))
      .execute();
  },

  /**
   * Reserves `amount` on the counter if it fits: one statement, a conditional UPDATE whose
   * WHERE sees the latest committed figures (a concurrent reserve waits on the row's lock and
   * re-checks), and the reservation row inserted with it, or neither. `base` is added to the
   * counter's figures in the check (a level's current value, which the counter does not hold).
   * Undefined when it does not fit, or when the counter row does not exist yet (`ensureCounter`).
   */
  async reserve(
    q: Queryable,
    key: CounterKey & { amount: number; limit: Limit; base: number; expiresAt: Date },
  ): Promise<(CounterFigures & { id: string }) | undefined> {
    const { rows } = await sql<CounterFigures & { id: string }>`
      with c as (
        update quota_counters
           set reserved = reserved + ${key.amount}, updated_at = now()
         where tenant_id = ${key.tenantId} and quota = ${key.quota}
           and period_start = ${key.periodStart}
           and (${key.limit}::bigint is null
                or used + reserved + ${key.amount}::bigint + ${key.base}::bigint <= ${key.limit}::bigint)
        returning used, reserved
      ), r as (
        insert into quota_reservations (tenant_id, quota, period_start, amount, expires_at)
        select ${key.tenantId}::uuid, ${key.quota}::text, ${key.periodStart}::timestamptz,
               ${key.amount}::bigint, ${key.expiresAt}::timestamptz
          from c
        returning id
      )
      select r.id, c.used, c.reserved from r cross join c`.execute(kysely(q));
    return rows[0];
  },

  /** Creates the counter row of a period if it is missing (no-op otherwise). */
  async ensureCounter(q: Queryable, key: CounterKey): Promise<void> {
    await kysely(q)
      .insertInto("quota_counters")
      .values({ tenant_id: key.tenantId, quota: key.quota, period_start: key.periodStart })
      .onConflict((oc) => oc.columns(["tenant_id", "quota", "period_start"]).doNothing())
      .execute();
  },

  /** The tenant's counters of the given periods. */
  async counters(q: Queryable, tenantId: string, periodStarts: Date[]) {
    return kysely(q)
      .selectFrom("quota_counters")
      .select(["quota", "period_start", "used", "reserved"])
      .where("tenant_id", "=", tenantId)
      .where("period_start", "in", periodStarts)
      .execute();
  },

  /**
   * Ends a reservation and moves its counter, in one statement: the reservation row is locked
   * (a concurrent sweep or settle waits, and the row is re-read once it may go on), marked
   * `settled` (with `actual`) or `released`, and the counter gets `used += actual` (monthly
   * quotas; a level's use is not counted here) and `reserved -= amount` if the reservation
   * still held it (not when the sweep had expired it). Settling takes a reserved or an expired
   * reservation (the work was done), releasing only a reserved one; otherwise nothing changes
   * and the answer is undefined, so a second settle or release is harmless.
   */
  async finish(
    q: Queryable,
    r: {
      tenantId: string;
      id: string;
      state: "settled" | "released";
      actual: number;
      now: Date;
      levelPeriodStart: Date;
    },
  ): Promise<(CounterFigures & { quota: QuotaType }) | undefined> {
    const settling = r.state === "settled";
    const { rows } = await sql<CounterFigures & { quota: QuotaType }>`
      with r as (
        select id, state, quota, period_start, amount
          from quota_reservations
         where id = ${r.id} and tenant_id = ${r.tenantId}
           and (state = 'reserved' or (${settling}::boolean and state = 'expired'))
           for update
      ), u as (
        update quota_reservations q
           set state = ${r.state}, finished_at = ${r.now},
               settled_amount = ${settling ? r.actual : null}::bigint
          from r
         where q.id = r.id
      )
      update quota_counters c
         set used = c.used + (case when r.period_start = ${r.levelPeriodStart}::timestamptz
                                   then 0 else ${settling ? r.actual : 0}::bigint end),
             reserved = c.reserved - (case when r.state = 'reserved' then r.amount else 0 end),
             updated_at = now()
        from r
       where c.tenant_id = ${r.tenantId} and c.quota = r.quota and c.period_start = r.period_start
      returning c.used, c.reserved, c.quota`.execute(kysely(q));
    return rows[0];
  },

  /**
   * Expires up to `limit` reservations whose time passed at `now` and gives their amounts back
   * to their counters, in one statement. Reservations being settled right now are locked and
   * skipped (the next pass sees them settled). Returns how many expired.
   */
  async expire(q: Queryable, now: Date, limit: number): Promise<number> {
    const { rows } = await sql<{ n: number }>`
      with e as (
        update quota_reservations
           set state = 'expired', finished_at = ${now}
         where id in (
           select id from quota_reservations
            where state = 'reserved' and expires_at <= ${now}
            order by expires_at
            limit ${limit}
            for update skip locked)
        returning tenant_id, quota, period_start, amount
      ), s as (
        select tenant_id, quota, period_start, sum(amount)::bigint as total, count(*)::int as n
          from e group by tenant_id, quota, period_start
      ), u as (
        update quota_counters c
           set reserved = c.reserved - s.total, updated_at = now()
          from s
         where c.tenant_id = s.tenant_id and c.quota = s.quota and c.period_start = s.period_start
      )
      select coalesce(sum(n), 0)::int as n from s`.execute(kysely(q));
    return rows[0]?.n ?? 0;
  },

  /** Deletes up to `limit` finished reservations that ended before `before`. */
  async purgeFinished(q: Queryable, before: Date, limit: number): Promise<number> {
    const { rows } = await sql<{ n: number }>`
      with d as (
        delete from quota_reservations
         where id in (
           select id from quota_reservations
            where state <> 'reserved' and finished_at < ${before}
            limit ${limit})
        returning 1
      )
      select count(*)::int as n from d`.execute(kysely(q));
    return rows[0]?.n ?? 0;
  },
};
