import { randomUUID } from "node:crypto";
import type { Queryable } from "../db/index.js";
import { isUuid } from "../ids.js";
import {
  type EnqueueOptions,
  type JobRecord,
  type JobRegistry,
  type JobStatus,
  type JobTypeOptions,
  NonRetryableError,
} from "./queue.js";

/**
 * The `jobs` table as both queue adapters use it: validating and inserting new jobs, reading a
 * tenant's job. Claiming and status changes are adapter-specific and live with each adapter.
 */

/** Thrown by `enqueue` before anything is written: unknown type, bad payload or options. */
export class InvalidJobError extends Error {
  override name = "InvalidJobError";
}

/** A validated job, ready to insert. `payload` is what the caller gave, not the parsed form. */
export interface NewJob {
  id: string;
  /** Null for a platform job. */
  tenantId: string | null;
  type: string;
  payload: unknown;
  priority: number;
  delayMs: number;
  maxAttempts: number;
}

export const DEFAULT_MAX_ATTEMPTS = 3;

/** Default grace of `close()`: what a container runtime typically allows before SIGKILL. */
export const DEFAULT_CLOSE_GRACE_MS = 10_000;

/**
 * Checks type, payload and options. The raw payload is stored, not the parsed one: processing
 * parses it again, and a schema with a transform would not accept its own output.
 */
export function prepareJob(
  registry: JobRegistry,
  type: string,
  payload: unknown,
  opts: EnqueueOptions = {},
  typeOptions: JobTypeOptions<JobRegistry> = {},
): NewJob {
  const parsed = parsePayload(registry, type, payload);
  if (!parsed.ok) throw new InvalidJobError(parsed.error);
  const { tenantId } = parsed.value;
  if (tenantId !== null && !isUuid(tenantId)) {
    throw new InvalidJobError(`Invalid payload for job "${type}": tenantId must be a UUID`);
  }
  const priority = opts.priority ?? 0;
  const delayMs = opts.delayMs ?? 0;
  const maxAttempts = opts.maxAttempts ?? typeOptions[type]?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(priority) || priority < -100 || priority > 100) {
    throw new InvalidJobError(`priority must be an integer in -100..100, got ${priority}`);
  }
  if (!Number.isFinite(delayMs) || delayMs < 0) {
    throw new InvalidJobError(`delayMs must be a non-negative number, got ${delayMs}`);
  }
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidJobError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
  }
  if (opts.jobId !== undefined && !isUuid(opts.jobId)) {
    throw new InvalidJobError(`jobId must be a UUID, got ${opts.jobId}`);
  }
  return {
    id: opts.jobId ?? randomUUID(),
    tenantId,
    type,
    payload,
    priority,
    delayMs: Math.round(delayMs),
    maxAttempts,
  };
}

/** Rows per insert statement: 7 parameters each, far below Postgres' 65 535 limit. */
const INSERT_CHUNK = 500;

/** Inserts the jobs as `queued`; run inside a transaction for all-or-nothing batches. */
export async function insertJobs(q: Queryable, jobs: readonly NewJob[]): Promise<void> {
  for (let start = 0; start < jobs.length; start += INSERT_CHUNK) {
    const chunk = jobs.slice(start, start + INSERT_CHUNK);
    const params: unknown[] = [];
    const values = chunk.map((j) => {
      const n = params.length;
      params.push(
        j.id,
        j.tenantId,
        j.type,
        JSON.stringify(j.payload),
        j.priority,
        j.maxAttempts,
        j.delayMs,
      );
      return `($${n + 1}::uuid, $${n + 2}::uuid, $${n + 3}, $${n + 4}::jsonb, $${n + 5}::int, $${n + 6}::int, now() + $${n + 7}::int * interval '1 millisecond')`;
    });
    await q.query(
      `insert into jobs (id, tenant_id, type, payload, priority, max_attempts, run_at)
       values ${values.join(", ")}`,
      params,
    );
  }
}

/** The first retry delay of a job type: its own, or the queue's. */
export function backoffBaseOf(
  typeOptions: JobTypeOptions<JobRegistry>,
  type: string,
  queueBaseMs: number,
): number {
  return typeOptions[type]?.backoffBaseMs ?? queueBaseMs;
}

interface JobRow {
  id: string;
  tenant_id: string;
  type: string;
  status: JobStatus;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

/** The tenant's job; undefined for another tenant's, an unknown or a malformed id. */
export async function getJob(
  q: Queryable,
  tenantId: string,
  jobId: string,
): Promise<JobRecord | undefined> {
  if (!isUuid(tenantId) || !isUuid(jobId)) return undefined;
  const [row] = await q.query<JobRow>(
    `select id, tenant_id, type, status, attempts, max_attempts, last_error,
            created_at, started_at, finished_at
     from jobs where id = $1 and tenant_id = $2`,
    [jobId, tenantId],
  );
  if (!row) return undefined;
  return {
    id: row.id,
    tenantId: row.tenant_id,
    type: row.type,
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    lastError: row.last_error,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

/** The text stored as `last_error`: the message, bounded so a huge error cannot bloat rows. */
export function errorText(err: unknown): string {
  const text =
    err instanceof NonRetryableError
      ? `${err.name} [${err.code}]: ${err.message}`
      : err instanceof Error
        ? `${err.name}: ${err.message}`
        : String(err);
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

/** True for a handler's "do not retry" error, even from another copy of this module. */
export function isNonRetryable(err: unknown): boolean {
  return (
    err instanceof NonRetryableError || (err as Error | undefined)?.name === "NonRetryableError"
  );
}

/** Parses a stored payload with the registry's schema at processing time. */
export function parsePayload(
  registry: JobRegistry,
  type: string,
  payload: unknown,
): { ok: true; value: { tenantId: string | null } } | { ok: false; error: string } {
  const schema = Object.hasOwn(registry, type) ? registry[type] : undefined;
  if (!schema) return { ok: false, error: `Unknown job type "${type}"` };
  const parsed = schema.safeParse(payload);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issues = parsed.error.issues
    .map((i) => `${i.path.join(".") || "(payload)"}: ${i.message}`)
    .join("; ");
  return { ok: false, error: `Invalid payload for job "${type}": ${issues}` };
}
