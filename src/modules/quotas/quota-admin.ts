import { AppError } from "../../errors.js";
import type { Db } from "../../platform/db/index.js";
import type { PlatformContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import { type Limit, QUOTA_TYPES, type QuotaLimits, type QuotaType } from "./quota-types.js";
import type { QuotaStatuses } from "./quotas.service.js";
import { quotasStore as store } from "./quotas.store.js";

/** A partial map of limits: a count, null for unlimited; an absent type is left alone. */
export type LimitsPatch = Partial<Record<QuotaType, Limit>>;

export interface PlanQuotas {
  id: string;
  quotas: QuotaLimits;
  updatedAt: string | null;
}

function isForeignKeyViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === "23503";
}

/** Of two maps of limits, the types whose limit differs: each side's (null: unlimited or none). */
function changed(before: LimitsPatch, after: LimitsPatch) {
  const out = { old: {} as LimitsPatch, new: {} as LimitsPatch };
  for (const t of QUOTA_TYPES) {
    // Strict: for overrides, absent (the plan's limit) and null (unlimited) differ.
    if (before[t] === after[t]) continue;
    out.old[t] = before[t] ?? null;
    out.new[t] = after[t] ?? null;
  }
  return out;
}

function entries(patch: LimitsPatch): Array<{ quota: QuotaType; limit: Limit }> {
  return QUOTA_TYPES.filter((t) => patch[t] !== undefined).map((t) => ({
    quota: t,
    limit: patch[t] as Limit,
  }));
}

/**
 * Platform administration of quotas: the plans' limits and tenants' overrides. The routes
 * that call these are for platform admins only (`auth: platform_admin`).
 */
export function createQuotaAdmin(deps: {
  db: Db;
  statusOf(tenantId: string): Promise<{
    tenant: { plan: string; trialEndsAt: string | null };
    trialExpired: boolean;
    statuses: QuotaStatuses;
  }>;
  /** Called after a limit changed (the service's cached limits are dropped). */
  changed(): void;
  /** Records each change in its transaction: a plan's on the platform's chain, an override's on its tenant's. */
  audit: Pick<AuditLog, "record">;
}) {
  const { db } = deps;

  async function plans(planId?: string): Promise<PlanQuotas[]> {
    const rows = await store.planRows(db, planId);
    const out = new Map<string, PlanQuotas>();
    for (const row of rows) {
      let p = out.get(row.plan_id);
      if (!p) {
        p = {
          id: row.plan_id,
          quotas: Object.fromEntries(QUOTA_TYPES.map((t) => [t, null])) as QuotaLimits,
          updatedAt: null,
        };
        out.set(row.plan_id, p);
      }
      p.quotas[row.quota] = row.limit_value;
      const at = row.updated_at.toISOString();
      if (!p.updatedAt || at > p.updatedAt) p.updatedAt = at;
    }
    return [...out.values()];
  }

  async function tenantQuotas(tenantId: string) {
    const s = await deps.statusOf(tenantId);
    return {
      tenantId,
      plan: s.tenant.plan,
      trialEndsAt: s.tenant.trialEndsAt,
      trialExpired: s.trialExpired,
      quotas: s.statuses,
    };
  }

  return {
    /** Every plan with its limit per quota type. */
    listPlans: (_ctx: PlatformContext) => plans(),

    /** Changes some of a plan's limits; the plan's tenants are held to them from the next reservation. */
    async setPlanQuotas(
      ctx: PlatformContext,
      planId: string,
      patch: LimitsPatch,
    ): Promise<PlanQuotas> {
      try {
        await db.transaction(async (tx) => {
          const before = limitsOf(await store.planRows(tx, planId));
          await store.setPlanLimits(tx, planId, entries(patch));
          const diff = changed(before, { ...before, ...patch });
          if (Object.keys(diff.new).length === 0) return;
          await deps.audit.record(
            ctx,
            {
              eventType: "plan.update",
              entityType: "plan",
              entityId: planId,
              action: "update",
              oldValues: diff.old,
              newValues: diff.new,
            },
            { tx },
          );
        });
        deps.changed();
      } catch (err) {
        if (isForeignKeyViolation(err)) throw planNotFound(planId);
        throw err;
      }
      const [plan] = await plans(planId);
      if (!plan) throw planNotFound(planId);
      return plan;
    },

    /** A tenant's quotas as the platform sees them (404 for an unknown tenant). */
    tenantQuotas: (_ctx: PlatformContext, tenantId: string) => tenantQuotas(tenantId),

    /**
     * Replaces the tenant's overrides: each type given gets that limit (null: unlimited), every
     * other type goes back to its plan's limit.
     */
    async setOverrides(ctx: PlatformContext, tenantId: string, overrides: LimitsPatch) {
      await deps.statusOf(tenantId); // 404 for an unknown tenant
      await db.transaction(async (tx) => {
        const before = limitsOf(await store.overrideRows(tx, tenantId));
        await store.replaceOverrides(tx, tenantId, entries(overrides));
        const diff = changed(before, overrides);
        if (Object.keys(diff.new).length === 0) return;
        // Absent from a side: no override (the plan's limit); null: an unlimited override.
        await deps.audit.record(
          ctx,
          {
            eventType: "quota_override.update",
            entityType: "quota_override",
            entityId: tenantId,
            action: "update",
            oldValues: { overrides: before },
            newValues: { overrides },
            tenantId,
          },
          { tx },
        );
      });
      deps.changed();
      return tenantQuotas(tenantId);
    },
  };
}

/** Rows of (quota, limit) as a map. */
function limitsOf(rows: ReadonlyArray<{ quota: QuotaType; limit_value: Limit }>): LimitsPatch {
  return Object.fromEntries(rows.map((r) => [r.quota, r.limit_value]));
}

function planNotFound(planId: string): AppError {
  return new AppError("plan.not_found", `there is no plan ${planId}`, { plan: planId });
}
