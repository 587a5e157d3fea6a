import type { FastifyInstance } from "fastify";
import { Counter, Gauge, type Registry } from "prom-client";
import { z } from "zod";
import type { JobMetrics } from "../platform/queue/metrics.js";

/** The Prometheus text exposition format, version 0.0.4 (what prom-client renders). */
const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Job runs of this process (`platform/queue/metrics.ts`) as Prometheus series, read from the
 * job metrics' snapshot at each scrape. Registered once per registry.
 */
export function registerJobMetrics(registry: Registry, jobs: JobMetrics): void {
  if (registry.getSingleMetric("tenantrag_job_runs_total")) return;
  const registers = [registry];
  new Counter({
    name: "tenantrag_job_runs_total",
    help: "Background job runs in this process, by job name and outcome",
    labelNames: ["job", "outcome"],
    registers,
    collect() {
      this.reset();
      for (const [job, s] of Object.entries(jobs.snapshot())) {
        for (const [outcome, n] of Object.entries(s.outcomes)) this.inc({ job, outcome }, n);
      }
    },
  });
  new Counter({
    name: "tenantrag_job_retries_total",
    help: "Background job runs that were a retry (attempt > 1)",
    labelNames: ["job"],
    registers,
    collect() {
      this.reset();
      for (const [job, s] of Object.entries(jobs.snapshot())) this.inc({ job }, s.retries);
    },
  });
  new Counter({
    name: "tenantrag_job_duration_seconds_total",
    help: "Time spent in background job handlers",
    labelNames: ["job"],
    registers,
    collect() {
      this.reset();
      for (const [job, s] of Object.entries(jobs.snapshot()))
        this.inc({ job }, s.durationMsTotal / 1000);
    },
  });
  new Gauge({
    name: "tenantrag_job_duration_seconds_max",
    help: "The longest background job run so far in this process",
    labelNames: ["job"],
    registers,
    collect() {
      this.reset();
      for (const [job, s] of Object.entries(jobs.snapshot()))
        this.set({ job }, s.durationMsMax / 1000);
    },
  });
}

/**
 * `GET /metrics`: the process's Prometheus registry. Platform admins may read it, and so may a
 * scraper holding METRICS_TOKEN as its bearer token (compared in constant time by the auth
 * hook). Everyone else is refused like on any admin route: 401 without credentials, 403 with a
 * tenant's. Per process: scrape every API and worker process.
 */
export function registerMetricsRoute(
  app: FastifyInstance,
  deps: { registry: Registry; jobs: JobMetrics },
): void {
  registerJobMetrics(deps.registry, deps.jobs);
  app.get(
    "/metrics",
    {
      config: { auth: "platform_admin", serviceToken: true },
      schema: {
        tags: ["health"],
        summary: "Prometheus metrics of this process (platform admins or METRICS_TOKEN)",
        response: {
          200: {
            description: "The Prometheus text format",
            content: { "text/plain": { schema: z.string() } },
          },
        },
      },
    },
    async (_req, reply) => {
      const text = await deps.registry.metrics();
      return reply.type(PROMETHEUS_CONTENT_TYPE).send(text);
    },
  );
}
