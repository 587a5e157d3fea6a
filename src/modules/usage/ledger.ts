import type { Logger } from "pino";
import type { Clock } from "../../platform/clock.js";
import {
  type Db,
  type InTransaction,
  inTransaction,
  kysely,
  sql,
} from "../../platform/db/index.js";
import { deterministicUuid } from "../../platform/ids.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import { createPriceBook, type PriceUnit, priceInForce } from "./prices.js";
import { createRerating, type RerateHooks } from "./rerate.js";

/** What is metered. Gauges (`documents_stored`, `storage_bytes`) are levels, never summed. */
export type Metric =
  | "embedding_tokens"
  | "search_queries"
  | "chat_input_tokens"
  | "chat_output_tokens"
  | "chat_messages"
  | "documents_stored"
  | "storage_bytes";

export const GAUGE_METRICS: readonly Metric[] = ["documents_stored", "storage_bytes"];

/**
 * What a fact is about, which with the tenant and metric makes its id:
 * - `document_version`: the embedding of one version (id: the version's id);
 * - `search`: one search (a random id per search; its query embedding and its count are two
 *   facts of it);
 * - `tenant_day`: the daily gauge snapshot (id `YYYY-MM-DD`, UTC);
 * - `storage_change`: a gauge taken when storage changed (id: what changed it, e.g.
 *   `activation:<version id>`, `delete:<document id>`);
 * - `chat_message`: one answer of the assistant (chat, later).
 */
export type SubjectType =
  | "document_version"
  | "search"
  | "tenant_day"
  | "storage_change"
  | "chat_message";

export type Payer = "platform" | "tenant";

export interface BillableFact {
  metric: Metric;
  /** Tokens, calls, bytes or documents: a non-negative integer. */
  quantity: number;
  /** How many things the quantity covers (texts embedded, messages); 1 unless given. */
  items?: number;
  provider: string;
  model: string;
  /** Whose provider key paid: the platform's, or the tenant's own. */
  payer: Payer;
  subject: { type: SubjectType; id: string };
  documentId?: string;
  /** When it happened; the clock's now unless given. The price in force then applies. */
  occurredAt?: Date;
  metadata?: Record<string, unknown>;
}

export interface RecordedFact {
  id: string;
  /** quantity × the price in force at occurredAt, an exact decimal string. */
  costUsd: string;
  /** False when the same fact was already in the ledger (a retry); its stored cost is given. */
  recorded: boolean;
}

/** The unit a metric is counted and priced in. */
export function unitOf(metric: Metric): PriceUnit {
  switch (metric) {
    case "embedding_tokens":
    case "chat_input_tokens":
      return "input_token";
    case "chat_output_tokens":
      return "output_token";
    case "search_queries":
    case "chat_messages":
      return "call";
    case "storage_bytes":
      return "byte";
    case "documents_stored":
      return "document";
  }
}

/** The event id of a fact: a function of (tenant, metric, subject), so a retry finds it. */
export function usageEventId(
  tenantId: string,
  metric: Metric,
  subject: { type: SubjectType; id: string },
): string {
  return deterministicUuid(
    "tenantrag.usage",
    `${tenantId}\u0000${metric}\u0000${subject.type}\u0000${subject.id}`,
  );
}

/** Who acted, as the ledger stores it (a job: its id; its cause's request id). */
function actorOf(ctx: TenantContext): {
  type: string;
  id: string | null;
  requestId: string | null;
} {
  const a = ctx.actor;
  switch (a.kind) {
    case "user":
      return { type: a.kind, id: a.userId, requestId: ctx.request?.id ?? null };
    case "api_key":
      return { type: a.kind, id: a.keyId, requestId: ctx.request?.id ?? null };
    case "widget_visitor":
      return { type: a.kind, id: a.visitorId, requestId: ctx.request?.id ?? null };
    case "system":
      return {
        type: a.kind,
        id: a.job.id,
        requestId: ctx.request?.id ?? a.causedBy?.requestId ?? null,
      };
  }
}

export interface UsageDeps {
  db: Db;
  clock: Clock;
  logger: Pick<Logger, "warn">;
  /** What a re-rating run tells the rest of the system, in its transaction (rerate.ts). */
  rerateHooks?: RerateHooks;
  /** Records new prices and re-rating runs, in their transactions. */
  audit: Pick<AuditLog, "record">;
}

