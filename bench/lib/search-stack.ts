import pino from "pino";
import { createAuditLog } from "../../src/modules/audit/index.js";
import { createEventsLog } from "../../src/modules/events/index.js";
import { createDocumentsService } from "../../src/modules/ingestion/index.js";
import { createSearchService, type SearchService } from "../../src/modules/search/index.js";
import {
  createTenantsService,
  type Embedders,
  type TenantsService,
} from "../../src/modules/tenants/index.js";
import { createUsageService } from "../../src/modules/usage/index.js";
import { createLocalBlobStore } from "../../src/platform/blobs/local.js";
import { systemClock } from "../../src/platform/clock.js";
import type { Db } from "../../src/platform/db/index.js";
import type { LanceVectorIndex } from "../../src/platform/vectors/index.js";

const silent = pino({ level: "silent" });

/**
 * Quotas that never refuse: the search benchmarks measure retrieval; a reserve and a settle per
 * search are measured on their own by bench/metering/quota.ts.
 */
const unmetered = {
  reserveAll: async () => [],
  settleAll: async () => {},
  release: async () => {},
};

/**
 * The tenants service of the search benchmarks. Nothing they measure changes a tenant's
 * profile, configuration or status, so it records no audit rows. `embeddingCache: false` is
 * the service without its settings cache (the before of that cache).
 */
export function benchTenants(db: Db, opts: { embeddingCache?: false } = {}): TenantsService {
  return createTenantsService({
    db,
    masterKey: Buffer.alloc(32, 7),
    clock: systemClock,
    audit: { record: async () => ({ id: "", seq: 0 }), recordMany: async () => [] },
    ...opts,
  });
}

/**
 * The search service as the route calls it (active-version filter through the documents
 * service, usage recorded), over `vectors`, with quotas that never refuse.
 */
export function benchSearchService(deps: {
  db: Db;
  vectors: LanceVectorIndex;
  blobsDir: string;
  embedders: Embedders;
  tenants: TenantsService;
}): SearchService {
  const { db, vectors } = deps;
  const audit = createAuditLog({ db, clock: systemClock });
  const usage = createUsageService({ db, clock: systemClock, logger: silent, audit });
  const documents = createDocumentsService({
    db,
    vectors,
    blobs: createLocalBlobStore({ root: deps.blobsDir }),
    queue: { get: async () => undefined },
    usage,
    audit,
    events: createEventsLog({
      db,
      clock: systemClock,
      logger: silent,
      oversize: "refuse",
      messageSentSampleRate: 1,
    }),
    logger: silent,
  });
  return createSearchService({
    db,
    documents,
    vectors,
    embedders: deps.embedders,
    tenants: deps.tenants,
    usage,
    quotas: unmetered,
  });
}
