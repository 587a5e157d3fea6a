import { z } from "zod";
import { instant } from "../../http/schemas.js";

/**
 * Request and response schemas of the metrics, reports and export routes. Windows are
 * half-open `[from, to)`, ISO 8601 instants, UTC periods; each period bounds its range so a
 * time series is never unbounded (an hour series at most 31 days, a day series 366 days, a
 * month series 10 years; events 366 days).
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
export const MAX_RANGE_MS = { hour: 31 * DAY, day: 366 * DAY, month: 3660 * DAY } as const;
export const MAX_EVENTS_RANGE_MS = 366 * DAY;

export const periodSchema = z.enum(["hour", "day", "month"]);

/** from < to and a bounded range (the service fills in defaults for absent ends). */
function checkWindow(maxMs: number) {
  return (q: { from?: Date | undefined; to?: Date | undefined }, ctx: z.RefinementCtx) => {
    if (!q.from || !q.to) return;
    if (!(q.from < q.to)) {
      ctx.addIssue({ code: "custom", path: ["from"], message: "must be before to" });
    } else if (q.to.getTime() - q.from.getTime() > maxMs) {
      ctx.addIssue({
        code: "custom",
        path: ["to"],
        message: `the range may span at most ${Math.round(maxMs / DAY)} days`,
      });
    }
  };
}

const window = { from: instant().optional(), to: instant().optional() };

export const usageQuery = z
  .strictObject({ ...window, period: periodSchema.default("day") })
  .superRefine((q, ctx) => checkWindow(MAX_RANGE_MS[q.period])(q, ctx));

export const costsQuery = usageQuery;

export const tokensQuery = z
  .strictObject({ ...window, limit: z.coerce.number().int().min(1).max(500).default(100) })
  .superRefine(checkWindow(MAX_EVENTS_RANGE_MS));

export const exportQuery = z
  .strictObject({
    ...window,
    format: z.enum(["csv", "jsonl"]).optional(),
    kind: z.enum(["events", "usage"]).default("events"),
    period: periodSchema.default("day"),
  })
  .superRefine((q, ctx) =>
    checkWindow(q.kind === "events" ? MAX_EVENTS_RANGE_MS : MAX_RANGE_MS[q.period])(q, ctx),
  );

export const reportQuery = z.strictObject({
  period: z.enum(["day", "week", "month"]).default("day"),
});

export const globalQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

const money = z.string().describe("USD, exact decimal (numeric), e.g. 0.0000200000");

/** One window of the usage time series (a roll-up row). */
export const usagePoint = z.object({
  period: periodSchema,
  periodStart: z.string(),
  periodEnd: z.string(),
  apiCallsTotal: z.number().int(),
  apiCallsSuccessful: z.number().int(),
  apiCallsFailed: z.number().int().describe("status ≥ 400"),
  apiCallsRateLimited: z.number().int().describe("429 rate_limit.exceeded"),
  quotaExceededCount: z.number().int().describe("answers quota.exceeded"),
  errorCount: z.number().int().describe("status ≥ 500"),
  errorRate: z.number().describe("errorCount / apiCallsTotal, 0..1"),
  latencyAvgMs: z.number(),
  latencyP95Ms: z.number().nullable(),
  latencyP99Ms: z.number().nullable(),
  peakQps: z.number().int().describe("most calls in any one second of the window"),
  bytesIn: z.number().int(),
  bytesOut: z.number().int(),
  embeddingsGenerated: z.number().int(),
  embeddingTokens: z.number().int(),
  searches: z.number().int(),
  chatMessages: z.number().int(),
  chatInputTokens: z.number().int(),
  chatOutputTokens: z.number().int(),
  totalTokens: z.number().int(),
  documentsIngested: z.number().int(),
  documentsFailed: z.number().int(),
  documentsStored: z.number().int().nullable().describe("a level: the last snapshot in the window"),
  storageBytes: z.number().int().nullable().describe("a level: the last snapshot in the window"),
  costUsd: money,
  costPlatformUsd: money,
  costTenantUsd: money,
  quotaLimit: z.number().int().nullable(),
  quotaRemaining: z.number().int().nullable(),
});
export type UsagePoint = z.infer<typeof usagePoint>;

export const usageSeries = z.object({
  period: periodSchema,
  from: z.string(),
  to: z.string(),
  items: z.array(usagePoint),
});
export type UsageSeries = z.infer<typeof usageSeries>;