/**
 * The billable usage ledger. `record` is called by the domain service where the fact happens,
 * in the transaction of the business write it describes: the event exists exactly when that
 * write committed, and its id (tenant, metric, subject) under the primary key makes a retry a
 * no-op with no time window.
 */
export function createUsageService(deps: UsageDeps) {
  const { db, clock } = deps;

  return {
    /** The price book (platform admins). */
    prices: createPriceBook({ db, audit: deps.audit }),
    /** Re-rating runs (platform admins). */
    rerating: createRerating({
      db,
      audit: deps.audit,
      ...(deps.rerateHooks ? { hooks: deps.rerateHooks } : {}),
    }),

    /**
     * Records facts (INSERT … ON CONFLICT (id) DO NOTHING) and answers each one's id and cost.
     * The cost is quantity × the price in force at the fact's time, multiplied in SQL numeric
     * (never a float). A fact no price matches is recorded with no price and cost 0, and
     * logged: reconciliation lists such events.
     */
    async record(
      ctx: TenantContext,
      facts: readonly BillableFact[],
      opts: InTransaction = {},
    ): Promise<RecordedFact[]> {
      if (facts.length === 0) return [];
      const actor = actorOf(ctx);
      return inTransaction(db, opts.tx, async (tx) => {
        const k = kysely(tx);
        // One statement for all the facts, each priced by a subquery of the rule of `priceAt`.
        const rows = facts.map((f) => {
          if (!Number.isSafeInteger(f.quantity) || f.quantity < 0)
            throw new Error(`usage quantity must be a non-negative integer, got ${f.quantity}`);
          const unit = unitOf(f.metric);
          const occurredAt = f.occurredAt ?? new Date(clock.now());
          const key = { provider: f.provider, model: f.model, unit, at: occurredAt };
          return {
            id: usageEventId(ctx.tenantId, f.metric, f.subject),
            tenant_id: ctx.tenantId,
            metric: f.metric,
            quantity: f.quantity,
            items: f.items ?? 1,
            unit,
            provider: f.provider,
            model: f.model,
            payer: f.payer,
            price_id: priceInForce(k, key).select("id"),
            cost_usd: sql<string>`coalesce(${f.quantity}::numeric * (${priceInForce(k, key).select("usd_per_unit")}), 0)`,
            subject_type: f.subject.type,
            subject_id: f.subject.id,
            document_id: f.documentId ?? null,
            actor_type: actor.type,
            actor_id: actor.id,
            request_id: actor.requestId,
            occurred_at: occurredAt,
            metadata: JSON.stringify(f.metadata ?? {}),
          };
        });
        const inserted = await k
          .insertInto("usage_events")
          .values(rows)
          .onConflict((oc) => oc.column("id").doNothing())
          .returning(["id", "cost_usd", "price_id"])
          .execute();
        const recorded = new Map(inserted.map((r) => [r.id, r]));
        for (const [i, r] of rows.entries()) {
          const f = facts[i] as BillableFact;
          if (recorded.get(r.id)?.price_id === null)
            deps.logger.warn(
              { tenantId: ctx.tenantId, metric: f.metric, provider: f.provider, model: f.model },
              "no price for a billable fact: recorded at cost 0",
            );
        }
        // Facts already in the ledger (a retry): their stored costs.
        const missing = rows.map((r) => r.id).filter((id) => !recorded.has(id));
        const kept =
          missing.length === 0
            ? new Map<string, string>()
            : new Map(
                (
                  await k
                    .selectFrom("usage_events")
                    .select(["id", "cost_usd"])
                    .where("id", "in", missing)
                    .where("tenant_id", "=", ctx.tenantId)
                    .execute()
                ).map((r) => [r.id, r.cost_usd]),
              );
        const out: RecordedFact[] = rows.map(({ id }) => {
          const r = recorded.get(id);
          if (r) return { id, costUsd: r.cost_usd, recorded: true };
          const costUsd = kept.get(id);
          if (costUsd === undefined) throw new Error(`usage event ${id} is neither new nor kept`);
          return { id, costUsd, recorded: false };
        });
        return out;
      });
    },
  };
}

export type UsageService = ReturnType<typeof createUsageService>;
/** What a domain service needs to record billable facts. */
export type UsageRecorder = Pick<UsageService, "record">;
