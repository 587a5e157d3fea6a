import { LRUCache } from "lru-cache";
import type { Db } from "../../platform/db/index.js";
import type { ApiKeyActor, RequestMeta } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import { authStore as store } from "./auth.store.js";

/**
 * (key, address) pairs this process knows are recorded. A bound, not a cache of answers that
 * could go stale: a recorded pair stays recorded, so forgetting one costs only one more
 * insert that does nothing.
 */
const KNOWN_PAIRS = 50_000;

/**
 * The first use of each API key from each client address: a row of `api_key_addresses` and an
 * `api_key.new_ip` audit row, in one transaction. On the request path of every API-key call, so
 * it is cheap: a pair this process has seen costs a lookup in memory, one it has not seen an
 * `insert … on conflict do nothing` (a row already recorded, e.g. by another process or before
 * a restart, writes no audit row).
 */
export function createKeyAddresses(deps: { db: Db; audit: AuditLog }) {
  const known = new LRUCache<string, true>({ max: KNOWN_PAIRS });
  return {
    async note(actor: ApiKeyActor, request: RequestMeta): Promise<void> {
      const pair = `${actor.keyId} ${request.ip}`;
      if (known.has(pair)) return;
      await deps.db.transaction(async (tx) => {
        const first = await store.insertKeyAddress(tx, {
          keyId: actor.keyId,
          tenantId: actor.tenantId,
          ip: request.ip,
        });
        if (!first) return;
        await deps.audit.record(
          { tenantId: actor.tenantId, actor, request },
          {
            eventType: "api_key.new_ip",
            entityType: "api_key",
            entityId: actor.keyId,
            action: "access",
            newValues: { ip: request.ip },
          },
          { tx },
        );
      });
      // Only once committed: a rolled-back first use must be noted again by the next one.
      known.set(pair, true);
    },
  };
}
