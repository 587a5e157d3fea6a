import type { Logger } from "pino";

/**
 * A background loop that runs `tick` every `everyMs`, never two at once, and logs a failed
 * tick (the next one tries again). Used by the queues for due schedules and the outbox relay.
 */
export interface Ticker {
  /**
   * Stops the loop and waits up to `graceMs` for a tick in progress (one stuck on a dead
   * connection must not hold up a close). Idempotent.
   */
  stop(graceMs: number): Promise<void>;
}

export function startTicker(opts: {
  everyMs: number;
  tick: () => Promise<void>;
  logger: Pick<Logger, "error">;
  /** What a tick does, for the log line of a failure. */
  what: string;
}): Ticker {
  let current: Promise<void> = Promise.resolve();
  let stopped = false;
  const run = () => {
    current = opts.tick().catch((err: unknown) => {
      opts.logger.error({ err }, `job queue: ${opts.what} failed`);
    });
    return current;
  };
  let timer: NodeJS.Timeout | undefined;
  const loop = async () => {
    await run();
    if (!stopped) timer = setTimeout(() => void loop(), opts.everyMs);
  };
  void loop();
  return {
    async stop(graceMs) {
      stopped = true;
      clearTimeout(timer);
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([
        current,
        new Promise<void>((resolve) => {
          grace = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(grace);
    },
  };
}
