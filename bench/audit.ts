/**
 * The audit log's cost, on PGlite and on PostgreSQL (when TEST_DATABASE_URL is set):
 *
 * 1. Added latency of an audited mutation: the same service call timed with the real audit log
 *    and with a recorder that writes nothing, in one run, over one database, in alternating
 *    blocks (drift of the machine falls on both alike). Operations:
 *    - `knowledge update`: PUT of a knowledge item's fields as the route does it (the item, its
 *      document's new version and job, and the audit row in one transaction);
 *    - `alert settings`: PUT of the alert thresholds (one upsert, and the audit row);
 *    - `bare write`: a transaction of one insert, and the same with `audit.record` after it.
 *    Service calls in process, not HTTP: the figure is the audit row's, not the network's.
 * 2. Audit rows/s written by N concurrent writers (one transaction per row), on one tenant (all
 *    on one chain head: they take turns on its row lock) and on N tenants (one chain each).
 *    Each run checks that every chain is seq 1..n without a gap.
 *
 *   npm run bench:audit -- [--ops=400] [--writers=1,4,16] [--seconds=3]
 */
import { randomBytes, randomUUID } from "node:crypto";
import pino from "pino";
import { loadConfig } from "../src/config.js";
import { type AppContext, createContext } from "../src/context.js";
import { createAlertsService } from "../src/modules/alerts/index.js";
import type { AuditLog } from "../src/modules/audit/index.js";
import { createKnowledgeService, type KnowledgeService } from "../src/modules/knowledge/index.js";
import type { Db, Queryable } from "../src/platform/db/index.js";
import {
  BENCH_DATABASE_URL,
  type BenchDb,
  openPglite,
  openPostgres,
  tempDir,
} from "./lib/backends.js";
import { compareAlternating, newEnterpriseTenant } from "./lib/compare.js";
import {
  intOption,
  listOption,
  ms,
  printFooter,
  printHeader,
  type Summary,
  summarize,
  table,
} from "./lib/report.js";

/** A recorder that writes nothing: the baseline's. */
const unaudited: AuditLog = {
  record: async () => ({ id: "", seq: 0 }),
  recordMany: async () => [],
};

interface Latency {
  operation: string;
  baseline: Summary;
  audited: Summary;
  addedP50Ms: number;
  addedP99Ms: number;
}

const latency = (operation: string, r: { a: Summary; b: Summary }): Latency => ({
  operation,
  baseline: r.a,
  audited: r.b,
  addedP50Ms: r.b.p50 - r.a.p50,
  addedP99Ms: r.b.p99 - r.a.p99,
});

async function latencies(app: AppContext, ops: number): Promise<Latency[]> {
  const ctx = await newEnterpriseTenant(app);
  const out: Latency[] = [];

  // Knowledge item updates: one item per variant, each update new content (never a duplicate).
  const services: Record<"plain" | "audited", KnowledgeService> = {
    plain: createKnowledgeService({
      db: app.db,
      ingestion: app.ingestion,
      documents: app.documents,
      audit: unaudited,
      events: app.events,
    }),
    audited: app.knowledge,
  };
  const faq = (i: number) => ({
    type: "faq" as const,
    fields: { question: `Opening hours, take ${i}?`, answer: `We open at ${i % 24}:00. ${i}` },
  });
  const plainItem = await services.plain.create(ctx, faq(0));
  const auditedItem = await services.audited.create(ctx, faq(0));
  out.push(
    latency(
      "knowledge update",
      await compareAlternating(
        ops,
        (i) => services.plain.update(ctx, plainItem.id, faq(i)),
        (i) => services.audited.update(ctx, auditedItem.id, faq(i)),
      ),
    ),
  );

  // Alert thresholds: a single upsert, the smallest audited mutation.
  const plainAlerts = createAlertsService({ db: app.db, clock: app.clock, audit: unaudited });
  const settings = (i: number) => ({ costUsdMonthly: i });
  out.push(
    latency(
      "alert settings",
      await compareAlternating(
        ops,
        (i) => plainAlerts.putSettings(ctx, settings(i)),
        (i) => app.alerts.putSettings(ctx, settings(i)),
      ),
    ),
  );

  // The row alone: a one-insert transaction, with and without the audit row after it.
  const write = (tx: Queryable) =>
    tx.query(
      `insert into api_calls (id, tenant_id, occurred_at, request_id, method, route, route_group,
         status, latency_ms, bytes_in, bytes_out, actor_type)
       values ($1, $2, now(), 'bench', 'PUT', '/api/bench', 'bench', 200, 1, 10, 10, 'api_key')`,
      [randomUUID(), ctx.tenantId],
    );
  const entry = {
    eventType: "document.update",
    entityType: "document",
    entityId: randomUUID(),
    action: "update",
    oldValues: { title: "Before" },
    newValues: { title: "After", contentHash: "0".repeat(64), sizeBytes: 1234 },
  } as const;
  out.push(
    latency(
      "bare write",
      await compareAlternating(
        ops,
        () => app.db.transaction(write),
        () =>
          app.db.transaction(async (tx) => {
            await write(tx);
            await app.audit.record(ctx, entry, { tx });
          }),
      ),
    ),
  );
  return out;
}

