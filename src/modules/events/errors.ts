/**
 * The error codes the events module raises; their HTTP statuses are in `src/http/errors.ts`.
 * Both are faults of the code that emits the event, never of a client (no route creates one):
 * they are 500s, and the transaction the event rides with rolls back.
 */
export type EventsErrorCode =
  /** An event name outside the taxonomy, or data its name's schema refuses. */
  | "events.invalid_payload"
  /** Data over MAX_EVENT_BYTES as JSON, with EVENTS_OVERSIZE=refuse (development and tests). */
  | "events.payload_too_large";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<EventsErrorCode, true> {}
}
