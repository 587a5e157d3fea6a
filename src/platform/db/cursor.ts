import { AppError } from "../../errors.js";
import { isUuid } from "../ids.js";

/**
 * Keyset-pagination cursors over (created_at, id), newest first. Opaque to clients: base64url
 * of the last row's millisecond timestamp and id. Stores compare on created_at truncated to
 * milliseconds, because that is what the cursor carries (Postgres keeps microseconds).
 */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(JSON.stringify([createdAt.toISOString(), id])).toString("base64url");
}

/** Decodes a cursor, or throws a 400 naming the `cursor` query parameter. */
export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [
      string,
      string,
    ];
    // Only the exact form encodeCursor writes: anything else (a non-UUID id, a year the database
    // cannot store) would reach the query and fail there as a 500.
    const date = new Date(createdAt);
    const canonical =
      typeof createdAt === "string" &&
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(createdAt) &&
      !Number.isNaN(date.getTime()) &&
      // Year 0000 has the form, but timestamptz has no year 0.
      date.getUTCFullYear() >= 1 &&
      date.toISOString() === createdAt;
    if (!canonical || !isUuid(id)) throw new Error("bad cursor");
    return { createdAt: date, id };
  } catch {
    throw new AppError("validation.failed", "cursor is not valid", {
      location: "querystring",
      issues: [{ path: "cursor", message: "not a cursor returned by this endpoint" }],
    });
  }
}
