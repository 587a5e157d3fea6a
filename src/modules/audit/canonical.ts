import { createHash } from "node:crypto";

/**
 * The audit log's content rules, shared by the writer (record), the verifier (API) and the
 * offline verifier (CLI): no database and no other module here, so that an export can be
 * checked with this file alone.
 *
 * A row's hash is SHA-256 (hex) of the canonical JSON of HASHED_FIELDS (keys sorted at every
 * depth, no whitespace, `created_at` as an ISO string in milliseconds, `prev_hash` the
 * previous row's hash of the same chain, GENESIS_HASH for its first). The values hashed are
 * exactly the values stored: strings are cleaned (NUL removed, lone surrogates replaced) before
 * both, so PostgreSQL's text and jsonb accept them and give them back unchanged.
 */

/** The chain id of the platform's own chain (rows without a tenant). */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/** The `prev_hash` of a chain's first row. */
export const GENESIS_HASH = "0".repeat(64);

/** What a secret's value is replaced with. */
export const REDACTED = "[REDACTED]";

/** The chain of a tenant, or the platform's chain. */
export function chainIdOf(tenantId: string | null): string {
  return tenantId ?? NIL_UUID;
}

/**
 * Key names whose values are secrets (compared lowercased, without `_`, `-` and other
 * non-alphanumerics, so `api_key`, `apiKey` and `X-Api-Key` are one): a key CONTAINING one of
 * SECRET_KEY_PARTS, or ENDING with one of SECRET_KEY_ENDINGS, is redacted, unless it ends with
 * one of the NOT_SECRET_ENDINGS (an id, a prefix, a last-4, a count or a time is not the
 * secret: `apiKeyId`, `keyPrefix`, `passwordChangedAt` stay).
 */
export const SECRET_KEY_PARTS = [
  "password",
  "passwd",
  "passphrase",
  "secret",
  "privatekey",
  "apikey",
  "keyhash",
  "tokenhash",
  "credential",
  "authorization",
  "cookie",
  "signature",
  "masterkey",
] as const;
/** `token`, `accessToken`, `refreshToken`, `idToken`… but not `tokens` or `maxTokens` (counts). */
export const SECRET_KEY_ENDINGS = ["token", "otp", "pin", "cvv"] as const;
export const NOT_SECRET_ENDINGS = [
  "id",
  "ids",
  "prefix",
  "last4",
  "count",
  "at",
  "scopes",
  "name",
  "type",
] as const;

/**
 * String values that are credentials whatever their key: a bearer header, and tenantrag's own
 * API keys (`trk_…`) and refresh tokens (`rtk_…`).
 */
const SECRET_VALUE = /^(bearer\s+\S|basic\s+\S|trk_[\w-]{16,}|rtk_[\w-]{16,})/i;

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (NOT_SECRET_ENDINGS.some((e) => k.endsWith(e))) return false;
  return (
    SECRET_KEY_PARTS.some((p) => k.includes(p)) || SECRET_KEY_ENDINGS.some((e) => k.endsWith(e))
  );
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what is removed.
const NUL = /\u0000/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A string PostgreSQL stores and returns unchanged: NUL removed (text and jsonb refuse it),
 * lone UTF-16 surrogates replaced by U+FFFD (UTF-8 cannot carry them).
 */
export function cleanString(s: string): string {
  return s.replace(NUL, "").replace(LONE_SURROGATE, "\uFFFD");
}

/** A JSON value as jsonb stores it: only null, booleans, finite numbers, strings, arrays, objects. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const MAX_DEPTH = 32;

/**
 * `value` as JSON keeps it (JSON.stringify's rules: toJSON, undefined keys dropped, undefined
 * array items and non-finite numbers as null), with every string and key cleaned, secrets
 * redacted (when `redact`), bigints as strings, binary data as a note of its length, and cycles
 * or nesting beyond 32 levels cut with a marker.
 */
export function toJson(value: unknown, opts: { redact: boolean }): Json {
  const seen = new Set<object>();
  const walk = (v: unknown, depth: number): Json => {
    if (v === null || v === undefined) return null;
    switch (typeof v) {
      case "string":
        return opts.redact && SECRET_VALUE.test(v) ? REDACTED : cleanString(v);
      case "boolean":
        return v;
      case "number":
        return Number.isFinite(v) ? (Object.is(v, -0) ? 0 : v) : null;
      case "bigint":
        return v.toString();
      case "function":
      case "symbol":
        return null;
    }
    const o = v as object;
    if (o instanceof Uint8Array) return `[binary ${o.byteLength} bytes]`;
    if (typeof (o as { toJSON?: unknown }).toJSON === "function") {
      return walk((o as { toJSON(): unknown }).toJSON(), depth);
    }
    if (depth >= MAX_DEPTH) return "[too deep]";
    if (seen.has(o)) return "[circular]";
    seen.add(o);
    try {
      if (Array.isArray(o)) return o.map((item) => walk(item, depth + 1));
      const out: { [key: string]: Json } = {};
      for (const [k, item] of Object.entries(o)) {
        if (item === undefined || typeof item === "function" || typeof item === "symbol") continue;
        const key = cleanString(k);
        out[key] = opts.redact && isSecretKey(key) ? REDACTED : walk(item, depth + 1);
      }
      return out;
    } finally {
      seen.delete(o);
    }
  };
  return walk(value, 0);
}

