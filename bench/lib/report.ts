import { readFileSync } from "node:fs";
import os from "node:os";

/**
 * What every benchmark needs besides its subject: options from flags or the environment,
 * percentiles, the machine it ran on, and aligned tables on stdout. Nothing is written to a
 * file: RESULTS.md is written by hand from what these print.
 */

/**
 * An integer option: `--name=value` on the command line, else `BENCH_NAME` (dashes become
 * underscores) in the environment, else `fallback`.
 */
export function intOption(name: string, fallback: number): number {
  const raw = stringOption(name, undefined);
  if (raw === undefined) return fallback;
  const n = Number(raw.replaceAll("_", ""));
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number`);
  return Math.round(n);
}

export function stringOption<T extends string | undefined>(name: string, fallback: T): string | T {
  const flag = process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (flag) return flag.includes("=") ? flag.slice(flag.indexOf("=") + 1) : "true";
  const env = process.env[`BENCH_${name.toUpperCase().replaceAll("-", "_")}`];
  return env === undefined || env === "" ? fallback : env;
}

export function listOption(name: string, fallback: number[]): number[] {
  const raw = stringOption(name, undefined);
  if (raw === undefined) return fallback;
  return raw.split(",").map((s) => Number(s.trim().replaceAll("_", "")));
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    mean: s.length ? sum / s.length : Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
  };
}

/** Milliseconds with a precision that suits their size. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return "–";
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return v.toFixed(0);
}

export function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "–";
  const r = a / b;
  return r >= 10 ? `${r.toFixed(0)}×` : `${r.toFixed(2)}×`;
}

export function rate(count: number, elapsedMs: number): string {
  const r = count / (elapsedMs / 1000);
  return r >= 100 ? r.toFixed(0) : r.toFixed(1);
}

/** Prints rows as a Markdown table (so it can be pasted into RESULTS.md as is). */
export function table(headers: string[], rows: Array<Array<string | number>>): void {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  console.log(line(headers));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of cells.slice(1)) console.log(line(r));
  console.log();
}

function cpuModel(): string {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"));
    return line ? line.split(":")[1]?.trim() || "unknown" : (os.cpus()[0]?.model ?? "unknown");
  } catch {
    return os.cpus()[0]?.model ?? "unknown";
  }
}

/** The machine and the run, printed first by every benchmark. */
export function printHeader(title: string, options: Record<string, unknown>): void {
  console.log(`# ${title}`);
  console.log(
    [
      `date: ${new Date().toISOString()}`,
      `cpus: ${os.availableParallelism()} (${cpuModel()})`,
      `memory: ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
      `node: ${process.version} (${process.platform}/${process.arch})`,
      `load average (1/5/15 min): ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" / ")}`,
      `command: ${process.argv.slice(1).join(" ")}`,
      `options: ${JSON.stringify(options)}`,
    ].join("\n"),
  );
  console.log();
}

/** Printed last: the load other processes put on the machine during the run, and our peak memory. */
export function printFooter(): void {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" / ");
  const peak = (process.resourceUsage().maxRSS / 1024).toFixed(0);
  console.log(
    `\nload average at the end (1/5/15 min): ${load}; peak RSS of this process: ${peak} MiB`,
  );
}

/** Elapsed milliseconds of `fn`, with its result. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

export const sleep = (msDelay: number) => new Promise((r) => setTimeout(r, msDelay));

/** Runs `fn` over `items` with at most `limit` calls in flight, in order of the items. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
