import type { Logger } from "pino";
import { Counter } from "prom-client";
import { AppError } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import type { Db, InTransaction, Queryable } from "../../platform/db/index.js";
import type { Metrics } from "../../platform/metrics/index.js";
import type { RequestMeta, TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { EventsLog } from "../events/index.js";
import type { TenantsService } from "../tenants/index.js";
import { createQuotaAdmin } from "./quota-admin.js";
import { createQuotaTouches } from "./quota-touches.js";
import {
  LEVEL_PERIOD_START,
  type Limit,
  periodOf,
  QUOTA_PERIOD,
  QUOTA_TYPES,
  type QuotaLimits,
  type QuotaType,
} from "./quota-types.js";
import { quotasStore as store } from "./quotas.store.js";

/** What a tenant holds now, for the level quotas (documents, storage): the ingestion module's figures. */
export type LevelSource = (
  ctx: TenantContext,
  opts?: InTransaction,
) => Promise<{ documents: number; storageBytes: number }>;

/** A reservation: `amount` of `quota` held for work in flight until settled, released or expired. */
export interface Reservation {
  id: string;
  tenantId: string;
  quota: QuotaType;
  amount: number;
  periodStart: Date;
  resetAt: Date | null;
  limit: Limit;
}

/** Where a quota stands (the contract `ctx.quotas.status` answers; alerts and reports read it). */
export interface QuotaStatus {
  limit: Limit;
  used: number;
  reserved: number;
  /** What may still be reserved; null when unlimited. */
  remaining: number | null;
  /** The current period's first instant (UTC month); null for a level. */
  periodStart: string | null;
  /** When the quota starts again at 0; null for a level, which never resets. */
  resetAt: string | null;
  /** Whether the limit is the plan's or the tenant's own (an override). */
  source: "plan" | "override";
}

export type QuotaStatuses = Record<QuotaType, QuotaStatus>;

export interface QuotasDeps {
  db: Db;
  tenants: Pick<TenantsService, "get">;
  clock: Clock;
  logger: Pick<Logger, "warn" | "error">;
  levels: LevelSource;
  /** Records plan and override changes (quota-admin.ts). */
  audit: Pick<AuditLog, "record">;
  /**
   * Every refusal as a `quota_exceeded` event, written outside the transaction the refusal
   * rolls back (events.logOutside: tracked, drained at shutdown, never failing the refusal).
   */
  events: Pick<EventsLog, "logOutside">;
  metrics?: Metrics;
  /** How long a reservation lives if nobody settles or releases it (a crash): 30 minutes. */
  reservationTtlMs?: number;
  /** How old the plan and limits a reservation checks against may be: 2 s (0: always read). */
  settingsCacheMs?: number;
}

interface Settings {
  tenant: { plan: string; trialEndsAt: string | null };
  limits: QuotaLimits;
  sources: Record<QuotaType, "plan" | "override">;
}

const DEFAULT_SETTINGS_CACHE_MS = 2000;
const SETTINGS_CACHE_MAX = 10_000;

const DEFAULT_TTL_MS = 30 * 60_000;
const SWEEP_BATCH = 1000;
/** Finished reservations are kept a day (to answer a late settle), then purged. */
const FINISHED_KEEP_MS = 86_400_000;

/** The context quotas act in for a caller that names only the tenant (status for alerts, reports). */
function systemContext(tenantId: string): TenantContext {
  return {
    tenantId,
    actor: { kind: "system", job: { id: "quotas", name: "quotas.status" }, causedBy: null },
    request: null,
  };
}

/** 429 quota.exceeded for `type` as it stands in `s`, for work that needed `requested`. */
export function quotaExceeded(type: QuotaType, s: QuotaStatus, requested: number): AppError {
  return new AppError(
    "quota.exceeded",
    `the ${type} quota has ${s.remaining ?? 0} left of ${s.limit}; this needs ${requested}`,
    {
      quota: type,
      limit: s.limit,
      used: s.used,
      reserved: s.reserved,
      requested,
      resetAt: s.resetAt,
    },
  );
}

/** Anything but a refusal of our own becomes 503 quota.unavailable: fail closed. */
function unavailable(err: unknown): never {
  if (err instanceof AppError) throw err;
  throw new AppError(
    "quota.unavailable",
    "the quota could not be checked; the work was not done, retry",
    { reason: (err as Error)?.message ?? String(err) },
  );
}

/**
 * Quota enforcement: reserve before billable work, settle with the real amount after it (in
 * the business transaction), release when the work failed. Reservations are atomic
 * conditional updates of `quota_counters`, so concurrent requests cannot together pass a
 * limit; a reservation nobody ends (a crash) expires and the sweep gives it back. Every failure
 * to reserve refuses the work (fail closed).
 */
export function createQuotasService(deps: QuotasDeps) {
  const { db, clock } = deps;
  const ttlMs = deps.reservationTtlMs ?? DEFAULT_TTL_MS;
  const touches = createQuotaTouches();
  const settingsCacheMs = deps.settingsCacheMs ?? DEFAULT_SETTINGS_CACHE_MS;
  const settingsCache = new Map<string, { at: number; value: Settings }>();
  const releaseFailures = deps.metrics
    ? new Counter({
        name: "tenantrag_quota_release_failures_total",
        help: "Quota reservations that could not be released (left to expire)",
        registers: [deps.metrics.registry],
      })
    : undefined;

  /** The tenant's plan, whether its trial has ended, and its limit and its source per type. */
  async function loadSettings(ctx: TenantContext, q: Queryable): Promise<Settings> {
    const tenant = await deps.tenants.get(ctx, { tx: q });
    const rows = await store.limitRows(q, ctx.tenantId, tenant.plan);
    const limits = Object.fromEntries(QUOTA_TYPES.map((t) => [t, null])) as QuotaLimits;
    const sources = Object.fromEntries(QUOTA_TYPES.map((t) => [t, "plan"])) as Record<
      QuotaType,
      "plan" | "override"
    >;
    // The plan's limits, then the tenant's overrides over them.
    for (const source of ["plan", "override"] as const) {
      for (const row of rows) {
        if (row.source !== source) continue;
        limits[row.quota] = row.limit_value;
        sources[row.quota] = source;
      }
    }
    return { tenant: { plan: tenant.plan, trialEndsAt: tenant.trialEndsAt }, limits, sources };
  }

  /**
   * The tenant's plan, trial end and limits. Reservations use a copy up to `settingsCacheMs`
   * old (two reads fewer on the hot path); reads for people (`view`, admin) are fresh, and a
   * change made through this process empties the cache. Another process's change applies here
   * within `settingsCacheMs`. Whether the trial has ended is decided at each call.
   */
  async function limitsOf(ctx: TenantContext, opts: { fresh?: boolean; tx?: Queryable } = {}) {
    const hit = settingsCache.get(ctx.tenantId);
    let settings: Settings;
    if (!opts.fresh && hit && performance.now() - hit.at < settingsCacheMs) settings = hit.value;
    else {
      settings = await loadSettings(ctx, opts.tx ?? db);
      if (settingsCache.size >= SETTINGS_CACHE_MAX) settingsCache.clear();
      settingsCache.set(ctx.tenantId, { at: performance.now(), value: settings });
    }
    const { tenant, limits, sources } = settings;
    const trialExpired =
      tenant.plan === "trial" &&
      tenant.trialEndsAt !== null &&
      clock.now() >= Date.parse(tenant.trialEndsAt);
    return { tenant, limits, sources, trialExpired };
  }

  function assertTrial(tenant: { trialEndsAt: string | null }, trialExpired: boolean) {
    if (!trialExpired) return;
    throw new AppError(
      "plan.trial_expired",
      "this tenant's trial has ended; choose a plan to continue",
      { trialEndsAt: tenant.trialEndsAt },
    );
  }

  async function statuses(
    ctx: TenantContext,
    types: readonly QuotaType[] = QUOTA_TYPES,
    opts: { fresh?: boolean; tx?: Queryable } = {},
  ) {
    const now = clock.now();
    const info = await limitsOf(ctx, opts);
    const periods = [...new Set(types.map((t) => periodOf(t, now).start.getTime()))];
    const counters = await store.counters(
      opts.tx ?? db,
      ctx.tenantId,
      periods.map((p) => new Date(p)),
    );
    const needsLevels = types.some((t) => QUOTA_PERIOD[t] === "level");
    const levels = needsLevels ? await deps.levels(ctx, opts.tx ? { tx: opts.tx } : {}) : undefined;
    const out = {} as QuotaStatuses;
    for (const type of types) {
      const { start, resetAt } = periodOf(type, now);
      const c = counters.find(
        (r) => r.quota === type && r.period_start.getTime() === start.getTime(),
      );
      const reserved = c?.reserved ?? 0;
      const used =
        type === "documents"
          ? (levels?.documents ?? 0)
          : type === "storage_bytes"
            ? (levels?.storageBytes ?? 0)
            : (c?.used ?? 0);
      const limit = info.limits[type];
      out[type] = {
        limit,
        used,
        reserved,
        remaining: limit === null ? null : Math.max(0, limit - used - reserved),
        periodStart: resetAt ? start.toISOString() : null,
        resetAt: resetAt ? resetAt.toISOString() : null,
        source: info.sources[type],
      };
    }
    return { ...info, statuses: out };
  }

  /**
   * The refusal's event. Not awaited: the caller's transaction (assertAvailable's `tx`) is
   * still open and rolls back with the refusal; on PGlite's one connection the write waits for
   * it to end, and anywhere it must not join it. The refusal is answered without waiting.
   */
  function refused(ctx: TenantContext, type: QuotaType, s: QuotaStatus, attempted: number) {
    void deps.events.logOutside(ctx, "quota_exceeded", {
      quotaType: type,
      limit: s.limit,
      attempted,
      used: s.used,
      reserved: s.reserved,
    });
  }

  async function reserve(
    ctx: TenantContext,
    type: QuotaType,
    amount: number,
  ): Promise<Reservation> {
    if (!Number.isSafeInteger(amount) || amount < 0)
      throw new Error(`a reservation is a whole amount >= 0, not ${amount}`);
    try {
      const now = clock.now();
      const { tenant, limits, trialExpired } = await limitsOf(ctx);
      assertTrial(tenant, trialExpired);
      const { start, resetAt } = periodOf(type, now);
      const limit = limits[type];
      const base =
        QUOTA_PERIOD[type] === "level"
          ? ((l) => (type === "documents" ? l.documents : l.storageBytes))(await deps.levels(ctx))
          : 0;
      const key = {
        tenantId: ctx.tenantId,
        quota: type,
        periodStart: start,
        amount,
        limit,
        base,
        expiresAt: new Date(now + ttlMs),
      };
      // The period's row exists after the first reservation of the period: one statement then.
      let got = await store.reserve(db, key);
      if (!got) {
        await store.ensureCounter(db, key);
        got = await store.reserve(db, key);
      }
      if (!got) {
        const { statuses: s } = await statuses(ctx, [type]);
        touches.record(ctx.request, type, s[type]);
        refused(ctx, type, s[type], amount);
        throw quotaExceeded(type, s[type], amount);
      }
      const used = base + got.used;
      touches.record(ctx.request, type, {
        limit,
        remaining: limit === null ? null : Math.max(0, limit - used - got.reserved),
        resetAt: resetAt?.toISOString() ?? null,
      });
      return {
        id: got.id,
        tenantId: ctx.tenantId,
        quota: type,
        amount,
        periodStart: start,
        resetAt,
        limit,
      };
    } catch (err) {
      return unavailable(err);
    }
  }

  async function release(r: Reservation): Promise<void> {
    try {
      await store.finish(db, {
        tenantId: r.tenantId,
        id: r.id,
        state: "released",
        actual: 0,
        now: new Date(clock.now()),
        levelPeriodStart: LEVEL_PERIOD_START,
      });
    } catch (err) {
      // Not lost: the reservation expires and the sweep gives it back. Counted and logged.
      releaseFailures?.inc();
      deps.logger.error(
        { err, reservationId: r.id, tenantId: r.tenantId, quota: r.quota },
        "quota reservation could not be released; it will expire",
      );
    }
  }

  /**
   * Turns a reservation into use of `actual` (the real amount, which may differ from the
   * reserved one), on the caller's transaction when given, so that it commits with the
   * business write it pays for. Done once: a second settle (a retried job) changes nothing.
   * A reservation that expired meanwhile still counts its `actual` (the work was done).
   */
  async function settle(
    ctx: TenantContext,
    r: Reservation,
    actual: number,
    opts: InTransaction = {},
  ): Promise<void> {
    if (!Number.isSafeInteger(actual) || actual < 0)
      throw new Error(`a settled amount is a whole amount >= 0, not ${actual}`);
    if (r.tenantId !== ctx.tenantId) throw new Error(`reservation ${r.id} is not this tenant's`);
    try {
      const figures = await store.finish(opts.tx ?? db, {
        tenantId: ctx.tenantId,
        id: r.id,
        state: "settled",
        actual,
        now: new Date(clock.now()),
        levelPeriodStart: LEVEL_PERIOD_START,
      });
      if (figures && QUOTA_PERIOD[figures.quota] === "month") {
        touches.record(ctx.request, figures.quota, {
          limit: r.limit,
          remaining:
            r.limit === null ? null : Math.max(0, r.limit - figures.used - figures.reserved),
          resetAt: r.resetAt?.toISOString() ?? null,
        });
      }
    } catch (err) {
      unavailable(err);
    }
  }

  return {
    reserve,
    release,

    /**
     * Reserves each of `items` (all or none: those already made are released when one fails).
     * Amounts of 0 are skipped.
     */
    async reserveAll(
      ctx: TenantContext,
      items: Array<{ quota: QuotaType; amount: number }>,
    ): Promise<Reservation[]> {
      const made: Reservation[] = [];
      try {
        for (const item of items) {
          if (item.amount > 0) made.push(await reserve(ctx, item.quota, item.amount));
        }
        return made;
      } catch (err) {
        for (const r of made) await release(r);
        throw err;
      }
    },

    /**
     * Turns a reservation into use of `actual` (the real amount, which may differ from the
     * reserved one), on the caller's transaction when given, so that it commits with the
     * business write it pays for. Done once: a second settle (a retried job) changes nothing.
     * A reservation that expired meanwhile still counts its `actual` (the work was done).
     */
    settle,

    /** Settles several reservations (on the caller's transaction when given). */
    async settleAll(
      ctx: TenantContext,
      items: Array<{ reservation: Reservation; actual: number }>,
      opts: InTransaction = {},
    ): Promise<void> {
      // Each settle is one statement, atomic and done once: no transaction needed around them.
      for (const i of items) await settle(ctx, i.reservation, i.actual, opts);
    },
    /** Where every quota of the tenant stands now. */
    async status(tenantId: string): Promise<QuotaStatuses> {
      return (await statuses(systemContext(tenantId), QUOTA_TYPES, { fresh: true })).statuses;
    },

    /** The tenant's own view: plan, trial, quotas. */
    async view(ctx: TenantContext) {
      const s = await statuses(ctx, QUOTA_TYPES, { fresh: true });
      return {
        plan: s.tenant.plan,
        trialEndsAt: s.tenant.trialEndsAt,
        trialExpired: s.trialExpired,
        quotas: s.statuses,
      };
    },

    /**
     * Refuses billable work before it starts when the trial has ended (402) or any of `types`
     * is already used up (429), e.g. the ingestion submit path. Reserves nothing: the work's
     * own reservation (the worker's, for tokens) is the exact check. Fails closed (503).
     * Answers the statuses of `types` and of `opts.read` (read, not checked: e.g. documents,
     * which the caller checks under its own lock). Only the requested types are present.
     */
    async assertAvailable(
      ctx: TenantContext,
      types: readonly QuotaType[],
      opts: { read?: readonly QuotaType[] } & InTransaction = {},
    ): Promise<QuotaStatuses> {
      try {
        const s = await statuses(ctx, [...types, ...(opts.read ?? [])], {
          ...(opts.tx ? { tx: opts.tx } : {}),
        });
        assertTrial(s.tenant, s.trialExpired);
        for (const type of types) {
          const st = s.statuses[type];
          touches.record(ctx.request, type, st);
          if (st.limit !== null && st.used + st.reserved >= st.limit) {
            refused(ctx, type, st, 1);
            throw quotaExceeded(type, st, 1);
          }
        }
        return s.statuses;
      } catch (err) {
        return unavailable(err);
      }
    },

    /** The most constrained quota the request touched (the X-Quota-* headers); undefined if none. */
    touchedBy(request: RequestMeta | undefined) {
      return touches.mostConstrained(request);
    },

    /**
     * Expires reservations whose time has passed (giving their amounts back) and purges
     * finished ones older than a day, in bounded batches. The `quotas.sweep` schedule runs it.
     */
    async sweep(): Promise<{ expired: number; purged: number }> {
      const now = new Date(clock.now());
      let expired = 0;
      for (let i = 0; i < 20; i += 1) {
        const n = await store.expire(db, now, SWEEP_BATCH);
        expired += n;
        if (n < SWEEP_BATCH) break;
      }
      let purged = 0;
      const before = new Date(now.getTime() - FINISHED_KEEP_MS);
      for (let i = 0; i < 20; i += 1) {
        const n = await store.purgeFinished(db, before, SWEEP_BATCH);
        purged += n;
        if (n < SWEEP_BATCH) break;
      }
      return { expired, purged };
    },

    ...createQuotaAdmin({
      db,
      statusOf: (tenantId) => statuses(systemContext(tenantId), QUOTA_TYPES, { fresh: true }),
      changed: () => settingsCache.clear(),
      audit: deps.audit,
    }),
  };
}

export type QuotasService = ReturnType<typeof createQuotasService>;
