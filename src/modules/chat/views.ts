import {
  type Citation,
  citationSchema,
  type MessageView,
  type SessionView,
} from "./chat.schemas.js";
import type { MessageRow, SessionRow } from "./chat.store.js";

const citationsSchema = citationSchema.array();

export function toSessionView(r: SessionRow): SessionView {
  return {
    id: r.id,
    externalId: r.external_id,
    userId: r.user_id,
    externalUserId: r.external_user_id,
    metadata: (r.metadata ?? {}) as Record<string, string>,
    messageCount: r.message_count,
    lastMessageAt: r.last_message_at?.toISOString() ?? null,
    summary: r.summary,
    keyPoints: Array.isArray(r.key_points) ? (r.key_points as string[]) : null,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

export function toMessageView(r: MessageRow): MessageView {
  // Written only by the turn from validated citation objects: a row that no longer parses is
  // a bug worth a 500, not an empty list.
  const citations: Citation[] = citationsSchema.parse(r.citations);
  const generated = r.prompt_tokens !== null || r.completion_tokens !== null;
  return {
    id: r.id,
    seq: r.seq,
    role: r.role,
    content: r.content,
    citations,
    confidence: r.confidence,
    status: r.status,
    provider: r.provider,
    model: r.model,
    usage: generated
      ? {
          promptTokens: r.prompt_tokens ?? 0,
          completionTokens: r.completion_tokens ?? 0,
          costUsd: sumDecimals([r.cost_usd ?? "0"]),
        }
      : null,
    latencyMs: r.latency_ms,
    createdAt: r.created_at.toISOString(),
  };
}

/** The sum of exact decimal strings (the ledger's costs), exact: scaled integers, no float. */
export function sumDecimals(values: readonly string[]): string {
  const SCALE = 10;
  let total = 0n;
  for (const v of values) {
    const neg = v.startsWith("-");
    const [int = "0", frac = ""] = (neg ? v.slice(1) : v).split(".");
    const units = BigInt(int + frac.padEnd(SCALE, "0").slice(0, SCALE));
    total += neg ? -units : units;
  }
  const sign = total < 0n ? "-" : "";
  const digits = (total < 0n ? -total : total).toString().padStart(SCALE + 1, "0");
  const int = digits.slice(0, -SCALE);
  const frac = digits.slice(-SCALE).replace(/0+$/, "");
  return `${sign}${int}${frac ? `.${frac}` : ""}`;
}
