import { createHash } from "node:crypto";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a canonical textual UUID (any version), the form a `uuid` column accepts. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID_RE.test(value);
}

/**
 * A UUID that is a function of `namespace` and `text` alone (the shape of a v5 UUID, from
 * SHA-1 of `namespace:text`): the same fact always gets the same id, so a unique constraint
 * on it is the dedupe. Namespaces keep the ids of different kinds of things apart.
 */
export function deterministicUuid(namespace: string, text: string): string {
  const h = createHash("sha1").update(`${namespace}:${text}`).digest("hex");
  const variant = ((Number.parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}
