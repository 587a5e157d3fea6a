import type { Logger } from "pino";
import { AppError } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import type { Db } from "../../platform/db/index.js";
import { isUuid } from "../../platform/ids.js";
import type { PlatformContext, TenantContext } from "../../tenancy.js";
import "./reconciliation.errors.js";
import type {
  PlatformReport,
  Reconciled,
  ReconciliationLine,
  TenantReport,
} from "./reconciliation.schemas.js";
import { SUMMED_METRICS, reconciliationStore as store } from "./reconciliation.store.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const MAX_WINDOW_MS = 31 * DAY_MS;
const MAX_SUBJECTS = 100;

/**
 * The roll-ups' totals for a tenant over [from, to) (whole hours), per metric: summed
 * quantities and `cost_usd`, as exact decimals. Implemented over `usage_rollups` by the
 * roll-ups part; until it is wired, reconciliation runs without it (`rollups: false`).
 */
export interface RollupSource {
  totals(
    tenantId: string,
    from: Date,
    to: Date,
  ): Promise<Partial<Record<(typeof SUMMED_METRICS)[number] | "cost_usd", string | number>>>;
}

/** The documents service's figures (ingestion module), by shape: no import, no cycle. */
export interface EmbeddingFiguresSource {
  embeddingFigures(
    ctx: TenantContext,
    w: { versionIds: string[]; documentIds: string[]; from: Date; to: Date },
  ): Promise<{
    versions: Array<{
      versionId: string;
      documentId: string;
      embeddingTokens: number;
      isActive: boolean;
      documentEmbeddingTokens: number;
      embeddedAt: Date;
    }>;
    existingDocumentIds: string[];
  }>;
  tenantsWithEmbeddings(from: Date, to: Date): Promise<string[]>;
}

/** Where a difference becomes an alert (the alerts service's `raise`, by shape). */
export interface MismatchAlerts {
  raise(
    tenantId: string,
    alert: {
      kind: "reconciliation_mismatch";
      severity: "critical";
      dedupeKey: string;
      message: string;
      details: Record<string, unknown>;
    },
  ): Promise<{ raised: boolean }>;
}

/** A decimal string in one spelling (`1.50` and `1.5000000000` agree; `-0` is `0`). */
export function normalizeDecimal(v: string | number): string {
  const s = typeof v === "number" ? v.toString() : v.trim();
  const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m) return s;
  const int = (m[2] ?? "").replace(/^0+(?=\d)/, "") || "0";
  const frac = (m[3] ?? "").replace(/0+$/, "");
  const out = frac ? `${int}.${frac}` : int;
  return out === "0" ? "0" : `${m[1]}${out}`;
}

const iso = (d: Date) => d.toISOString();

/** Checks a window: whole UTC hours (the roll-ups' grain), from before to, at most 31 days. */
export function checkWindow(from: Date, to: Date): void {
  const problem =
    from.getTime() % HOUR_MS !== 0 || to.getTime() % HOUR_MS !== 0
      ? "from and to must be on whole UTC hours"
      : from >= to
        ? "from must be before to"
        : to.getTime() - from.getTime() > MAX_WINDOW_MS
          ? "the window may span at most 31 days"
          : undefined;
  if (problem) {
    throw new AppError("reconciliation.invalid_window", problem, {
      from: iso(from),
      to: iso(to),
    });
  }
}

/** The previous complete UTC day before `now`. */
export function previousDay(now: number): { from: Date; to: Date } {
  const to = Math.floor(now / DAY_MS) * DAY_MS;
  return { from: new Date(to - DAY_MS), to: new Date(to) };
}

/**
 * Usage reconciliation: for a window, per tenant and metric, the billable events against the
 * roll-ups and against the business rows they describe, listing every difference. See
 * docs/architecture.md "Alerts and reconciliation" for each comparison.
 */
