import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Db } from "../../platform/db/index.js";
import { type ApiCallRow, apiCallsStore, type InsertMethod } from "./api-calls.store.js";

/** An API call as the HTTP layer reports it when the call ends; the id is made on record. */
export type ApiCall = Omit<ApiCallRow, "id"> & { id?: string };

export interface TelemetryOptions {
  db: Db;
  logger: Pick<Logger, "warn" | "error" | "info">;
  registry: Registry;
  /** Rows per INSERT; reaching it starts a flush at once. */
  batchSize: number;
  /** The longest a call waits in the buffer. */
  flushIntervalMs: number;
  /** Calls held at most, buffered and being written together; beyond, new calls are dropped. */
  maxBuffered: number;
  /** Backoff after a failed write: `retryBaseMs × 2^(failures − 1)`, at most `retryMaxMs`. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** How long `close()` keeps retrying a failing database before it gives the rest up (counted). */
  closeTimeoutMs?: number;
  /** The shortest time between two "dropped" log lines; the count is summed in between. */
  dropLogIntervalMs?: number;
  insertMethod?: InsertMethod;
  /**
   * Batches written at once (1 by default). On PostgreSQL two overlap one batch's round trip
   * and commit with the building of the next; on PGlite (one connection) more than 1 only queues.
   */
  writers?: number;
}

/**
 * The API-call writer (DESIGN.md §6, telemetry facts): `record` never waits and never throws;
 * calls are held in a bounded buffer and written in batches (by `writers` at once), when a
 * batch is full or the interval passes. A failed write keeps its batch and is retried with exponential
 * backoff while new calls keep being accepted up to the bound. Ids are made on record, so a
 * batch retried after a commit whose outcome was unknown inserts each row once. If the bound
 * is ever hit, each dropped call is counted (`tenantrag_telemetry_dropped_total`) and logged
 * with the count (at most one line per `dropLogIntervalMs`). `close()` writes everything held.
 */
export interface Telemetry {
  /** Takes one call; returns false (counted and logged) when the buffer is full or closed. */
  record(call: ApiCall): boolean;
  /** Resolves once everything recorded before the call is written (retrying as needed). */
  flush(): Promise<void>;
  /** Stops the timer and writes everything held; what it cannot write in time is counted as dropped. */
  close(): Promise<void>;
  /** Calls held right now (buffered and in the batch being written). */
  held(): number;
}

type DropReason = "buffer_full" | "closed" | "shutdown_timeout";

