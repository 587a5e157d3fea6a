import { AppError } from "../../errors.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import {
  type Db,
  keysetPage,
  kysely,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";
import type { PlatformContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { AffectedWindows, RerateInput, RerateRun, RerateRunPage } from "./usage.schemas.js";

/** A document version whose ledger cost a run changed (the version's embedding event). */
export interface VersionCost {
  tenantId: string;
  documentId: string;
  versionId: string;
  costUsd: string;
}

export interface RerateHooks {
  /**
   * Told, in the run's transaction, the new cost of every document version whose embedding
   * event changed, so the documents' figures stay the ledger's (wired to ingestion).
   */
  onVersionCosts?(changes: VersionCost[], opts: { tx: Queryable }): Promise<void>;
  /**
   * Told, in the run's transaction, the hours (per tenant) whose events changed, so roll-ups of
   * those windows are recomputed with the run: if it throws, the run rolls back.
   */
  onRerated?(windows: AffectedWindows, opts: { tx: Queryable }): Promise<void>;
}

const RUN_COLUMNS = [
  "id",
  "created_by",
  "created_at",
  "window_from",
  "window_to",
  "provider",
  "model",
  "events_matched",
  "events_changed",
  "old_cost_usd",
  "new_cost_usd",
  "totals",
  "windows",
] as const;
type RunRow = Row<"rerate_runs", (typeof RUN_COLUMNS)[number]>;

function toRun(r: RunRow): RerateRun {
  return {
    id: r.id,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    from: r.window_from.toISOString(),
    to: r.window_to.toISOString(),
    provider: r.provider,
    model: r.model,
    eventsMatched: r.events_matched,
    eventsChanged: r.events_changed,
    oldCostUsd: r.old_cost_usd,
    newCostUsd: r.new_cost_usd,
    totals: r.totals as RerateRun["totals"],
    windows: r.windows as RerateRun["windows"],
  };
}

interface Aggregate {
  tenant_id: string | null;
  hour: Date | null;
  level: number;
  events: number;
  changed: number;
  old_cost: string;
  new_cost: string;
}

/**
 * Re-rating: recomputes the price and cost of the events in a window at the prices in force now
 * at each event's time (the rule of `priceAt`, in SQL), in one transaction with the documents'
 * figures, the roll-up hook and the run's record. Runs take turns (an advisory lock); events
 * recorded meanwhile by other transactions were rated at the current prices anyway.
 */
export function createRerating(deps: {
  db: Db;
  audit: Pick<AuditLog, "record">;
  hooks?: RerateHooks;
}) {
  const { db } = deps;
  const hooks = deps.hooks ?? {};

  /**
   * The run's audit rows, last in its transaction: one on each tenant's chain whose costs it
   * changed (that tenant's figures), in tenant order, then the run's own on the platform's.
   */
  async function recordRun(ctx: PlatformContext, run: RerateRun, tx: Queryable) {
    const entry = {
      eventType: "usage.rerate",
      entityType: "rerate" as const,
      entityId: run.id,
      action: "update" as const,
    };
    const window = { from: run.from, to: run.to, provider: run.provider, model: run.model };
    for (const t of run.totals) {
      if (t.changed === 0) continue;
      await deps.audit.record(
        ctx,
        {
          ...entry,
          tenantId: t.tenantId,
          oldValues: { costUsd: t.oldCostUsd },
          newValues: { ...window, costUsd: t.newCostUsd, events: t.events, changed: t.changed },
        },
        { tx },
      );
    }
    await deps.audit.record(
      ctx,
      {
        ...entry,
        oldValues: { costUsd: run.oldCostUsd },
        newValues: {
          ...window,
          costUsd: run.newCostUsd,
          events: run.eventsMatched,
          changed: run.eventsChanged,
          tenants: run.totals.filter((t) => t.changed > 0).length,
        },
      },
      { tx },
    );
  }

  return {
    async run(ctx: PlatformContext, input: RerateInput): Promise<RerateRun> {
      if (!(input.from < input.to))
        throw new AppError("usage.invalid_window", "from must be before to", {
          from: input.from.toISOString(),
          to: input.to.toISOString(),
        });
      const provider = input.provider ?? null;
      const model = input.model ?? null;
      return db.transaction(async (tx) => {
        const k = kysely(tx);
        await sql`select pg_advisory_xact_lock(hashtext('tenantrag.rerate'))`.execute(k);
        // One statement: the events (locked), their new price, the update of those that
        // change, and the old and new sums per (tenant, hour), per tenant and overall.
        const { rows } = await sql<Aggregate>`
          with target as (
            select e.id, e.tenant_id, date_trunc('hour', e.occurred_at, 'UTC') as hour,
                   e.cost_usd as old_cost, e.price_id as old_price, p.id as new_price,
                   coalesce(e.quantity * p.usd_per_unit, 0)::numeric(20, 10) as new_cost
            from usage_events e
            left join lateral (
              select p.id, p.usd_per_unit from prices p
              where p.provider = e.provider and p.unit = e.unit
                and p.model in (e.model, '*') and p.effective_from <= e.occurred_at
              order by (p.model = e.model) desc, p.effective_from desc
              limit 1
            ) p on true
            where e.occurred_at >= ${input.from} and e.occurred_at < ${input.to}
              and (${provider}::text is null or e.provider = ${provider}::text)
              and (${model}::text is null or e.model = ${model}::text)
            for update of e
          ),
          changed as (
            update usage_events u
            set price_id = t.new_price, cost_usd = t.new_cost, rated_at = now()
            from target t
            where u.id = t.id
              and (t.old_cost <> t.new_cost or t.old_price is distinct from t.new_price)
            returning u.id
          )
          select t.tenant_id, t.hour, grouping(t.tenant_id, t.hour)::int as level,
                 count(*)::int as events, count(c.id)::int as changed,
                 coalesce(sum(t.old_cost), 0)::text as old_cost,
                 coalesce(sum(t.new_cost), 0)::text as new_cost
          from target t left join changed c on c.id = t.id
          group by grouping sets ((t.tenant_id, t.hour), (t.tenant_id), ())
        `.execute(k);

        const overall = rows.find((r) => r.level === 3);
        const totals = rows
          .filter((r) => r.level === 1)
          .map((r) => ({
            tenantId: r.tenant_id as string,
            events: r.events,
            changed: r.changed,
            oldCostUsd: r.old_cost,
            newCostUsd: r.new_cost,
          }))
          .sort((a, b) => a.tenantId.localeCompare(b.tenantId));
        const hours = new Map<string, string[]>();
        for (const r of rows) {
          if (r.level !== 0 || r.changed === 0) continue;
          const list = hours.get(r.tenant_id as string) ?? [];
          list.push((r.hour as Date).toISOString());
          hours.set(r.tenant_id as string, list);
        }
        const windows: AffectedWindows = [...hours.entries()]
          .map(([tenantId, list]) => ({ tenantId, hours: list.sort() }))
          .sort((a, b) => a.tenantId.localeCompare(b.tenantId));

        if (hooks.onVersionCosts && (overall?.changed ?? 0) > 0) {
          // rated_at = now() marks this transaction's updates (now() is its start time).
          const versions = await k
            .selectFrom("usage_events")
            .select(["tenant_id", "document_id", "subject_id", "cost_usd"])
            .where("occurred_at", ">=", input.from)
            .where("occurred_at", "<", input.to)
            .where("metric", "=", "embedding_tokens")
            .where("subject_type", "=", "document_version")
            .where("document_id", "is not", null)
            .where("rated_at", "=", sql<Date>`now()`)
            .$if(provider !== null, (q) => q.where("provider", "=", provider as string))
            .$if(model !== null, (q) => q.where("model", "=", model as string))
            .execute();
          if (versions.length > 0)
            await hooks.onVersionCosts(
              versions.map((v) => ({
                tenantId: v.tenant_id,
                documentId: v.document_id as string,
                versionId: v.subject_id,
                costUsd: v.cost_usd,
              })),
              { tx },
            );
        }
        if (hooks.onRerated && windows.length > 0) await hooks.onRerated(windows, { tx });

        const run = await k
          .insertInto("rerate_runs")
          .values({
            created_by: ctx.actor.userId,
            window_from: input.from,
            window_to: input.to,
            provider,
            model,
            events_matched: overall?.events ?? 0,
            events_changed: overall?.changed ?? 0,
            old_cost_usd: overall?.old_cost ?? "0",
            new_cost_usd: overall?.new_cost ?? "0",
            totals: JSON.stringify(totals),
            windows: JSON.stringify(windows),
          })
          .returning(RUN_COLUMNS)
          .executeTakeFirstOrThrow();
        await recordRun(ctx, toRun(run), tx);
        return toRun(run);
      });
    },

    /** Runs, newest first, in cursor pages. */
    async list(
      _ctx: PlatformContext,
      opts: { limit: number; cursor?: string },
    ): Promise<RerateRunPage> {
      const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
      const query = kysely(db).selectFrom("rerate_runs").select(RUN_COLUMNS);
      const rows = await keysetPage(query, { after, limit: opts.limit + 1 }).execute();
      const page = rows.slice(0, opts.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toRun),
        nextCursor:
          rows.length > opts.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },
  };
}

export type Rerating = ReturnType<typeof createRerating>;
