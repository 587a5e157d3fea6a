/**
 * Runs at most `max` calls at once; the others wait their turn, first come first served.
 * Bounds what concurrent work can hold at the same time (an exact vector search on a large
 * tenant materialises its whole vector column).
 */
export function createLimiter(max: number): <T>(fn: () => Promise<T>) => Promise<T> {
  if (!Number.isInteger(max) || max < 1) throw new RangeError("max must be a positive integer");
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < max) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await fn();
    } finally {
      // Hand the slot straight to the next caller, or give it back.
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}
