import { z } from "zod";
import { instant } from "../../http/schemas.js";

/**
 * What a reconciliation line compares:
 * - `embedding_tokens`, `search_queries`, `chat_input_tokens`, `chat_output_tokens`,
 *   `chat_messages`, `cost_usd`: the billable events' sum in the window against the roll-ups'
 *   (and, for `search_queries`, the successful search calls in `api_calls`);
 * - `version_embedding_tokens`: the embedding events of document versions against those
 *   versions' `embedding_tokens`, subject by subject;
 * - `document_embedding_tokens`: for versions now active, their events against their
 *   documents' `embedding_tokens`.
 */
export const RECONCILED = [
  "embedding_tokens",
  "search_queries",
  "chat_input_tokens",
  "chat_output_tokens",
  "chat_messages",
  "cost_usd",
  "version_embedding_tokens",
  "document_embedding_tokens",
] as const;
export type Reconciled = (typeof RECONCILED)[number];

/** A value as an exact decimal string; null when that source does not describe the metric. */
const value = z.string().nullable();

export const subjectSchema = z.object({
  subjectType: z.literal("document_version"),
  subjectId: z.string(),
  documentId: z.string().nullable(),
  events: value,
  business: value,
});

export const lineSchema = z.object({
  tenantId: z.uuid(),
  metric: z.enum(RECONCILED),
  from: z.iso.datetime(),
  to: z.iso.datetime(),
  events: value,
  rollups: value,
  business: value,
  /** Every source present agrees. */
  consistent: z.boolean(),
  /** Events whose document was deleted since: their versions are gone, so not compared. */
  unverifiable: z.number().int(),
  /** The subjects that differ (at most 100 per line). */
  subjects: z.array(subjectSchema),
});
export type ReconciliationLine = z.infer<typeof lineSchema>;

export const tenantReportSchema = z.object({
  from: z.iso.datetime(),
  to: z.iso.datetime(),
  consistent: z.boolean(),
  /** Whether roll-ups took part (absent until the roll-ups are wired in). */
  rollups: z.boolean(),
  lines: z.array(lineSchema),
  differences: z.array(lineSchema),
});
export type TenantReport = z.infer<typeof tenantReportSchema>;

export const platformReportSchema = z.object({
  from: z.iso.datetime(),
  to: z.iso.datetime(),
  consistent: z.boolean(),
  rollups: z.boolean(),
  /** Tenants checked: every tenant with an event, a call or an embedded version in the window. */
  tenants: z.number().int(),
  differences: z.array(lineSchema),
});
export type PlatformReport = z.infer<typeof platformReportSchema>;

export const windowQuerySchema = z.strictObject({
  from: instant().optional(),
  to: instant().optional(),
});
export const adminWindowQuerySchema = z.strictObject({
  from: instant().optional(),
  to: instant().optional(),
  tenantId: z.uuid().optional(),
});
