/**
 * The metering benchmarks (issue 9, "Benchmarks"), one named section per file in
 * `bench/metering/<section>.ts`, each exporting `run(): Promise<Record<string, unknown>>`.
 *
 *   npm run bench:metering -- writer            # one section
 *   npm run bench:metering -- writer rollup     # several, in that order
 *   npm run bench:metering                      # every section present
 *
 * Sections print their own tables; the driver prints the machine once and each section's
 * result as JSON at the end (the figures that go into bench/RESULTS.md, "Metering").
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { printFooter, printHeader } from "./lib/report.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, "metering");
const available = readdirSync(dir)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => f.slice(0, -3))
  .sort();
const asked = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const sections = asked.length > 0 ? asked : available;
const unknown = sections.filter((s) => !available.includes(s));
if (unknown.length > 0) {
  process.stderr.write(
    `unknown section(s): ${unknown.join(", ")}; available: ${available.join(", ")}\n`,
  );
  process.exit(2);
}

printHeader("Metering benchmarks", { sections });
const results: Record<string, unknown> = {};
for (const section of sections) {
  console.log(`\n## ${section}`);
  const mod = (await import(path.join(dir, `${section}.ts`))) as {
    run(): Promise<Record<string, unknown>>;
  };
  results[section] = await mod.run();
}
console.log(`\n## results\n${JSON.stringify(results, null, 2)}`);
printFooter();
