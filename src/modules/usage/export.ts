import type { Db } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { UsagePoint } from "./metrics.schemas.js";
import type { DocumentFacts } from "./reports.js";
import { toUsagePoint } from "./reports.js";
import { reportsStore } from "./reports.store.js";
import type { Rollups } from "./rollups.js";
import type { Period } from "./rollups.store.js";

/**
 * Exports, streamed: rows are read in keyset pages and written as they come, so memory holds
 * one page whatever the range. CSV follows RFC 4180 (CRLF line ends, a field with a comma,
 * quote, CR or LF quoted, quotes doubled, a header line); JSON Lines is one object per line.
 */

const PAGE = 1000;
/** Titles looked up per export are cached up to this many, then the cache starts over. */
const TITLE_CACHE = 10_000;

export type ExportFormat = "csv" | "jsonl";

/** One CSV field, quoted when RFC 4180 requires it. */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return "";
  const s = v instanceof Date ? v.toISOString() : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function csvLine(values: readonly unknown[]): string {
  return `${values.map(csvField).join(",")}\r\n`;
}

export const EVENT_COLUMNS = [
  "occurred_at",
  "recorded_at",
  "event_id",
  "metric",
  "quantity",
  "items",
  "unit",
  "provider",
  "model",
  "payer",
  "cost_usd",
  "document_id",
  "document_title",
  "subject_type",
  "subject_id",
] as const;

export const USAGE_COLUMNS = [
  "period",
  "periodStart",
  "periodEnd",
  "apiCallsTotal",
  "apiCallsSuccessful",
  "apiCallsFailed",
  "apiCallsRateLimited",
  "quotaExceededCount",
  "errorCount",
  "errorRate",
  "latencyAvgMs",
  "latencyP95Ms",
  "latencyP99Ms",
  "peakQps",
  "bytesIn",
  "bytesOut",
  "embeddingsGenerated",
  "embeddingTokens",
  "searches",
  "chatMessages",
  "chatInputTokens",
  "chatOutputTokens",
  "totalTokens",
  "documentsIngested",
  "documentsFailed",
  "documentsStored",
  "storageBytes",
  "costUsd",
  "costPlatformUsd",
  "costTenantUsd",
  "quotaLimit",
  "quotaRemaining",
] as const satisfies ReadonlyArray<keyof UsagePoint>;

export function createExports(deps: {
  db: Db;
  rollups: Pick<Rollups, "read">;
  documents: Pick<DocumentFacts, "summaries">;
  /** Exports are security-relevant reads: each is recorded before its first row is read. */
  audit: Pick<AuditLog, "record">;
}) {
  /** The tenant's billable events of `[from, to)`, with document titles, page by page. */
  async function* events(ctx: TenantContext, from: Date, to: Date, format: ExportFormat) {
    // The CSV header goes out with the first page, so that the first chunk follows a read.
    let head = format === "csv" ? csvLine(EVENT_COLUMNS) : "";
    const titles = new Map<string, string | null>();
    let after: { at: Date; id: string } | null = null;
    for (;;) {
      const rows = await reportsStore.eventsPage(deps.db, ctx.tenantId, from, to, after, PAGE);
      if (rows.length === 0) {
        if (head) yield head;
        return;
      }
      const missing = [
        ...new Set(
          rows.map((r) => r.document_id).filter((id): id is string => !!id && !titles.has(id)),
        ),
      ];
      if (missing.length > 0) {
        if (titles.size + missing.length > TITLE_CACHE) titles.clear();
        const found = new Map(
          (await deps.documents.summaries(ctx, missing)).map((d) => [d.id, d.title]),
        );
        for (const id of missing) titles.set(id, found.get(id) ?? null);
      }
      let out = head;
      head = "";
      for (const r of rows) {
        const record = {
          occurred_at: r.occurred_at.toISOString(),
          recorded_at: r.recorded_at.toISOString(),
          event_id: r.id,
          metric: r.metric,
          quantity: r.quantity,
          items: r.items,
          unit: r.unit,
          provider: r.provider,
          model: r.model,
          payer: r.payer,
          cost_usd: r.cost_usd,
          document_id: r.document_id,
          document_title: r.document_id ? (titles.get(r.document_id) ?? null) : null,
          subject_type: r.subject_type,
          subject_id: r.subject_id,
        };
        out +=
          format === "csv"
            ? csvLine(EVENT_COLUMNS.map((c) => record[c]))
            : `${JSON.stringify(record)}\n`;
      }
      yield out;
      const last = rows[rows.length - 1] as (typeof rows)[number];
      after = { at: last.occurred_at, id: last.id };
      if (rows.length < PAGE) return;
    }
  }

  /** The tenant's roll-up rows of `period` in `[from, to)` (bounded by the route's range). */
  async function* usage(
    ctx: TenantContext,
    period: Period,
    from: Date,
    to: Date,
    format: ExportFormat,
  ) {
    const rows = await deps.rollups.read(ctx.tenantId, period, from, to);
    let head = format === "csv" ? csvLine(USAGE_COLUMNS) : "";
    if (rows.length === 0 && head) yield head;
    for (let i = 0; i < rows.length; i += PAGE) {
      let out = head;
      head = "";
      for (const r of rows.slice(i, i + PAGE)) {
        const p = toUsagePoint(r);
        out +=
          format === "csv" ? csvLine(USAGE_COLUMNS.map((c) => p[c])) : `${JSON.stringify(p)}\n`;
      }
      yield out;
    }
  }

  /**
   * Records that the tenant's usage is being exported (`access`), in a transaction of its own
   * that commits before the export starts: an export that could not be recorded is refused.
   */
  async function recordExport(
    ctx: TenantContext,
    what: { kind: "events" | "usage"; format: ExportFormat; from: Date; to: Date; period?: Period },
  ): Promise<void> {
    await deps.db.transaction((tx) =>
      deps.audit.record(
        ctx,
        {
          eventType: "usage.export",
          entityType: "usage_export",
          entityId: null,
          action: "access",
          newValues: {
            kind: what.kind,
            format: what.format,
            from: what.from.toISOString(),
            to: what.to.toISOString(),
            ...(what.period ? { period: what.period } : {}),
          },
        },
        { tx },
      ),
    );
  }

  return { events, usage, recordExport };
}

export type Exports = ReturnType<typeof createExports>;
