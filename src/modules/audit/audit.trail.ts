import type { Logger } from "pino";
import type { Clock } from "../../platform/clock.js";
import { type SigningKey, signText } from "../../platform/crypto/signing.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import { type Db, kysely, type PageAfter, sql } from "../../platform/db/index.js";
import { deterministicUuid } from "../../platform/ids.js";
import type { AuditEventView } from "./audit.schemas.js";
import { type AuditFilter, type AuditRow, auditReads, type DigestRow } from "./audit.store.js";
import type { AuditContext, AuditLog, AuditSystemRecorder } from "./audit.types.js";
import { chainIdOf, type DigestContent, digestHash, type Json } from "./canonical.js";
import {
  createChainVerifier,
  type DigestInput,
  RETENTION_EVENT,
  type RowInput,
  type VerifyResult,
} from "./verify.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Rows read per query when verifying or exporting. */
const PAGE = 1000;

/** A stored row as the hash and an export see it. */
export function rowInput(r: AuditRow): RowInput {
  return {
    id: r.id,
    chain_id: r.chain_id,
    tenant_id: r.tenant_id,
    seq: r.seq,
    event_type: r.event_type,
    entity_type: r.entity_type,
    entity_id: r.entity_id,
    action: r.action,
    actor_type: r.actor_type,
    actor_id: r.actor_id,
    caused_by: (r.caused_by ?? null) as Json,
    old_values: (r.old_values ?? null) as Json,
    new_values: (r.new_values ?? null) as Json,
    changes_summary: r.changes_summary,
    result: r.result,
    error_message: r.error_message,
    ip_address: r.ip_address,
    user_agent: r.user_agent,
    request_id: r.request_id,
    created_at: r.created_at.toISOString(),
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
}

export function digestInput(d: DigestRow): DigestInput {
  return {
    id: d.id,
    chain_id: d.chain_id,
    tenant_id: d.tenant_id,
    period_start: d.period_start.toISOString(),
    period_end: d.period_end.toISOString(),
    last_event_id: d.last_event_id,
    last_seq: d.last_seq,
    last_hash: d.last_hash,
    row_count: d.row_count,
    prev_digest_hash: d.prev_digest_hash,
    key_id: d.key_id,
    created_at: d.created_at.toISOString(),
    hash: d.hash,
    signature: d.signature,
  };
}

export function eventView(r: AuditRow): AuditEventView {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    seq: r.seq,
    eventType: r.event_type,
    entityType: r.entity_type,
    entityId: r.entity_id,
    action: r.action,
    actorType: r.actor_type,
    actorId: r.actor_id,
    causedBy: (r.caused_by ?? null) as Record<string, unknown> | null,
    oldValues: (r.old_values ?? null) as Record<string, unknown> | null,
    newValues: (r.new_values ?? null) as Record<string, unknown> | null,
    changesSummary: r.changes_summary,
    result: r.result,
    errorMessage: r.error_message,
    ipAddress: r.ip_address,
    userAgent: r.user_agent,
    requestId: r.request_id,
    createdAt: r.created_at.toISOString(),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** Where an export or a verification runs: a chain, optionally a time window of it. */
export interface ChainWindow {
  /** The tenant, or null for the platform's chain. */
  tenantId: string | null;
  from?: Date | undefined;
  to?: Date | undefined;
}

export interface DigestRunResult {
  /** Chains digested in this run. */
  digested: number;
  /** Chains that had advanced but were digested for this hour already (another process). */
  skipped: number;
}

export interface RetentionRunResult {
  chains: number;
  deleted: number;
}

/**
 * The audit log's reading side and its jobs: pages, verification, export, the hourly signed
 * digests and retention.
 */
export function createAuditTrail(deps: {
  db: Db;
  clock: Clock;
  audit: AuditLog & {
    recordSystem: AuditSystemRecorder;
  };
  signingKey: SigningKey;
  retentionDays: number;
  logger: Pick<Logger, "info" | "warn">;
}) {
  const { db, clock, signingKey } = deps;

  async function* rowsOf(chainId: string, minSeq: number, maxSeq: number) {
    let after = minSeq - 1;
    for (;;) {
      const rows = await auditReads.bySeq(db, chainId, after, maxSeq, PAGE);
      for (const r of rows) yield r;
      const last = rows.at(-1);
      if (!last || rows.length < PAGE) return;
      after = last.seq;
    }
  }

  /** Digests one chain for the hour starting at `periodStart`, unless done or nothing new. */
  async function digestChain(chainId: string, periodStart: Date): Promise<"digested" | "skipped"> {
    return db.transaction(async (tx) => {
      const k = kysely(tx);
      // The head, locked: writers of this chain wait (a few ms), and so does another digester.
      const head = await k
        .selectFrom("audit_chains")
        .select(["seq", "hash"])
        .where("chain_id", "=", chainId)
        .forUpdate()
        .executeTakeFirst();
      if (!head || head.seq === 0) return "skipped";
      const before = await k
        .selectFrom("audit_digests")
        .selectAll()
        .where("chain_id", "=", chainId)
        .orderBy("last_seq", "desc")
        .orderBy("period_start", "desc")
        .limit(1)
        .executeTakeFirst();
      if (before && (before.last_seq >= head.seq || before.period_start >= periodStart)) {
        return "skipped";
      }
      const last = await k
        .selectFrom("audit_events")
        .select(["id", "tenant_id"])
        .where("chain_id", "=", chainId)
        .where("seq", "=", head.seq)
        .executeTakeFirst();
      if (!last) {
        deps.logger.warn({ chainId, seq: head.seq }, "audit chain head has no row: not digested");
        return "skipped";
      }
      const content: DigestContent = {
        id: deterministicUuid("audit-digest", `${chainId}:${periodStart.toISOString()}`),
        chain_id: chainId,
        tenant_id: last.tenant_id,
        period_start: periodStart.toISOString(),
        period_end: new Date(periodStart.getTime() + HOUR_MS).toISOString(),
        last_event_id: last.id,
        last_seq: head.seq,
        last_hash: head.hash,
        row_count: head.seq - (before?.last_seq ?? 0),
        prev_digest_hash: before?.hash ?? null,
        key_id: signingKey.keyId,
        created_at: new Date(Math.floor(clock.now())).toISOString(),
      };
      const hash = digestHash(content);
      const inserted = await k
        .insertInto("audit_digests")
        .values({ ...content, hash, signature: signText(signingKey.privateKey, hash) })
        .onConflict((oc) => oc.doNothing())
        .returning("id")
        .executeTakeFirst();
      return inserted ? "digested" : "skipped";
    });
  }

  return {
    signingKey,

    /** One page of a chain's rows, newest first, as the API shows them. */
    async list(
      tenantId: string | null,
      q: AuditFilter & { limit: number; cursor?: string | undefined },
    ): Promise<{ items: AuditEventView[]; nextCursor: string | null }> {
      const after: PageAfter | undefined = q.cursor ? decodeCursor(q.cursor) : undefined;
      const rows = await auditReads.page(db, chainIdOf(tenantId), q, {
        after,
        limit: q.limit + 1,
      });
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      return {
        items: page.map(eventView),
        nextCursor: rows.length > q.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },

    /**
     * Exports a chain as JSON lines, recording the export first (an `access` row of
     * `audit.export`, on the exported chain, which the export then includes).
     */
    async export(ctx: AuditContext, w: ChainWindow): Promise<AsyncGenerator<string>> {
      await db.transaction((tx) =>
        deps.audit.record(
          ctx,
          {
            eventType: "audit.export",
            entityType: "audit_log",
            entityId: chainIdOf(w.tenantId),
            action: "access",
            newValues: { from: w.from?.toISOString() ?? null, to: w.to?.toISOString() ?? null },
            ...("tenantId" in ctx ? {} : { tenantId: w.tenantId }),
          },
          { tx },
        ),
      );
      return this.exportLines(w);
    },

    /**
     * Verifies a chain (or a time window of it) against the deployment's public key: every
     * row's hash, link and seq, the chain's start, its digests and its head.
     */
    async verify(w: ChainWindow): Promise<VerifyResult> {
      const chainId = chainIdOf(w.tenantId);
      const digests = (await auditReads.digests(db, chainId)).map(digestInput);
      const win = await auditReads.window(db, chainId, w.from, w.to);
      const head = await auditReads.head(db, chainId);
      const toEnd = w.to === undefined || w.to.getTime() > clock.now();
      const verifier = createChainVerifier({
        publicKey: signingKey.publicKey,
        prevHash: w.from && win && win.minSeq > 1 ? win.prevHash : undefined,
        toEnd,
        head: toEnd ? (head ?? { seq: 0, hash: "" }) : undefined,
      });
      verifier.digests(digests);
      // The window starts where retention left the chain's start: the anchor says so.
      if (win && win.minSeq > 1 && win.prevHash === undefined) {
        const anchor = await auditReads.lastOfType(db, chainId, RETENTION_EVENT);
        if (anchor) verifier.retentionRow(rowInput(anchor));
      }
      if (win) {
        // To the head: rows appended since the window was measured are part of the chain's end.
        const maxSeq = toEnd ? Math.max(win.maxSeq, head?.seq ?? 0) : win.maxSeq;
        for await (const r of rowsOf(chainId, win.minSeq, maxSeq)) verifier.row(rowInput(r));
      }
      return verifier.finish();
    },

    /**
     * The chain (or a window of it) as JSON lines: a header, the rows with their hashes in seq
     * order, then the digests. Read in pages as it is written: memory holds one page.
     */
    async *exportLines(w: ChainWindow): AsyncGenerator<string> {
      const chainId = chainIdOf(w.tenantId);
      const win = await auditReads.window(db, chainId, w.from, w.to);
      const head = await auditReads.head(db, chainId);
      const toEnd = w.to === undefined || w.to.getTime() > clock.now();
      // To the end: up to the head, so rows appended meanwhile do not look like a cut tail.
      const maxSeq = win ? (toEnd ? Math.max(win.maxSeq, head?.seq ?? 0) : win.maxSeq) : 0;
      yield `${JSON.stringify({
        type: "header",
        format: "tenantrag-audit-export/1",
        chainId,
        tenantId: w.tenantId,
        from: w.from?.toISOString() ?? null,
        to: w.to?.toISOString() ?? null,
        exportedAt: new Date(clock.now()).toISOString(),
        firstSeq: win?.minSeq ?? null,
        lastSeq: win ? maxSeq : null,
        /** The hash of the row before the first exported one (a window); null from the start. */
        prevHash: win && w.from && win.minSeq > 1 ? (win.prevHash ?? null) : null,
        /** Whether the export runs to the chain's end (its digests' rows must all be there). */
        toEnd,
        headSeq: head?.seq ?? 0,
        keyId: signingKey.keyId,
        publicKey: signingKey.publicKeyPem,
      })}\n`;
      if (win && win.minSeq > 1 && !(w.from && win.prevHash)) {
        // Retention removed the chain's first rows: the row that anchors its new start.
        const anchor = await auditReads.lastOfType(db, chainId, RETENTION_EVENT);
        if (anchor) yield `${JSON.stringify({ type: "anchor", ...rowInput(anchor) })}\n`;
      }
      if (win) {
        for await (const r of rowsOf(chainId, win.minSeq, maxSeq)) {
          yield `${JSON.stringify({ type: "row", ...rowInput(r) })}\n`;
        }
      }
      for (const d of await auditReads.digests(db, chainId)) {
        if (d.last_seq > maxSeq) continue;
        yield `${JSON.stringify({ type: "digest", ...digestInput(d) })}\n`;
      }
    },

    /**
     * Signs a digest of every chain that advanced since its last digest, for the hour before
     * the current one. Idempotent per hour across processes: the digest's id and (chain, hour)
     * are unique, and the chain head's lock makes concurrent runs take turns.
     */
    async digestAll(): Promise<DigestRunResult> {
      const periodStart = new Date(Math.floor(clock.now() / HOUR_MS) * HOUR_MS - HOUR_MS);
      const chains = await db.query<{ chain_id: string }>(
        `select c.chain_id from audit_chains c
         where c.seq > coalesce(
           (select max(d.last_seq) from audit_digests d where d.chain_id = c.chain_id), 0)`,
      );
      const result = { digested: 0, skipped: 0 };
      for (const c of chains) {
        const r = await digestChain(c.chain_id, periodStart);
        result[r] += 1;
      }
      if (result.digested > 0) deps.logger.info({ ...result, periodStart }, "audit digests signed");
      return result;
    },

    /**
     * Deletes every chain's rows older than the retention (the only deletion of audit rows):
     * per chain, in one transaction, the oldest rows up to the last one created before the
     * cutoff, through the trigger's exception (a transaction-local cutoff), and a row of
     * `audit.retention` appended to the chain that anchors its new start (the first kept seq
     * and the hash before it), so verification still passes.
     */
    async retention(job: { id: string; name: string }): Promise<RetentionRunResult> {
      const cutoff = new Date(clock.now() - deps.retentionDays * DAY_MS);
      const chains = await db.query<{ chain_id: string; tenant_id: string | null }>(
        `select distinct chain_id, tenant_id from audit_events where created_at < $1`,
        [cutoff],
      );
      let deleted = 0;
      for (const c of chains) {
        deleted += await db.transaction(async (tx) => {
          await tx.query("select set_config('tenantrag.audit_retention_cutoff', $1, true)", [
            cutoff.toISOString(),
          ]);
          const k = kysely(tx);
          // The head first, locked: concurrent runs take turns on a chain, and the later one
          // reads after the earlier one committed (it finds nothing left to delete and records
          // no row); otherwise both read the same old rows and each appended an anchor.
          await k
            .selectFrom("audit_chains")
            .select("seq")
            .where("chain_id", "=", c.chain_id)
            .forUpdate()
            .execute();
          const kept = await k
            .selectFrom("audit_events")
            .select(sql<number | null>`min(seq)`.as("seq"))
            .where("chain_id", "=", c.chain_id)
            .where("created_at", ">=", cutoff)
            .executeTakeFirst();
          let lastDeleted = k
            .selectFrom("audit_events")
            .select(["seq", "hash"])
            .where("chain_id", "=", c.chain_id)
            .orderBy("seq", "desc")
            .limit(1);
          if (kept?.seq != null) lastDeleted = lastDeleted.where("seq", "<", kept.seq);
          const last = await lastDeleted.executeTakeFirst();
          if (!last) return 0;
          const gone = await k
            .deleteFrom("audit_events")
            .where("chain_id", "=", c.chain_id)
            .where("seq", "<=", last.seq)
            .executeTakeFirst();
          const n = Number(gone.numDeletedRows);
          await deps.audit.recordSystem(
            job,
            c.tenant_id,
            {
              eventType: RETENTION_EVENT,
              entityType: "audit_chain",
              entityId: c.chain_id,
              action: "delete",
              newValues: {
                cutoff: cutoff.toISOString(),
                deletedRows: n,
                firstKeptSeq: last.seq + 1,
                firstKeptPrevHash: last.hash,
              },
              changesSummary: `${n} rows older than ${cutoff.toISOString()} deleted`,
            },
            { tx },
          );
          return n;
        });
      }
      if (deleted > 0) deps.logger.info({ deleted, cutoff }, "audit rows past retention deleted");
      return { chains: chains.length, deleted };
    },
  };
}

export type AuditTrail = ReturnType<typeof createAuditTrail>;
