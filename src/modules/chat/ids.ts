import { createHash } from "node:crypto";
import { isUuid } from "../../platform/ids.js";

/**
 * The root of every tenant's chat namespace (a fixed random UUID): a tenant's namespace is the
 * UUIDv5 of its id in this one, so the same outside id gives different UUIDs in two tenants.
 */
const CHAT_ROOT_NAMESPACE = "3c1f7a52-9b4e-4d1a-8f0e-6a2b5c7d9e10";

function bytesOf(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ""), "hex");
}

/** RFC 9562 UUIDv5: SHA-1 of the namespace's 16 bytes and the name's UTF-8, version and variant set. */
export function uuidV5(name: string, namespace: string): string {
  const h = createHash("sha1").update(bytesOf(namespace)).update(name, "utf8").digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x50;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The namespace of a tenant's chat ids. */
export function tenantNamespace(tenantId: string): string {
  return uuidV5(tenantId.toLowerCase(), CHAT_ROOT_NAMESPACE);
}

/**
 * The UUID a session or visitor id from outside stands for: a UUID is itself (lower-cased);
 * any other string (`test_123`, a CRM id) its UUIDv5 in the tenant's namespace, the kind
 * prefixed so that a session and a user named alike stay apart. Deterministic: the same string
 * always finds the same session, and nothing is ever refused for not being a UUID.
 */
export function chatId(tenantId: string, kind: "session" | "user", value: string): string {
  if (isUuid(value)) return value.toLowerCase();
  return uuidV5(`${kind}:${value}`, tenantNamespace(tenantId));
}
