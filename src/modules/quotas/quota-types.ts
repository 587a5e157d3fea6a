/**
 * The quota types and their periods. Monthly quotas count what was used in a UTC calendar
 * month and start again at the next; levels (documents stored, storage bytes) are what the
 * tenant holds now, and never reset.
 */
export const QUOTA_TYPES = [
  "tokens",
  "chat_messages",
  "searches",
  "documents",
  "storage_bytes",
] as const;

export type QuotaType = (typeof QUOTA_TYPES)[number];

export type QuotaPeriod = "month" | "level";

export const QUOTA_PERIOD: Record<QuotaType, QuotaPeriod> = {
  tokens: "month",
  chat_messages: "month",
  searches: "month",
  documents: "level",
  storage_bytes: "level",
};

/** The period row a level quota's reservations are counted on. */
export const LEVEL_PERIOD_START = new Date(0);

/** The period `type` is counted in at `now` (ms): its start, and when it resets (null: never). */
export function periodOf(type: QuotaType, now: number): { start: Date; resetAt: Date | null } {
  if (QUOTA_PERIOD[type] === "level") return { start: LEVEL_PERIOD_START, resetAt: null };
  const d = new Date(now);
  const start = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
  const resetAt = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
  return { start, resetAt };
}

/** A limit: a count, or null for unlimited. */
export type Limit = number | null;

/** A limit per quota type (each one present). */
export type QuotaLimits = Record<QuotaType, Limit>;