export function createReconciliation(deps: {
  db: Db;
  documents: EmbeddingFiguresSource;
  rollups?: RollupSource | undefined;
  alerts?: MismatchAlerts | undefined;
  clock: Clock;
  logger: Pick<Logger, "error">;
}) {
  const { db } = deps;

  function line(
    tenantId: string,
    metric: Reconciled,
    w: { from: Date; to: Date },
    v: { events: string | null; rollups?: string | null; business?: string | null },
    extra: Partial<Pick<ReconciliationLine, "unverifiable" | "subjects">> = {},
  ): ReconciliationLine {
    const sources = [v.events, v.rollups ?? null, v.business ?? null]
      .filter((x): x is string => x !== null)
      .map(normalizeDecimal);
    return {
      tenantId,
      metric,
      from: iso(w.from),
      to: iso(w.to),
      events: v.events === null ? null : normalizeDecimal(v.events),
      rollups: v.rollups == null ? null : normalizeDecimal(v.rollups),
      business: v.business == null ? null : normalizeDecimal(v.business),
      consistent: sources.every((s) => s === sources[0]),
      unverifiable: extra.unverifiable ?? 0,
      subjects: extra.subjects ?? [],
    };
  }

  /** Versions' embedding events against the versions and their documents (by subject). */
  async function versionLines(ctx: TenantContext, w: { from: Date; to: Date }) {
    const events = await store.versionEvents(db, ctx.tenantId, w.from, w.to);
    const versionIds = [...new Set(events.map((e) => e.subject_id).filter(isUuid))];
    const documentIds = [
      ...new Set(events.map((e) => e.document_id).filter((d): d is string => d !== null)),
    ];
    const figures = await deps.documents.embeddingFigures(ctx, { ...w, versionIds, documentIds });
    const byVersion = new Map(figures.versions.map((v) => [v.versionId, v]));
    const existing = new Set(figures.existingDocumentIds);
    // Embedded in the window but perhaps billed at another time: only those with no event at
    // all are missing (an event just across the window's edge belongs to its own window).
    const candidates = figures.versions.filter(
      (v) => v.embeddedAt >= w.from && v.embeddedAt < w.to && v.embeddingTokens > 0,
    );
    const billed = await store.versionsWithEvents(
      db,
      ctx.tenantId,
      candidates.map((v) => v.versionId),
    );
    let evSum = 0n;
    let bizSum = 0n;
    let docEv = 0n;
    let docBiz = 0n;
    let unverifiable = 0;
    const subjects: ReconciliationLine["subjects"] = [];
    const docSubjects: ReconciliationLine["subjects"] = [];
    const differs = (s: ReconciliationLine["subjects"][number], list = subjects) => {
      if (list.length < MAX_SUBJECTS) list.push(s);
    };
    for (const e of events) {
      const v = byVersion.get(e.subject_id);
      if (!v) {
        if (e.document_id !== null && !existing.has(e.document_id)) {
          unverifiable += 1;
          continue;
        }
        evSum += BigInt(e.quantity);
        differs({
          subjectType: "document_version",
          subjectId: e.subject_id,
          documentId: e.document_id,
          events: String(e.quantity),
          business: null,
        });
        continue;
      }
      evSum += BigInt(e.quantity);
      bizSum += BigInt(v.embeddingTokens);
      const subject = {
        subjectType: "document_version" as const,
        subjectId: v.versionId,
        documentId: v.documentId,
        events: String(e.quantity),
      };
      if (e.quantity !== v.embeddingTokens)
        differs({ ...subject, business: String(v.embeddingTokens) });
      if (v.isActive) {
        docEv += BigInt(e.quantity);
        docBiz += BigInt(v.documentEmbeddingTokens);
        if (e.quantity !== v.documentEmbeddingTokens)
          differs({ ...subject, business: String(v.documentEmbeddingTokens) }, docSubjects);
      }
    }
    for (const v of candidates) {
      if (billed.has(v.versionId)) continue;
      bizSum += BigInt(v.embeddingTokens);
      differs({
        subjectType: "document_version",
        subjectId: v.versionId,
        documentId: v.documentId,
        events: null,
        business: String(v.embeddingTokens),
      });
    }
    return [
      line(
        ctx.tenantId,
        "version_embedding_tokens",
        w,
        { events: evSum.toString(), business: bizSum.toString() },
        { unverifiable, subjects },
      ),
      line(
        ctx.tenantId,
        "document_embedding_tokens",
        w,
        { events: docEv.toString(), business: docBiz.toString() },
        { subjects: docSubjects },
      ),
    ];
  }

  async function tenantLines(
    tenantId: string,
    w: { from: Date; to: Date },
  ): Promise<ReconciliationLine[]> {
    // The figures are read as the platform would; the context only names the tenant.
    const ctx: TenantContext = {
      tenantId,
      actor: {
        kind: "system",
        job: { id: "reconciliation", name: "usage.reconcile" },
        causedBy: null,
      },
      request: null,
    };
    const [totals, cost, rollups, searches] = await Promise.all([
      store.eventTotals(db, tenantId, w.from, w.to),
      store.eventCost(db, tenantId, w.from, w.to),
      deps.rollups ? deps.rollups.totals(tenantId, w.from, w.to) : Promise.resolve(undefined),
      store.searchCalls(db, tenantId, w.from, w.to),
    ]);
    const byMetric = new Map(totals.map((t) => [t.metric as string, t]));
    const r = (m: string) =>
      rollups === undefined ? null : normalizeDecimal(rollups[m as keyof typeof rollups] ?? 0);
    const lines = SUMMED_METRICS.map((m) =>
      line(tenantId, m, w, {
        events: byMetric.get(m)?.quantity ?? "0",
        rollups: r(m),
        business: m === "search_queries" ? String(searches) : null,
      }),
    );
    lines.push(line(tenantId, "cost_usd", w, { events: cost, rollups: r("cost_usd") }));
    lines.push(...(await versionLines(ctx, w)));
    return lines;
  }

  const report = (lines: ReconciliationLine[]) => lines.filter((l) => !l.consistent);

  async function platform(w: { from: Date; to: Date }, tenantId?: string) {
    checkWindow(w.from, w.to);
    const tenants = tenantId
      ? [tenantId]
      : [
          ...new Set([
            ...(await store.activeTenants(db, w.from, w.to)),
            ...(await deps.documents.tenantsWithEmbeddings(w.from, w.to)),
          ]),
        ].sort();
    const differences: ReconciliationLine[] = [];
    for (const t of tenants) differences.push(...report(await tenantLines(t, w)));
    return { tenants, differences };
  }

  const windowOf = (q: { from?: Date | undefined; to?: Date | undefined }) => {
    const day = previousDay(deps.clock.now());
    return {
      from: q.from ?? day.from,
      to: q.to ?? (q.from ? new Date(q.from.getTime() + DAY_MS) : day.to),
    };
  };

  return {
    /** The tenant's reconciliation over [from, to) (default: the previous UTC day). */
    async forTenant(
      ctx: TenantContext,
      q: { from?: Date | undefined; to?: Date | undefined },
    ): Promise<TenantReport> {
      const w = windowOf(q);
      checkWindow(w.from, w.to);
      const lines = await tenantLines(ctx.tenantId, w);
      const differences = report(lines);
      return {
        from: iso(w.from),
        to: iso(w.to),
        consistent: differences.length === 0,
        rollups: deps.rollups !== undefined,
        lines,
        differences,
      };
    },

    /** Every tenant's differences over [from, to) (platform admins), or one tenant's. */
    async forPlatform(
      _ctx: PlatformContext,
      q: { from?: Date | undefined; to?: Date | undefined; tenantId?: string | undefined },
    ): Promise<PlatformReport> {
      const w = windowOf(q);
      const r = await platform(w, q.tenantId);
      return {
        from: iso(w.from),
        to: iso(w.to),
        consistent: r.differences.length === 0,
        rollups: deps.rollups !== undefined,
        tenants: r.tenants.length,
        differences: r.differences,
      };
    },

    /**
     * The daily run (`usage.reconcile`): the previous UTC day, every tenant; each tenant with a
     * difference gets one `reconciliation_mismatch` alert per day reconciled.
     */
    async runDaily(): Promise<{ tenants: number; mismatched: string[] }> {
      const w = previousDay(deps.clock.now());
      const r = await platform(w);
      const byTenant = new Map<string, ReconciliationLine[]>();
      for (const d of r.differences) {
        byTenant.set(d.tenantId, [...(byTenant.get(d.tenantId) ?? []), d]);
      }
      for (const [tenantId, lines] of byTenant) {
        const day = iso(w.from).slice(0, 10);
        await deps.alerts?.raise(tenantId, {
          kind: "reconciliation_mismatch",
          severity: "critical",
          dedupeKey: `reconciliation_mismatch:${day}`,
          message: `usage of ${day} does not reconcile: ${lines.map((l) => l.metric).join(", ")}`,
          details: {
            from: iso(w.from),
            to: iso(w.to),
            differences: lines.map((l) => ({ ...l, subjects: l.subjects.slice(0, 20) })),
          },
        });
      }
      return { tenants: r.tenants.length, mismatched: [...byTenant.keys()] };
    },
  };
}

export type Reconciliation = ReturnType<typeof createReconciliation>;
