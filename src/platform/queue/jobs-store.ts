import { randomUUID } from "node:crypto";
import { kysely, type Queryable, sql } from "../db/index.js";
import { isUuid } from "../ids.js";
import {
  type EnqueueOptions,
  type JobRecord,
  type JobRegistry,
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

/** The tenant key of platform jobs (tenant_id null) in fair scheduling: a "tenant" of its own. */
export const PLATFORM_TENANT_KEY = "00000000-0000-0000-0000-000000000000";

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

/** The database's `now()` plus `ms` milliseconds: run_at and lease times use its clock. */
export function msFromNow(ms: number) {
  return sql<Date>`now() + ${ms}::int * interval '1 millisecond'`;
}

/** `type = any(types)`: one array parameter, whatever the number of types. */
export function typeIn(types: readonly string[]) {
  return sql<boolean>`type = any(${types}::text[])`;
}

/** Inserts the jobs as `queued`; run inside a transaction for all-or-nothing batches. */
export async function insertJobs(q: Queryable, jobs: readonly NewJob[]): Promise<void> {
  for (let start = 0; start < jobs.length; start += INSERT_CHUNK) {
    const chunk = jobs.slice(start, start + INSERT_CHUNK);
    await kysely(q)
      .insertInto("jobs")
      .values(
        chunk.map((j) => ({
          id: j.id,
          tenant_id: j.tenantId,
          type: j.type,
          payload: JSON.stringify(j.payload),
          priority: j.priority,
          max_attempts: j.maxAttempts,
          run_at: msFromNow(j.delayMs),
        })),
      )
      .execute();
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

const JOB_COLUMNS = [
  "id",
  "type",
  "status",
  "attempts",
  "max_attempts",
  "last_error",
  "created_at",
  "started_at",
  "finished_at",
] as const;

/** The tenant's job; undefined for another tenant's, an unknown or a malformed id. */
export async function getJob(
  q: Queryable,
  tenantId: string,
  jobId: string,
): Promise<JobRecord | undefined> {
  if (!isUuid(tenantId) || !isUuid(jobId)) return undefined;
  const row = await kysely(q)
    .selectFrom("jobs")
    .select(JOB_COLUMNS)
    .where("id", "=", jobId)
    .where("tenant_id", "=", tenantId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    id: row.id,
    // The row's, by the filter: a platform job (tenant_id null) is never found here.
    tenantId,
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
