export { type BullmqQueueOptions, createBullmqQueue } from "./bullmq.js";
export { createEmbeddedQueue, type EmbeddedQueueOptions } from "./embedded.js";
export { InvalidJobError } from "./jobs-store.js";
export {
  backoffMs,
  type EnqueueOptions,
  type JobContext,
  type JobHandlers,
  type JobQueue,
  type JobRecord,
  type JobRegistry,
  type JobStatus,
  NonRetryableError,
  type WorkOptions,
} from "./queue.js";