const totals = z.object({
  apiCalls: z.number().int(),
  successfulCalls: z.number().int(),
  totalTokens: z.number().int(),
  embeddingTokens: z.number().int(),
  searches: z.number().int(),
  costUsd: money,
  costPlatformUsd: money,
  costTenantUsd: money,
  successRate: z.number().nullable().describe("successful / all calls; null without calls"),
});
export type Totals = z.infer<typeof totals>;

const documentStats = z.object({
  total: z.number().int(),
  processing: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  totalSizeBytes: z.number().int(),
  embeddingTokens: z.number().int(),
  embeddingCostUsd: money,
  byType: z.array(z.object({ docType: z.string(), documents: z.number().int() })),
});

export const overviewResponse = z.object({
  last24h: totals.extend({
    latencyP95Ms: z.number().nullable(),
    errorRate: z.number(),
  }),
  monthToDate: totals,
  documents: documentStats,
  rolledUpThrough: z
    .string()
    .nullable()
    .describe("raw rows recorded up to here are in the figures"),
});

export const documentsMetricsResponse = documentStats.extend({
  last30Days: z.object({ ingested: z.number().int(), failed: z.number().int() }),
});

export const tokenRow = z.object({
  documentId: z.string(),
  title: z.string().nullable().describe("null when the document was deleted since"),
  docType: z.string().nullable(),
  status: z.string().nullable(),
  chunkCount: z.number().int().nullable(),
  characterCount: z.number().int().nullable(),
  embeddingTokens: z.number().int().describe("from the ledger, in the window"),
  embeddingCostUsd: money,
  embeddings: z.number().int(),
  processingTimeMs: z.number().int().nullable(),
  createdAt: z.string().nullable(),
});
export type TokenRow = z.infer<typeof tokenRow>;

export const tokensResponse = z.object({
  from: z.string(),
  to: z.string(),
  items: z.array(tokenRow),
});

export const costRow = z.object({
  periodStart: z.string(),
  metric: z.string(),
  payer: z.enum(["platform", "tenant"]),
  quantity: z.number().int(),
  events: z.number().int(),
  costUsd: money,
});
export const costsResponse = z.object({
  period: periodSchema,
  from: z.string(),
  to: z.string(),
  items: z.array(costRow),
  totals: z.object({ costUsd: money, costPlatformUsd: money, costTenantUsd: money }),
});

const change = z
  .number()
  .nullable()
  .describe("(current − previous) / previous; null when previous is 0");
export const reportResponse = z.object({
  period: z.enum(["day", "week", "month"]),
  from: z.string(),
  to: z.string(),
  summary: z.object({
    totalTokens: z.number().int(),
    totalApiCalls: z.number().int(),
    totalCost: money,
    successRate: z.number().nullable(),
  }),
  previous: z.object({
    from: z.string(),
    to: z.string(),
    totalTokens: z.number().int(),
    totalApiCalls: z.number().int(),
    totalCost: money,
    successRate: z.number().nullable(),
  }),
  trend: z.object({ tokens: change, apiCalls: change, cost: change }),
  topDocuments: z.array(tokenRow),
});

export const customerUsageResponse = z.object({
  tenantId: z.string(),
  month: usagePoint.nullable(),
  today: usagePoint.nullable(),
  /** Each quota's limit (null: unlimited), use and period; null when quotas are not wired. */
  quotas: z
    .record(
      z.string(),
      z.object({
        limit: z.number().int().nullable(),
        used: z.number().int(),
        reserved: z.number().int(),
        remaining: z.number().int().nullable(),
        periodStart: z.string().nullable(),
        resetAt: z.string().nullable(),
      }),
    )
    .nullable(),
});

export const adminCustomerUsageResponse = usageSeries.extend({
  tenantId: z.string(),
  totals,
});

export const globalResponse = z.object({
  month: z.object({ from: z.string(), to: z.string() }),
  customers: z.array(
    z.object({
      tenantId: z.string(),
      name: z.string().nullable(),
      apiCalls: z.number().int(),
      totalTokens: z.number().int(),
      searches: z.number().int(),
      costUsd: money,
    }),
  ),
  topUsers: z.array(
    z.object({
      tenantId: z.string(),
      documentId: z.string(),
      title: z.string().nullable(),
      embeddingTokens: z.number().int(),
      embeddingCostUsd: money,
    }),
  ),
  systemStats: z.object({
    tenantsWithUsage: z.number().int(),
    apiCalls: z.number().int(),
    totalTokens: z.number().int(),
    costUsd: money,
    documents: z.number().int(),
    completedDocuments: z.number().int(),
    avgTokensPerDocument: z.number(),
    avgProcessingTimeMs: z.number(),
  }),
});