/** JSON with object keys sorted at every depth and no whitespace: one text per value. */
export function canonicalJson(value: Json): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k] as Json)}`).join(",")}}`;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** A row's hashed content, as stored (snake_case, `created_at` an ISO string in ms). */
export interface HashedRow {
  id: string;
  chain_id: string;
  tenant_id: string | null;
  seq: number;
  event_type: string;
  entity_type: string;
  entity_id: string | null;
  action: string;
  actor_type: string;
  actor_id: string | null;
  caused_by: Json;
  old_values: Json;
  new_values: Json;
  changes_summary: string | null;
  result: string;
  error_message: string | null;
  ip_address: string | null;
  user_agent: string | null;
  request_id: string | null;
  created_at: string;
  prev_hash: string;
}

/** Every field the hash covers, in no particular order (canonical JSON sorts them). */
export const HASHED_FIELDS = [
  "id",
  "chain_id",
  "tenant_id",
  "seq",
  "event_type",
  "entity_type",
  "entity_id",
  "action",
  "actor_type",
  "actor_id",
  "caused_by",
  "old_values",
  "new_values",
  "changes_summary",
  "result",
  "error_message",
  "ip_address",
  "user_agent",
  "request_id",
  "created_at",
  "prev_hash",
] as const satisfies readonly (keyof HashedRow)[];

/** The canonical text a row's hash is taken over. */
export function rowCanonical(row: HashedRow): string {
  const content: { [key: string]: Json } = {};
  for (const f of HASHED_FIELDS) content[f] = (row[f] ?? null) as Json;
  return canonicalJson(content);
}

export function rowHash(row: HashedRow): string {
  return sha256(rowCanonical(row));
}

/** A digest's signed content (snake_case, times as ISO strings in ms). */
export interface DigestContent {
  id: string;
  chain_id: string;
  tenant_id: string | null;
  period_start: string;
  period_end: string;
  last_event_id: string;
  last_seq: number;
  last_hash: string;
  row_count: number;
  prev_digest_hash: string | null;
  key_id: string;
  created_at: string;
}

export const DIGEST_FIELDS = [
  "id",
  "chain_id",
  "tenant_id",
  "period_start",
  "period_end",
  "last_event_id",
  "last_seq",
  "last_hash",
  "row_count",
  "prev_digest_hash",
  "key_id",
  "created_at",
] as const satisfies readonly (keyof DigestContent)[];

/** The canonical text a digest's hash is taken over; its signature is over the hash's hex. */
export function digestCanonical(d: DigestContent): string {
  const content: { [key: string]: Json } = {};
  for (const f of DIGEST_FIELDS) content[f] = (d[f] ?? null) as Json;
  return canonicalJson(content);
}

export function digestHash(d: DigestContent): string {
  return sha256(digestCanonical(d));
}

/**
 * "title, tags changed": the top-level keys whose values differ between `oldValues` and
 * `newValues` (compared before redaction, so a changed password shows as changed). Only new
 * values: "… set"; only old: "… cleared"; null when there is neither.
 */
export function changesSummary(oldValues: Json, newValues: Json): string | null {
  const obj = (v: Json) => (v && typeof v === "object" && !Array.isArray(v) ? v : null);
  const o = obj(oldValues);
  const n = obj(newValues);
  const list = (keys: string[]) => (keys.length > 0 ? keys.join(", ") : null);
  if (o && n) {
    const keys = [...new Set([...Object.keys(n), ...Object.keys(o)])].filter(
      (k) => canonicalJson(o[k] ?? null) !== canonicalJson(n[k] ?? null),
    );
    const l = list(keys);
    return l ? `${l} changed` : "no changes";
  }
  if (n) {
    const l = list(Object.keys(n));
    return l ? `${l} set` : null;
  }
  if (o) {
    const l = list(Object.keys(o));
    return l ? `${l} cleared` : null;
  }
  return null;
}
