import { type JobsOptions, Queue, Worker } from "bullmq";
import type { InferResult } from "kysely";
import type { Logger } from "pino";
import { type Db, kysely, type Queryable, sql } from "../db/index.js";
import { type BullmqProcessorDeps, createBullmqProcessor } from "./bullmq-processor.js";
import {
  backoffBaseOf,
  DEFAULT_CLOSE_GRACE_MS,
  getJob,
  insertJobs,
  type NewJob,
  PLATFORM_TENANT_KEY,
  prepareJob,
} from "./jobs-store.js";
import type { JobHandlers, JobQueue, JobRegistry, JobTypeOptions } from "./queue.js";
import { validateTiming } from "./schedules.js";
import { startTicker, type Ticker } from "./ticker.js";

export interface BullmqQueueOptions<R extends JobRegistry> {
  db: Db;
  registry: R;
  /** Attempts and first retry delay of particular job types. */
  typeOptions?: JobTypeOptions<R>;
  logger: Logger;
  redisUrl: string;
  queueName?: string;
  /** Namespace of the queue's Redis keys. */
  prefix?: string;
  /** First retry delay; doubles with each attempt. */
  backoffBaseMs?: number;
  /**
   * How long a running job's lock lasts without renewal (renewed every half of it). A job
   * whose worker died is found stalled once its lock has expired.
   */
  lockDurationMs?: number;
  /** How often each worker looks for stalled jobs. */
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker dies) and be run again before it is `dead`. */
  maxStalledCount?: number;
  /** How often a working queue looks for committed jobs not yet handed to Redis. */
  relayIntervalMs?: number;
  /**
   * Fair across tenants (default): each tenant has at most `tenantConcurrency` jobs in Redis
   * (waiting, delayed or running) at a time; the rest wait in the `jobs` table and are handed
   * over, oldest first, as earlier ones finish. False hands every job over at once (one FIFO).
   */
  fair?: boolean;
  /** The per-tenant window of fair mode; default 4. It also caps a tenant's running jobs. */
  tenantConcurrency?: number;
}

/** The per-tenant window of fair mode when none is given. */
export const DEFAULT_BULLMQ_TENANT_WINDOW = 4;

/** Fair relay passes of every process take turns under this transaction-scoped lock. */
const RELAY_LOCK = 0x72656c79; // "rely"

/** Rows per relay pass (and per BullMQ addBulk). */
const RELAY_BATCH = 500;

/**
 * Runs `pass` now, or once more after the one in progress when called during it: calls that
 * come while a pass runs share one rerun, so a burst of completions costs a pass or two.
 */
function coalescing(pass: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let rerun: Promise<void> | undefined;
  const run = (): Promise<void> => {
    if (!running) {
      running = pass().finally(() => {
        running = undefined;
      });
      return running;
    }
    rerun ??= running.then(() => {
      rerun = undefined;
      return run();
    });
    return rerun;
  };
  return run;
}

/**
 * A queued row of `jobs` as the relay and `recover` read it to hand it to Redis: what is left
 * of its delay is computed by the database, whose clock set `run_at`.
 */
function queuedRows(q: Queryable) {
  return kysely(q)
    .selectFrom("jobs")
    .select([
      "id",
      "tenant_id",
      "type",
      "payload",
      "priority",
      "max_attempts",
      "relayed_at",
      sql<number>`greatest(0, extract(epoch from run_at - now()) * 1000)::int`.as("delay_ms"),
    ])
    .where("status", "=", "queued");
}

type QueuedRow = InferResult<ReturnType<typeof queuedRows>>[number];

