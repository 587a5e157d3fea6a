import { z } from "zod";
import { badTextReason } from "./text.js";

/** Path parameter `:id` that must be a UUID; anything else is a 400, not a database error. */
export const idParams = z.object({ id: z.uuid({ message: "must be a UUID" }) });

/**
 * Control characters other than tab, newline and carriage return (C0 and DEL). In a title, a
 * name or a metadata value they are never meant: they break logs, CSV exports and terminals,
 * and a client that sends one has a bug worth hearing about at submit. Document content may
 * keep them (text extracted from real files has form feeds and the like); NUL and lone
 * surrogates are refused everywhere by the request text check (text.ts).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL_CHARS_RE = /^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]*$/;

/**
 * A string without control characters (tab, newline and carriage return allowed) nor lone
 * surrogates: the base of every title, name, label and metadata value. JSON bodies are
 * checked for NUL and surrogates before any schema (text.ts); this also covers fields that
 * arrive another way (multipart). Chain `.trim()`, `.min()`, `.max()` after it.
 */
export const plainText = () =>
  z
    .string()
    .regex(
      CONTROL_CHARS_RE,
      "must not contain control characters (tab, newline and CR are allowed)",
    )
    .refine((s) => badTextReason(s) === undefined, "must not contain lone UTF-16 surrogates");

/**
 * An ISO 8601 date-time with its offset, as a Date, in the years PostgreSQL's timestamptz and
 * ISO 8601 both hold (0001–9999 in UTC). Year 0000 has the form but not a timestamptz, and
 * 9999-12-31T23:00-14:00 is year 10000 in UTC: either would reach a query and fail there as a
 * 500. Every instant a request carries (windows, prices' effective dates) uses this.
 */
export const instant = () =>
  z.iso
    .datetime({
      offset: true,
      message: "must be an ISO 8601 date-time with an offset, e.g. 2026-01-01T00:00:00Z",
    })
    .transform((s) => new Date(s))
    .refine((d) => d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999, {
      message: "must be in the years 0001 to 9999 (UTC)",
    });

/** The response of a route that answers 204: no body (the OpenAPI document shows none). */
export const noContent = z.undefined().describe("No content");