interface Throughput {
  writers: number;
  tenants: "one" | "many";
  rows: number;
  rowsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** `writers` callers appending rows for `seconds`, on one tenant's chain or one chain each. */
async function throughput(
  app: AppContext,
  writers: number,
  tenants: "one" | "many",
  seconds: number,
): Promise<Throughput> {
  const one = await newEnterpriseTenant(app);
  const contexts =
    tenants === "one"
      ? Array.from({ length: writers }, () => one)
      : await Promise.all(Array.from({ length: writers }, () => newEnterpriseTenant(app)));
  const entry = {
    eventType: "knowledge_item.update",
    entityType: "knowledge_item",
    entityId: randomUUID(),
    action: "update",
    oldValues: { question: "Before?" },
    newValues: { question: "After?", documentVersion: 2 },
  } as const;
  const samples: number[] = [];
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    contexts.map(async (ctx) => {
      while (performance.now() < until) {
        const s = performance.now();
        await app.db.transaction((tx) => app.audit.record(ctx, entry, { tx }));
        samples.push(performance.now() - s);
      }
    }),
  );
  const elapsed = performance.now() - t0;
  await assertContiguous(app.db, [...new Set(contexts.map((c) => c.tenantId))]);
  const s = summarize(samples);
  return {
    writers,
    tenants,
    rows: samples.length,
    rowsPerSecond: (samples.length / elapsed) * 1000,
    p50Ms: s.p50,
    p99Ms: s.p99,
  };
}

/** Every chain: as many rows as its head's seq, seqs 1..n (no fork, no gap). */
async function assertContiguous(db: Db, tenantIds: string[]): Promise<void> {
  for (const id of tenantIds) {
    const [r] = await db.query<{ n: number; lo: number; hi: number; head: number }>(
      `select count(*)::int as n, min(seq)::int as lo, max(seq)::int as hi,
              (select seq::int from audit_chains where chain_id = $1) as head
       from audit_events where chain_id = $1`,
      [id],
    );
    if (!r || r.n !== r.head || r.lo !== 1 || r.hi !== r.n)
      throw new Error(`chain ${id} is not 1..n: ${JSON.stringify(r)}`);
  }
}

async function backendsToRun(): Promise<Array<() => Promise<BenchDb>>> {
  const list: Array<() => Promise<BenchDb>> = [openPglite];
  if (BENCH_DATABASE_URL) list.push(() => openPostgres(BENCH_DATABASE_URL as string, 20));
  return list;
}

export async function run(opts: {
  ops: number;
  writers: number[];
  seconds: number;
}): Promise<Record<string, { latency: Latency[]; throughput: Throughput[] }>> {
  const out: Record<string, { latency: Latency[]; throughput: Throughput[] }> = {};
  for (const open of await backendsToRun()) {
    const store = await open();
    const data = tempDir("audit");
    const config = loadConfig({
      DATA_DIR: data.dir,
      LOG_LEVEL: "silent",
      JWT_SECRET: randomBytes(32).toString("hex"),
      MASTER_KEY: randomBytes(32).toString("hex"),
      RATE_LIMITS_ENABLED: "false",
    });
    // The store is given (PostgreSQL or PGlite); the rest is embedded mode's defaults. No
    // workers: the updates' jobs stay queued, so that only the requests' work is timed.
    const app = await createContext(config, {
      db: store.db,
      logger: pino({ level: "silent" }),
      migrations: "skip",
    });
    try {
      const lat = await latencies(app, opts.ops);
      const thr: Throughput[] = [];
      for (const w of opts.writers) {
        thr.push(await throughput(app, w, "one", opts.seconds));
        thr.push(await throughput(app, w, "many", opts.seconds));
      }
      out[store.label] = { latency: lat, throughput: thr };
    } finally {
      await app.close();
      data.remove();
      await store.dispose().catch(() => undefined);
    }
  }
  return out;
}

function print(result: Awaited<ReturnType<typeof run>>): void {
  const lat: Array<Array<string | number>> = [];
  const thr: Array<Array<string | number>> = [];
  for (const [label, r] of Object.entries(result)) {
    for (const l of r.latency) {
      lat.push([
        label,
        l.operation,
        ms(l.baseline.p50),
        ms(l.baseline.p99),
        ms(l.audited.p50),
        ms(l.audited.p99),
        ms(l.addedP50Ms),
        ms(l.addedP99Ms),
      ]);
    }
    for (const t of r.throughput) {
      thr.push([
        label,
        t.writers,
        t.tenants,
        t.rows,
        Math.round(t.rowsPerSecond),
        ms(t.p50Ms),
        ms(t.p99Ms),
      ]);
    }
  }
  table(
    [
      "store",
      "operation",
      "unaudited p50 ms",
      "unaudited p99 ms",
      "audited p50 ms",
      "audited p99 ms",
      "added p50 ms",
      "added p99 ms",
    ],
    lat,
  );
  table(["store", "writers", "tenants", "rows", "rows/s", "p50 ms", "p99 ms"], thr);
}

const options = {
  ops: intOption("ops", 400),
  writers: listOption("writers", [1, 4, 16]),
  seconds: intOption("seconds", 3),
};
printHeader("Audit log: added latency and rows/s", options);
const result = await run(options);
print(result);
console.log(`\n## results\n${JSON.stringify(result, null, 2)}`);
printFooter();
