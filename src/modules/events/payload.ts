import { createHash } from "node:crypto";
import { AppError } from "../../errors.js";
import { type EventName, eventSchemas, isEventName } from "./taxonomy.js";

/**
 * Seed 003's guideline made a rule: an event's data is at most 2 KB as JSON. Events are many
 * and read in bulk by the analytics; a payload past this is content, which belongs elsewhere.
 */
export const MAX_EVENT_BYTES = 2048;

/** What a redacted value is replaced with. */
export const REDACTED = "[redacted]";

/** The marker key a truncated payload carries: the size it had. */
export const TRUNCATED_KEY = "_truncated";

export type OversizePolicy = "refuse" | "truncate";

/** Keys (compared lowercased, without `_`, `-` or spaces) whose values never reach the feed. */
const DENY_EXACT = new Set([
  "email",
  "mail",
  "phone",
  "mobile",
  "tel",
  "telephone",
  "fax",
  "name",
  "firstname",
  "lastname",
  "fullname",
  "givenname",
  "familyname",
  "surname",
  "displayname",
  "username",
  "address",
  "street",
  "city",
  "postcode",
  "postalcode",
  "zip",
  "zipcode",
  "ip",
  "ipv4",
  "ipv6",
  "clientip",
  "remoteip",
  "useragent",
  "ssn",
  "dob",
  "dateofbirth",
  "birthdate",
  "birthday",
  "passport",
  "iban",
  "creditcard",
  "cardnumber",
  "cvv",
  "password",
  "passwd",
  "secret",
  "token",
  "apikey",
  "authorization",
  "cookie",
]);

/**
 * Suffixes that make a key personal whatever precedes them (`customerEmail`, `ipAddress`,
 * `billingAddress`, `accessToken`). Not `name` or `ip`: `fileName`, `ownership` are not.
 */
const DENY_SUFFIXES = [
  "email",
  "emailaddress",
  "phone",
  "phonenumber",
  "address",
  "password",
  "token",
  "secret",
  "apikey",
];

const normalise = (key: string) => key.toLowerCase().replace(/[\s_-]/g, "");

/** True when a key's value is personal data or a credential and is redacted. */
export function isDeniedKey(key: string): boolean {
  const k = normalise(key);
  return DENY_EXACT.has(k) || DENY_SUFFIXES.some((s) => k.endsWith(s));
}

/**
 * A JSON copy of `value` without undefined values (object keys dropped, array slots null, as
 * JSON.stringify would), and with the value of every denied key replaced by REDACTED, at any
 * depth. Dates become ISO strings; functions, symbols and bigints are refused (not JSON).
 */
export function cleanData(value: unknown, path = "data"): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw invalid(`${path} is ${value}, which JSON cannot hold`);
    return value;
  }
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value))
    return value.map((v, i) => (v === undefined ? null : cleanData(v, `${path}[${i}]`)));
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined) continue;
      out[k] = isDeniedKey(k) ? REDACTED : cleanData(v, `${path}.${k}`);
    }
    return out;
  }
  throw invalid(`${path} is a ${typeof value}, which JSON cannot hold`);
}

function invalid(message: string, details?: Record<string, unknown>): AppError {
  return new AppError("events.invalid_payload", message, details);
}

/** Drops undefined values at the top level only, before the schema sees the data. */
function withoutUndefined(data: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined));
}

/**
 * Checks `name` against the taxonomy and `data` against its schema, then cleans it
 * (cleanData). Throws `events.invalid_payload` naming what is wrong.
 */
export function validateEvent(name: string, data: unknown): Record<string, unknown> {
  if (!isEventName(name)) throw invalid(`"${name}" is not an event of the taxonomy`);
  if (data === null || typeof data !== "object" || Array.isArray(data))
    throw invalid(`the data of ${name} must be an object`);
  const parsed = eventSchemas[name].safeParse(withoutUndefined(data as Record<string, unknown>));
  if (!parsed.success) {
    throw invalid(`the data of ${name} does not match its schema`, {
      name,
      issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    });
  }
  return cleanData(parsed.data) as Record<string, unknown>;
}

const byteLength = (v: unknown) => Buffer.byteLength(JSON.stringify(v), "utf8");

/** Longest string a truncated payload keeps of each value. */
const TRUNCATED_STRING_CHARS = 200;

/**
 * A payload of at most MAX_EVENT_BYTES: as it is when it fits; else refused
 * (`events.payload_too_large`) or, with `truncate`, reduced to its scalar top-level values
 * (strings cut to 200 characters; objects and arrays dropped) plus `_truncated: <bytes it
 * had>`, or to the marker alone if even that does not fit. `truncated` says which happened.
 */
export function fitSize(
  name: EventName,
  data: Record<string, unknown>,
  policy: OversizePolicy,
): { data: Record<string, unknown>; truncated: boolean } {
  const bytes = byteLength(data);
  if (bytes <= MAX_EVENT_BYTES) return { data, truncated: false };
  if (policy === "refuse") {
    throw new AppError(
      "events.payload_too_large",
      `the data of ${name} is ${bytes} bytes as JSON; events hold at most ${MAX_EVENT_BYTES}`,
      { name, bytes, max: MAX_EVENT_BYTES },
    );
  }
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) {
    if (typeof v === "string") kept[k] = v.slice(0, TRUNCATED_STRING_CHARS);
    else if (v === null || typeof v !== "object") kept[k] = v;
  }
  kept[TRUNCATED_KEY] = bytes;
  if (byteLength(kept) <= MAX_EVENT_BYTES) return { data: kept, truncated: true };
  return { data: { [TRUNCATED_KEY]: bytes }, truncated: true };
}

/**
 * Whether an event keyed by `key` is kept at `rate` (0…1): a function of the key alone, so a
 * retried write (the same message) decides as the first did, and a rate of 0.1 keeps about
 * one key in ten.
 */
export function sampled(key: string, rate: number): boolean {
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  const h = createHash("sha256").update(key).digest();
  return h.readUInt32BE(0) / 0x1_0000_0000 < rate;
}
