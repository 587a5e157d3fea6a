/**
 * The events module: the analytics events feed (seed 003). `log` writes a business fact of a
 * tenant in the caller's transaction; the feed and analytics routes read them. The only file
 * other modules and the composition root import.
 */

export { createEventsFeed, type EventsFeed, type EventView } from "./analytics.js";
export { eventsJobs, eventsJobTypes, eventsSchedules } from "./events.jobs.js";
export { eventsRoutes } from "./events.routes.js";
export {
  createEventsLog,
  type EventInput,
  type EventsLog,
  jobEventId,
  type LogResult,
} from "./events.service.js";
export {
  cleanData,
  fitSize,
  isDeniedKey,
  MAX_EVENT_BYTES,
  type OversizePolicy,
  REDACTED,
  sampled,
  TRUNCATED_KEY,
  validateEvent,
} from "./payload.js";
export {
  createEventsRetention,
  type EventsRetention,
  EventsRetentionConfigError,
} from "./retention.js";
export {
  EVENT_DOMAINS,
  EVENT_NAMES,
  type EventData,
  type EventName,
  eventSchemas,
  SOURCE_TYPES,
} from "./taxonomy.js";
