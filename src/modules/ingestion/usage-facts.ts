import type { Queryable } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import { storageFacts, type UsageRecorder } from "../usage/index.js";
import { documentsStore as store } from "./documents.store.js";

/**
 * Records the tenant's storage gauges (documents stored, bytes) after a change, in the
 * change's transaction. `change` names what changed them (`activation:<version id>`,
 * `delete:<document id>`), which makes the event ids: a retried change records nothing twice.
 * The level is read in that transaction, so it includes the change; a concurrent change
 * records its own level, and the daily snapshot states the level again.
 */
export async function recordStorageChange(
  usage: UsageRecorder,
  ctx: TenantContext,
  tx: Queryable,
  change: string,
): Promise<void> {
  const level = await store.storageLevel(tx, ctx.tenantId);
  await usage.record(ctx, storageFacts(level, { type: "storage_change", id: change }), { tx });
}
