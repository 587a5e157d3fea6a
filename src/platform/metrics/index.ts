import { collectDefaultMetrics, Registry } from "prom-client";

/**
 * The process's Prometheus metrics. One registry per application context (not prom-client's
 * global one), so two contexts in one process (tests, the CLI) do not collide. A module
 * registers its own instruments on it: `new Counter({ name, help, registers: [metrics.registry] })`.
 * Names start with `tenantrag_`.
 */
export interface Metrics {
  registry: Registry;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: "tenantrag_" });
  return { registry };
}
