import type { Logger } from "pino";
import { z } from "zod";
import { defineJobs, type JobTypes, type RegistryOf } from "../../platform/queue/catalog.js";
import type { VectorIndex } from "../../platform/vectors/vectors.js";

/**
 * Jobs that keep the tenants' search indexes fast. Here rather than in ingestion: they serve
 * search, and the vector index asks for them whoever wrote the rows.
 */
export const searchJobTypes = {
  /**
   * Compact the tenant's vector tables and build or rebuild its ANN index when due. Slow on
   * big tables, so never on the ingestion path; asked for by the vector index when a tenant
   * passes the ANN threshold, when its index has too many pieces, and a few minutes after a
   * compaction to remove the table versions it left. Search keeps working meanwhile.
   */
  "index.optimize": { schema: z.object({ tenantId: z.uuid() }) },
} satisfies JobTypes;

export type SearchJobs = RegistryOf<typeof searchJobTypes>;

export function searchJobs(deps: {
  vectors: Pick<VectorIndex, "optimize">;
  logger: Pick<Logger, "info">;
}) {
  return defineJobs(searchJobTypes, {
    async "index.optimize"(job) {
      const { annIndexed } = await deps.vectors.optimize(job.payload.tenantId);
      deps.logger.info({ tenantId: job.payload.tenantId, annIndexed }, "tenant index optimized");
    },
  });
}