/**
 * The server-mode job queue: BullMQ on Redis. The `jobs` row is written first (`queued`, in
 * the caller's transaction with `tx`) and its id is the BullMQ job id; the worker mirrors
 * every status change into it, so the status API reads the same table in both modes. The row
 * is the authority on whether a job should run: a BullMQ job without a live row (tenant
 * deleted, job already finished) is dropped without running its handler.
 *
 * The rows are an outbox. Once the row is committed the job is handed to Redis (at once by
 * `enqueue`, or after the caller's commit with `tx`) and the row marked `relayed_at`. If the
 * process dies in between, or Redis refuses, the row stays unmarked and the relay of every
 * working queue (FOR UPDATE SKIP LOCKED, every `relayIntervalMs`) hands it over. A hand-over
 * twice is harmless: BullMQ ignores an add whose job id it holds, and the processor skips a
 * job whose row is no longer live.
 *
 * Schedules are BullMQ job schedulers (one run per due time, whichever worker takes it); a
 * run gets its `jobs` row when it starts, under an id derived from BullMQ's.
 *
 * Priorities map to BullMQ's (1 = first): 101 − priority, so every job is prioritized and
 * equal priorities keep FIFO order. Retries use BullMQ's exponential backoff with the same
 * delays as the embedded queue; a handler's `NonRetryableError` becomes BullMQ's
 * `UnrecoverableError`. A job whose worker died is BullMQ's "stalled" job: put back once its
 * lock expires, `maxStalledCount` times at most.
 *
 * `close(graceMs)` stops fetching, aborts the handlers' signals and waits up to `graceMs`; a
 * handler that then throws sends its job back to waiting (not a failure). Jobs still running
 * after the grace are abandoned (force close): their lock expires and another worker runs them.
 */
