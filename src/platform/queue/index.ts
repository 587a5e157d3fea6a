export { type BullmqQueueOptions, createBullmqQueue } from "./bullmq.js";
export { createEmbeddedQueue, type EmbeddedQueueOptions } from "./embedded.js";
export { InvalidJobError } from "./jobs-store.js";
export {
  type BatchOptions,
  backoffMs,
  type Clock,
  type EnqueueOptions,
  type JobContext,
  type JobHandlers,
  type JobQueue,
  type JobRecord,
  type JobRegistry,
  type JobStatus,
  type JobTypeOptions,
  NonRetryableError,
  type ScheduleTiming,
  systemClock,
  type WorkOptions,
} from "./queue.js";
