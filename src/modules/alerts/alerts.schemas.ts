import { z } from "zod";
import { ALERT_KINDS, SEVERITIES } from "./rules.js";
import { thresholdsSchema } from "./thresholds.js";

export const alertSchema = z.object({
  id: z.uuid(),
  tenantId: z.uuid(),
  kind: z.enum(ALERT_KINDS),
  severity: z.enum(SEVERITIES),
  /** The condition and its period; an alert is raised once per key. */
  dedupeKey: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()),
  createdAt: z.iso.datetime(),
  ackedAt: z.iso.datetime().nullable(),
  /** Who acknowledged it, by id (`{ kind: "user", userId }`, `{ kind: "api_key", keyId }`). */
  ackedBy: z.record(z.string(), z.string()).nullable(),
});
export type AlertView = z.infer<typeof alertSchema>;

export const alertPageSchema = z.object({
  items: z.array(alertSchema),
  nextCursor: z.string().nullable(),
});
export type AlertPage = z.infer<typeof alertPageSchema>;

const listQueryShape = {
  kind: z.enum(ALERT_KINDS).optional(),
  /** `true`: acknowledged ones only; `false`: open ones only. */
  acked: z.enum(["true", "false"]).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
};
export const listQuerySchema = z.strictObject(listQueryShape);
export const adminListQuerySchema = z.strictObject({
  ...listQueryShape,
  tenantId: z.uuid().optional(),
});

const effectiveSchema = z.object({
  errorRate: z.object({ threshold: z.number(), minCalls: z.number().int() }),
  costUsdMonthly: z.number().nullable(),
  runaway: z.object({ factor: z.number(), floor: z.number().int() }),
});
export const settingsSchema = z.object({
  /** What the tenant set (keys left out take the defaults). */
  settings: thresholdsSchema,
  /** The thresholds in force. */
  effective: effectiveSchema,
});
export type SettingsView = z.infer<typeof settingsSchema>;
export const settingsBodySchema = thresholdsSchema;