export function createTelemetry(opts: TelemetryOptions): Telemetry {
  const m = telemetryMetrics(opts.registry);
  const closeTimeoutMs = opts.closeTimeoutMs ?? 30_000;
  const dropLogIntervalMs = opts.dropLogIntervalMs ?? 10_000;
  let buffer: ApiCallRow[] = [];
  /** Batches being written (each kept across its retries until it is in), in recording order. */
  const inFlight = new Set<{ rows: ApiCallRow[]; start: number }>();
  let inFlightRows = 0;
  const writers = Math.max(1, opts.writers ?? 1);
  const lanes = new Set<Promise<void>>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  /** Writers waiting out a backoff: close() wakes them. */
  const sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  /** Set by close(): past it, a failing write gives up (counted) instead of retrying. */
  let closeDeadline: number | undefined;
  let dropsUnlogged = 0;
  let lastDropLog = Number.NEGATIVE_INFINITY;
  /**
   * Waiters of `flush()`: resolved when everything recorded before them is written. Calls are
   * numbered as recorded and taken off the buffer in that order; with several batches in
   * flight, the written prefix ends before the oldest batch still in flight.
   */
  let recordedSeq = 0;
  let takenSeq = 0;
  const waiters: Array<{ seq: number; resolve: () => void }> = [];

  const held = () => buffer.length + inFlightRows;
  const writtenSeq = () => {
    let oldest = takenSeq + 1;
    for (const b of inFlight) oldest = Math.min(oldest, b.start);
    return oldest - 1;
  };

  function logDrops(reason: DropReason) {
    opts.logger.error(
      { dropped: dropsUnlogged, reason, held: held(), maxBuffered: opts.maxBuffered },
      "API-call telemetry dropped calls",
    );
    dropsUnlogged = 0;
    lastDropLog = performance.now();
  }

  function drop(count: number, reason: DropReason) {
    m.dropped.inc({ reason }, count);
    dropsUnlogged += count;
    // Monotonic, not the app clock: this paces log lines, it decides nothing. A full buffer
    // can drop thousands a second: one line per interval carries their count.
    if (reason !== "buffer_full" || performance.now() - lastDropLog >= dropLogIntervalMs) {
      logDrops(reason);
    }
  }

  function settleWaiters() {
    const written = writtenSeq();
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w && w.seq <= written) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  function sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const s = {
        timer: setTimeout(() => {
          sleepers.delete(s);
          resolve();
        }, ms),
        wake: () => {
          clearTimeout(s.timer);
          sleepers.delete(s);
          resolve();
        },
      };
      sleepers.add(s);
    });
  }

  /** One writer: takes batches off the buffer until it is empty, retrying a failed one. */
  async function lane(): Promise<void> {
    let failures = 0;
    while (buffer.length > 0) {
      const rows = buffer.splice(0, opts.batchSize);
      const b = { rows, start: takenSeq + 1 };
      takenSeq += rows.length;
      inFlight.add(b);
      inFlightRows += rows.length;
      const done = () => {
        inFlight.delete(b);
        inFlightRows -= rows.length;
        m.held.set(held());
        settleWaiters();
      };
      for (;;) {
        const stop = m.flushDuration.startTimer();
        try {
          await apiCallsStore.insertMany(opts.db, rows, opts.insertMethod);
          stop({ outcome: "ok" });
          m.flushed.inc(rows.length);
          failures = 0;
          done();
          break;
        } catch (err) {
          stop({ outcome: "failed" });
          failures += 1;
          m.flushFailures.inc();
          const delay = Math.min(opts.retryMaxMs, opts.retryBaseMs * 2 ** (failures - 1));
          if (closeDeadline !== undefined && performance.now() + delay > closeDeadline) {
            // This batch and what is still buffered; other writers' batches are theirs to count.
            const lost = rows.length + buffer.length;
            opts.logger.error(
              { err, lost },
              "API-call telemetry could not be written before shutdown",
            );
            takenSeq += buffer.length;
            buffer = [];
            done();
            drop(lost, "shutdown_timeout");
            return;
          }
          opts.logger.warn(
            { err, failures, retryInMs: delay, held: held() },
            "API-call telemetry write failed; retrying",
          );
          await sleep(delay);
        }
      }
    }
  }

  /**
   * Starts writers while there is work for them (a second one only for a full batch), and
   * resolves when every writer running then has finished.
   */
  function kick(): Promise<void> {
    while (
      lanes.size < writers &&
      buffer.length > 0 &&
      (lanes.size === 0 || buffer.length >= opts.batchSize)
    ) {
      const run: Promise<void> = lane().finally(() => {
        lanes.delete(run);
        // Calls recorded while the last batches were being written start the next round.
        if (!closed && buffer.length >= opts.batchSize) void kick();
      });
      lanes.add(run);
    }
    return Promise.all([...lanes]).then(() => undefined);
  }

  timer = setInterval(() => {
    if (buffer.length > 0) void kick();
  }, opts.flushIntervalMs);
  timer.unref();

  return {
    record(call) {
      if (closed) {
        drop(1, "closed");
        return false;
      }
      if (held() >= opts.maxBuffered) {
        drop(1, "buffer_full");
        return false;
      }
      buffer.push({ ...call, id: call.id ?? randomUUID() });
      recordedSeq += 1;
      m.recorded.inc();
      m.held.set(held());
      if (buffer.length >= opts.batchSize) void kick();
      return true;
    },

    async flush() {
      if (held() === 0) return;
      const done = new Promise<void>((resolve) => waiters.push({ seq: recordedSeq, resolve }));
      void kick();
      await done;
    },

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      timer = undefined;
      closeDeadline = performance.now() + closeTimeoutMs;
      // Writes waiting out their backoff are woken: from now on they retry within the deadline.
      for (const sl of [...sleepers]) sl.wake();
      while (held() > 0) await kick();
      if (dropsUnlogged > 0) logDrops("buffer_full");
    },

    held,
  };
}

function telemetryMetrics(registry: Registry) {
  const registers = [registry];
  return {
    recorded: new Counter({
      name: "tenantrag_telemetry_recorded_total",
      help: "API calls of known tenants taken into the telemetry buffer",
      registers,
    }),
    held: new Gauge({
      name: "tenantrag_telemetry_buffered",
      help: "API calls held in the telemetry buffer, the batch being written included",
      registers,
    }),
    flushed: new Counter({
      name: "tenantrag_telemetry_flushed_total",
      help: "API calls written to api_calls",
      registers,
    }),
    flushFailures: new Counter({
      name: "tenantrag_telemetry_flush_failures_total",
      help: "Failed batch writes of API-call telemetry (each is retried)",
      registers,
    }),
    flushDuration: new Histogram({
      name: "tenantrag_telemetry_flush_duration_seconds",
      help: "Time to write one batch of API calls",
      labelNames: ["outcome"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    dropped: new Counter({
      name: "tenantrag_telemetry_dropped_total",
      help: "API calls not recorded: buffer full, recorded after close, or unwritable at shutdown",
      labelNames: ["reason"],
      registers,
    }),
  };
}