export function createBullmqQueue<R extends JobRegistry>(opts: BullmqQueueOptions<R>): JobQueue<R> {
  const { db, registry, logger } = opts;
  const queueName = opts.queueName ?? "tenantrag";
  const prefix = opts.prefix ?? "tenantrag";
  const backoffBaseMs = opts.backoffBaseMs ?? 2_000;
  const typeOptions = (opts.typeOptions ?? {}) as JobTypeOptions<JobRegistry>;
  const fair = opts.fair ?? true;
  const tenantWindow = opts.tenantConcurrency || DEFAULT_BULLMQ_TENANT_WINDOW;
  if (!Number.isInteger(tenantWindow) || tenantWindow < 1) {
    throw new Error(`tenantConcurrency must be a positive integer, got ${tenantWindow}`);
  }
  // Enqueue fails fast when Redis is unreachable instead of hanging an HTTP request.
  const queue = new Queue(queueName, {
    connection: { url: opts.redisUrl, maxRetriesPerRequest: 3 },
    prefix,
  });
  queue.on("error", (err) => logger.error({ err }, "job queue: redis error"));
  let worker: Worker | undefined;
  let relay: Ticker | undefined;
  let processor: ReturnType<typeof createBullmqProcessor> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  const jobOptions = (job: NewJob): JobsOptions => ({
    jobId: job.id,
    attempts: job.maxAttempts,
    backoff: { type: "exponential", delay: backoffBaseOf(typeOptions, job.type, backoffBaseMs) },
    priority: 101 - job.priority,
    ...(job.delayMs > 0 ? { delay: job.delayMs } : {}),
    // The jobs table is the record; Redis keeps a bounded tail for BullMQ's own tooling.
    removeOnComplete: { count: 1_000 },
    removeOnFail: { count: 10_000 },
  });

  const fromRow = (r: QueuedRow): NewJob => ({
    id: r.id,
    tenantId: r.tenant_id,
    type: r.type,
    payload: r.payload,
    priority: r.priority,
    delayMs: r.delay_ms,
    maxAttempts: r.max_attempts,
  });

  async function addToRedis(jobs: readonly NewJob[]): Promise<void> {
    if (jobs.length === 1) {
      const [job] = jobs as [NewJob];
      await queue.add(job.type, job.payload, jobOptions(job));
    } else {
      await queue.addBulk(
        jobs.map((j) => ({ name: j.type, data: j.payload, opts: jobOptions(j) })),
      );
    }
  }

  async function markRelayed(q: Queryable, ids: readonly string[]): Promise<void> {
    await kysely(q)
      .updateTable("jobs")
      .set({ relayed_at: sql`now()` })
      .where(sql<boolean>`id = any(${ids}::uuid[])`)
      .where("relayed_at", "is", null)
      .execute();
  }

  /**
   * The fast path, for committed rows: hands them to Redis now. A failure is not the
   * caller's: the jobs are durable, and the relay hands them over later.
   */
  async function handOver(jobs: readonly NewJob[]): Promise<void> {
    try {
      await addToRedis(jobs);
      await markRelayed(
        db,
        jobs.map((j) => j.id),
      );
    } catch (err) {
      logger.warn(
        { err, jobIds: jobs.map((j) => j.id) },
        "jobs recorded but not yet handed to redis; the relay will",
      );
    }
  }

  async function submit(jobs: NewJob[], tx: Queryable | undefined): Promise<void> {
    if (closed) throw new Error("The job queue is closed");
    if (jobs.length === 0) return;
    // Fair: hands over those of these jobs their tenant's window has room for; the rest wait
    // their turn, which the relay of a working queue gives them as earlier jobs finish.
    const ids = jobs.map((j) => j.id);
    const handOff = fair ? () => handOverFair(ids) : () => handOver(jobs);
    if (tx && tx !== db) {
      await insertJobs(tx, jobs);
      // Without a commit hook (a wrapped handle) the relay hands them over.
      tx.afterCommit?.(() => void handOff());
      return;
    }
    if (jobs.length === 1) await insertJobs(db, jobs);
    else await db.transaction((t) => insertJobs(t, jobs));
    await handOff();
  }

  /**
   * One fair relay pass: per tenant, its oldest committed rows not yet handed over and due, as
   * many as its window has room for (rows handed over and not finished count against it), 500
   * in all at most. A delayed row (an `index.optimize` a minute away) is handed over once due,
   * by the next pass: handed over early, it would hold a place of its tenant's window meanwhile. Passes of every process take turns under an advisory lock, so two cannot both
   * fill one tenant's last free place; the lock is transaction-scoped and the transaction cut
   * off by the server if its process freezes in it.
   */
  async function relayFair(only?: readonly string[]): Promise<number> {
    const nil = sql.lit(PLATFORM_TENANT_KEY);
    const key = sql`coalesce(tenant_id, ${nil}::uuid)`;
    const unrelayed = sql`status = 'queued' and relayed_at is null`;
    // Every tenant with rows to hand over (a skip scan), or those of the jobs just enqueued.
    const tenants = only
      ? sql`tenants(t) as (select distinct ${key} from jobs where id = any(${only}::uuid[]))`
      : sql`tenants(t) as (
          (select ${key} from jobs where ${unrelayed} order by 1 limit 1)
          union all
          select (select ${key} from jobs where ${unrelayed} and ${key} > tenants.t
                  order by 1 limit 1)
          from tenants where tenants.t is not null
        )`;
    // Just enqueued: only those ids, and only if no older row of their tenant waits its turn.
    const onlyThese = only ? sql`and h.id = any(${only}::uuid[])` : sql``;
    const passStartedAt = heldBack;
    const handed = await db.transaction(async (tx) => {
      await sql`select set_config('idle_in_transaction_session_timeout', '5000', true),
                       pg_advisory_xact_lock(${RELAY_LOCK})`.execute(kysely(tx));
      // One row per job handed over, or one row of nulls; `more`: a due row is left waiting.
      const { rows } = await sql<
        { [K in keyof QueuedRow]: QueuedRow[K] | null } & { more: boolean }
      >`
        with recursive ${tenants},
        inflight as (
          select ${key} as t, count(*)::int as n from jobs
          where status in ('queued', 'running') and relayed_at is not null group by 1
        ),
        picked as (
          select h.id, h.tenant_id, h.type, h.payload, h.priority, h.max_attempts, h.delay_ms
          from tenants
          left join inflight on inflight.t = tenants.t
          cross join lateral (
            select j.id, j.tenant_id, j.type, j.payload, j.priority, j.max_attempts, j.created_at,
                   greatest(0, extract(epoch from j.run_at - now()) * 1000)::int as delay_ms
            from jobs j
            where j.status = 'queued' and j.relayed_at is null and j.run_at <= now()
              and coalesce(j.tenant_id, ${nil}::uuid) = tenants.t
            order by j.priority desc, j.created_at
            limit greatest(0, ${tenantWindow}::int - coalesce(inflight.n, 0))
          ) h
          where tenants.t is not null ${onlyThese}
          order by h.created_at
          limit ${RELAY_BATCH}
        )
        select p.*, exists (
          select 1 from jobs w
          where w.status = 'queued' and w.relayed_at is null and w.run_at <= now()
            and not exists (select 1 from picked q where q.id = w.id)
        ) as more
        from (select 1) one left join picked p on true`.execute(kysely(tx));
      const picked = rows.filter((r): r is QueuedRow & { more: boolean } => r.id !== null);
      if (only) {
        // Some of these wait for their tenant's window: a finished job should hand them over.
        if (picked.length < only.length) noteWaiting();
      } else if (rows[0]?.more) {
        noteWaiting();
      } else if (heldBack === passStartedAt) {
        // Nothing due waits, and no enqueue held a job back since this pass began.
        waiting = false;
      }
      if (picked.length === 0) return 0;
      await addToRedis(picked.map(fromRow));
      await markRelayed(
        tx,
        picked.map((r) => r.id),
      );
      return picked.length;
    });
    return handed;
  }

  /**
   * Whether rows of this process's knowledge wait for their tenant's window (or for a pass
   * that failed). A finished job runs a relay pass only then: in a steady state, where every
   * enqueue is handed over at once, it costs no statements. Rows held back by another
   * process are seen by this one's periodic pass (every `relayIntervalMs`), which sets it.
   */
  let waiting = true;
  /** Counts the hold-backs, so that a pass does not clear one that came while it ran. */
  let heldBack = 0;
  function noteWaiting(): void {
    waiting = true;
    heldBack += 1;
  }

  /** Relay passes until a short one; never rejects (the periodic relay tries again). */
  const relayAll = async (): Promise<void> => {
    try {
      while ((await (fair ? relayFair() : relayOnce())) === RELAY_BATCH) {}
    } catch (err) {
      noteWaiting();
      logger.warn({ err }, "jobs recorded but not yet handed to redis; the relay will");
    }
  };
  /** Fair mode's relay: periodically, and after a job of this worker ends. */
  const kickRelay = coalescing(relayAll);

  /** Fair mode's fast path after an enqueue commits; a failure is left to the relay. */
  async function handOverFair(ids: readonly string[]): Promise<void> {
    try {
      for (let start = 0; start < ids.length; start += RELAY_BATCH) {
        await relayFair(ids.slice(start, start + RELAY_BATCH));
      }
    } catch (err) {
      noteWaiting();
      logger.warn(
        { err, jobIds: ids },
        "jobs recorded but not yet handed to redis; the relay will",
      );
    }
  }

  /** One relay pass: committed rows not yet handed over, oldest first, 500 at most. */
  async function relayOnce(): Promise<number> {
    return db.transaction(async (tx) => {
      const rows = await queuedRows(tx)
        .where("relayed_at", "is", null)
        .orderBy("created_at")
        .limit(RELAY_BATCH)
        .forUpdate()
        .skipLocked()
        .execute();
      if (rows.length === 0) return 0;
      await addToRedis(rows.map(fromRow));
      await markRelayed(
        tx,
        rows.map((r) => r.id),
      );
      return rows.length;
    });
  }

  return {
    async enqueue(type, payload, enqueueOpts) {
      const job = prepareJob(registry, type, payload, enqueueOpts, typeOptions);
      await submit([job], enqueueOpts?.tx);
      return { id: job.id };
    },

    async enqueueBatch(items, batchOpts) {
      const jobs = items.map((i) => prepareJob(registry, i.type, i.payload, i.opts, typeOptions));
      await submit(jobs, batchOpts?.tx);
      return jobs.map((j) => ({ id: j.id }));
    },

    async schedule(key, type, payload, timing) {
      if (closed) throw new Error("The job queue is closed");
      const job = prepareJob(registry, type, payload, {}, typeOptions);
      validateTiming(timing);
      const { jobId: _, ...template } = jobOptions(job);
      await queue.upsertJobScheduler(
        key,
        "cron" in timing ? { pattern: timing.cron, tz: "UTC" } : { every: timing.everyMs },
        { name: type, data: payload, opts: template },
      );
    },

    get: (tenantId, jobId, getOpts) => getJob(getOpts?.tx ?? db, tenantId, jobId),

    async recover(olderThanMs) {
      if (closed) return 0;
      const rows = await queuedRows(db)
        .where("run_at", "<", sql<Date>`now() - make_interval(secs => ${olderThanMs / 1000})`)
        .orderBy("run_at")
        .limit(500)
        .execute();
      if (rows.length === 0) return 0;
      // Rows due for a while but still queued: lost, or waiting behind a backlog. BullMQ
      // ignores an add whose job id it already holds, so only lost jobs are added. In fair
      // mode rows never handed over wait for their tenant's window: the relay adds them.
      const lost = fair ? rows.filter((r) => r.relayed_at !== null) : rows;
      if (lost.length > 0) await addToRedis(lost.map(fromRow));
      if (lost.length < rows.length) await kickRelay();
      return rows.length;
    },

    work(handlers: JobHandlers<R>, workOpts = {}) {
      if (closed) throw new Error("The job queue is closed");
      if (worker) throw new Error("work() was already called on this queue");
      const concurrency = workOpts.concurrency ?? 2;
      const deps: BullmqProcessorDeps = {
        db,
        registry,
        typeOptions,
        handlers: handlers as unknown as JobHandlers<JobRegistry>,
        logger,
        backoffBaseMs,
        isClosing: () => closed,
        // A finished job frees a place in its tenant's window: hand over the next one now,
        // if any waits.
        ...(fair
          ? {
              onSettled: () => {
                if (waiting) void kickRelay();
              },
            }
          : {}),
      };
      processor = createBullmqProcessor(deps);
      worker = new Worker(queueName, processor.process, {
        connection: { url: opts.redisUrl, maxRetriesPerRequest: null },
        prefix,
        concurrency,
        lockDuration: opts.lockDurationMs ?? 30_000,
        stalledInterval: opts.stalledIntervalMs ?? 30_000,
        maxStalledCount: opts.maxStalledCount ?? 1,
      });
      worker.on("error", (err) => logger.error({ err }, "job worker: redis error"));
      // A job that stalled too often is failed by BullMQ without reaching the processor.
      worker.on("failed", (job, err) => {
        if (job?.id && job.deferredFailure) processor?.markStalledDead(job, err);
      });
      relay = startTicker({
        everyMs: opts.relayIntervalMs ?? 1_000,
        logger,
        what: "relaying recorded jobs to redis",
        async tick() {
          if (fair) await kickRelay();
          else while ((await relayOnce()) === RELAY_BATCH) {}
        },
      });
    },

    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closed = true;
      closing ??= (async () => {
        await relay?.stop(graceMs);
        if (worker && processor) {
          worker.cancelAllJobs("job queue closing");
          // Stop fetching now; jobs fetched meanwhile are handed back by the processor.
          await worker.pause(true).catch((err) => logger.error({ err }, "job worker pause"));
          const finished = await processor.drain(graceMs);
          if (!finished) {
            logger.warn(
              { jobIds: processor.runningIds() },
              "jobs still running at close: they run again once their lock expires",
            );
          }
          // Forced: skip waiting for the abandoned jobs and stop renewing their locks.
          await worker.close(!finished).catch((err) => logger.error({ err }, "job worker close"));
        }
        await queue.close().catch((err) => logger.error({ err }, "job queue close"));
      })();
      return closing;
    },
  };
}
