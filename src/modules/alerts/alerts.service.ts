import { notFound } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import type { Db, InTransaction } from "../../platform/db/index.js";
import { actorRef, type PlatformContext, type TenantContext } from "../../tenancy.js";
import { type AuditLog, canonicalJson } from "../audit/index.js";
import type { AlertPage, AlertView, SettingsView } from "./alerts.schemas.js";
import { type AlertRow, alertsStore as store } from "./alerts.store.js";
import type { AlertCandidate, AlertKind } from "./rules.js";
import { effectiveThresholds, type ThresholdSettings, thresholdsSchema } from "./thresholds.js";

export function toAlertView(r: AlertRow): AlertView {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    kind: r.kind,
    severity: r.severity,
    dedupeKey: r.dedupe_key,
    message: r.message,
    details: r.details as Record<string, unknown>,
    createdAt: r.created_at.toISOString(),
    ackedAt: r.acked_at ? r.acked_at.toISOString() : null,
    ackedBy: (r.acked_by as Record<string, string> | null) ?? null,
  };
}

export interface ListOptions {
  kind?: AlertKind | undefined;
  acked?: "true" | "false" | undefined;
  limit: number;
  cursor?: string | undefined;
}

function page(rows: AlertRow[], limit: number): AlertPage {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return {
    items: items.map(toAlertView),
    nextCursor: rows.length > limit && last ? encodeCursor(last.created_at, last.id) : null,
  };
}

const filterOf = (o: ListOptions) => ({
  kind: o.kind,
  acked: o.acked === undefined ? undefined : o.acked === "true",
  limit: o.limit + 1,
  after: o.cursor ? decodeCursor(o.cursor) : undefined,
});

/**
 * Alerts: raising (once per dedupe key), listing, acknowledging, and a tenant's thresholds.
 * Rows are written once and change only by their acknowledgement: they are what outbound
 * deliveries (webhooks) will read.
 */
export function createAlertsService(deps: {
  db: Db;
  clock: Clock;
  /** Records acknowledgements and threshold changes, in their transactions. */
  audit: Pick<AuditLog, "record">;
}) {
  const { db, clock } = deps;

  async function stored(tenantId: string): Promise<ThresholdSettings> {
    const raw = await store.settings(db, tenantId);
    if (raw === undefined) return {};
    // Written only through `putSettings`, which validated it; a row that no longer parses
    // (an older shape) is a bug to hear about, not a reason to alert with made-up values.
    return thresholdsSchema.parse(raw);
  }

  return {
    /**
     * Raises `alert` for the tenant unless an alert with its dedupe key exists. Returns the
     * alert and whether this call raised it. Safe to run concurrently: one row per key.
     */
    async raise(
      tenantId: string,
      alert: AlertCandidate,
      opts: InTransaction = {},
    ): Promise<{ alert: AlertView | undefined; raised: boolean }> {
      const row = await store.insert(opts.tx ?? db, tenantId, alert, new Date(clock.now()));
      return { alert: row ? toAlertView(row) : undefined, raised: row !== undefined };
    },

    async list(ctx: TenantContext, opts: ListOptions): Promise<AlertPage> {
      return page(await store.list(db, ctx.tenantId, filterOf(opts)), opts.limit);
    },

    /** Every tenant's alerts (platform admins), optionally one tenant's. */
    async adminList(
      _ctx: PlatformContext,
      opts: ListOptions & { tenantId?: string | undefined },
    ): Promise<AlertPage> {
      return page(await store.list(db, opts.tenantId, filterOf(opts)), opts.limit);
    },

    /**
     * Acknowledges the alert. Idempotent: acknowledging it again answers the same alert, with
     * the first acknowledgement's time and actor.
     */
    async ack(ctx: TenantContext, id: string): Promise<AlertView> {
      const by =
        ctx.actor.kind === "system"
          ? { kind: "system", jobId: ctx.actor.job.id }
          : actorRef(ctx.actor);
      const row = await db.transaction(async (tx) => {
        const found = await store.ack(tx, ctx.tenantId, id, by, new Date(clock.now()));
        if (!found) throw notFound("alert");
        // Only the first acknowledgement changes the alert; repeating it records nothing.
        if (found.acked) {
          await deps.audit.record(
            ctx,
            {
              eventType: "alert.acknowledge",
              entityType: "alert",
              entityId: id,
              action: "update",
              oldValues: { ackedAt: null },
              newValues: {
                kind: found.row.kind,
                dedupeKey: found.row.dedupe_key,
                ackedAt: found.row.acked_at?.toISOString() ?? null,
              },
            },
            { tx },
          );
        }
        return found.row;
      });
      return toAlertView(row);
    },

    /** The tenant's thresholds: what it set and what is in force. */
    async settings(ctx: TenantContext): Promise<SettingsView> {
      const settings = await stored(ctx.tenantId);
      return { settings, effective: effectiveThresholds(settings) };
    },

    /** Replaces the tenant's thresholds (keys left out go back to the defaults). */
    async putSettings(ctx: TenantContext, settings: ThresholdSettings): Promise<SettingsView> {
      await db.transaction(async (tx) => {
        const before = ((await store.settings(tx, ctx.tenantId)) ?? {}) as ThresholdSettings;
        await store.putSettings(tx, ctx.tenantId, settings);
        const diff = changedThresholds(before, settings);
        if (diff.keys === 0) return;
        await deps.audit.record(
          ctx,
          {
            eventType: "alert_settings.update",
            entityType: "alert_settings",
            entityId: ctx.tenantId,
            action: "update",
            oldValues: diff.old,
            newValues: diff.new,
          },
          { tx },
        );
      });
      return { settings, effective: effectiveThresholds(settings) };
    },

    /** The thresholds in force for a tenant (the evaluator's read; no actor). */
    async thresholdsOf(tenantId: string) {
      return effectiveThresholds(await stored(tenantId));
    },
  };
}

/**
 * The thresholds whose setting differs, as each side has it: a key absent from a side was not
 * set there (the default applied), which differs from `null` (the rule turned off).
 */
function changedThresholds(before: ThresholdSettings, after: ThresholdSettings) {
  const out = { old: {} as Record<string, unknown>, new: {} as Record<string, unknown>, keys: 0 };
  const b = before as Record<string, unknown>;
  const a = after as Record<string, unknown>;
  for (const k of new Set([...Object.keys(b), ...Object.keys(a)])) {
    // Canonical JSON: the stored settings come back from jsonb with their keys reordered.
    if (k in b && k in a && canonicalJson(b[k] as never) === canonicalJson(a[k] as never)) continue;
    out.keys += 1;
    if (k in b) out.old[k] = b[k];
    if (k in a) out.new[k] = a[k];
  }
  return out;
}

export type AlertsService = ReturnType<typeof createAlertsService>;
