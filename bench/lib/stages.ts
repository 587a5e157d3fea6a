import { ms, table } from "./report.js";

/**
 * Where the time of a run goes, without a profiler: chosen async methods of the assembled
 * application (the vector index, the embedder, the blob store) are wrapped to record each
 * call's start and duration. The services hold the same objects, so they call the wrappers.
 * Costs a `performance.now()` pair per call.
 */
export interface StageTracer {
  /** Replaces `obj[key]` (an async method) with a timed wrapper recorded as `label`. */
  wrap(obj: object, key: string, label: string): void;
  /** Mean milliseconds per call of each stage in each of `buckets` equal slices of [from, to). */
  print(from: number, to: number, buckets: number): void;
  /** Total milliseconds spent in each stage in [from, to). */
  totals(from: number, to: number): Map<string, { calls: number; ms: number }>;
}

export function createStageTracer(): StageTracer {
  const calls: Array<{ label: string; start: number; ms: number }> = [];
  const labels: string[] = [];
  return {
    wrap(obj, key, label) {
      const target = obj as Record<string, unknown>;
      const original = target[key];
      if (typeof original !== "function") throw new Error(`${key} is not a method`);
      labels.push(label);
      target[key] = async (...args: unknown[]) => {
        const start = performance.now();
        try {
          return await original.apply(obj, args);
        } finally {
          calls.push({ label, start, ms: performance.now() - start });
        }
      };
    },
    totals(from, to) {
      const out = new Map<string, { calls: number; ms: number }>();
      for (const c of calls) {
        if (c.start < from || c.start >= to) continue;
        const t = out.get(c.label) ?? { calls: 0, ms: 0 };
        t.calls++;
        t.ms += c.ms;
        out.set(c.label, t);
      }
      return out;
    },
    print(from, to, buckets) {
      const width = (to - from) / buckets;
      const rows = labels.map((label) => {
        const sums = new Array<number>(buckets).fill(0);
        const counts = new Array<number>(buckets).fill(0);
        for (const c of calls) {
          if (c.label !== label || c.start < from || c.start >= to) continue;
          const b = Math.min(buckets - 1, Math.floor((c.start - from) / width));
          sums[b] = (sums[b] as number) + c.ms;
          counts[b] = (counts[b] as number) + 1;
        }
        const total = counts.reduce((a, b) => a + b, 0);
        return [
          label,
          total,
          ...sums.map((s, i) => ((counts[i] as number) > 0 ? ms(s / (counts[i] as number)) : "–")),
        ];
      });
      table(
        ["stage", "calls", ...Array.from({ length: buckets }, (_, i) => `slice ${i + 1} ms/call`)],
        rows,
      );
    },
  };
}
