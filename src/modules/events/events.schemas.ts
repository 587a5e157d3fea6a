import { z } from "zod";
import { instant } from "../../http/schemas.js";
import { EVENT_NAMES } from "./taxonomy.js";

/** Request and response schemas of the events and analytics routes. */

function checkWindow(q: { from?: Date | undefined; to?: Date | undefined }, ctx: z.RefinementCtx) {
  if (q.from && q.to && !(q.from < q.to)) {
    ctx.addIssue({ code: "custom", path: ["from"], message: "must be before to" });
  }
}

/** A tenant's rows; without it, every tenant's (platform admins only). */
const tenantIdShape = { tenantId: z.uuid().optional() };

const listShape = {
  name: z.enum(EVENT_NAMES).optional(),
  from: instant().optional(),
  to: instant().optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
};
export const listQuerySchema = z.strictObject(listShape).superRefine(checkWindow);
export const adminListQuerySchema = z
  .strictObject({ ...listShape, ...tenantIdShape })
  .superRefine(checkWindow);

const conversationsShape = {
  period: z.enum(["day", "week", "month"]).default("day"),
  /** The latest buckets that have conversations, at most. */
  buckets: z.coerce.number().int().min(1).max(366).default(30),
};
export const conversationsQuerySchema = z.strictObject(conversationsShape);
export const adminConversationsQuerySchema = z.strictObject({
  ...conversationsShape,
  ...tenantIdShape,
});

/** The last `days` days (up to the default retention). */
const days = (fallback: number) => z.coerce.number().int().min(1).max(400).default(fallback);
export const daysQuerySchema = (fallback: number) => z.strictObject({ days: days(fallback) });
export const adminDaysQuerySchema = (fallback: number) =>
  z.strictObject({ days: days(fallback), ...tenantIdShape });

export const eventSchema = z.object({
  id: z.uuid(),
  tenantId: z.uuid(),
  name: z.string(),
  /** The event's data as its name's schema shapes it (README, "Events and analytics"). */
  data: z.record(z.string(), z.unknown()),
  sessionId: z.string().nullable(),
  userId: z.uuid().nullable(),
  createdAt: z.iso.datetime(),
});

export const eventsPageSchema = z.object({
  items: z.array(eventSchema),
  nextCursor: z.string().nullable(),
});

export const conversationsSchema = z.object({
  period: z.enum(["day", "week", "month"]),
  /** Buckets (UTC) with at least one conversation, oldest first. */
  series: z.array(z.object({ start: z.iso.datetime(), count: z.number().int() })),
});

export const escalationRateSchema = z.object({
  days: z.number().int(),
  conversations: z.number().int(),
  escalations: z.number().int(),
  /** escalations / conversations; null without conversations. */
  rate: z.number().nullable(),
});

const ingestionCounts = {
  started: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  /** Chunks of the completed ingestions. */
  chunks: z.number().int(),
};
export const ingestionSchema = z.object({
  days: z.number().int(),
  ...ingestionCounts,
  /** failed / (completed + failed); null when none finished. */
  failureRate: z.number().nullable(),
  /** Per UTC day with any ingestion event, oldest first. */
  series: z.array(z.object({ day: z.iso.datetime(), ...ingestionCounts })),
  failuresByCode: z.array(z.object({ errorCode: z.string(), count: z.number().int() })),
});

export const quotaFrictionSchema = z.object({
  days: z.number().int(),
  total: z.number().int(),
  byQuota: z.array(
    z.object({ quotaType: z.string(), count: z.number().int(), tenants: z.number().int() }),
  ),
});

export const planFunnelSchema = z.object({
  days: z.number().int(),
  steps: z.array(
    z.object({ name: z.string(), events: z.number().int(), tenants: z.number().int() }),
  ),
  transitions: z.array(z.object({ from: z.string(), to: z.string(), count: z.number().int() })),
});
