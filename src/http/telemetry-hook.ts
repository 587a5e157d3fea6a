import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Counter, Histogram, type Registry } from "prom-client";
import type { ApiCall } from "../modules/usage/index.js";
import type { Clock } from "../platform/clock.js";
import { routeGroupOf } from "./route-groups.js";

/** What is known of a request between its hooks. */
interface CallState {
  /** App-clock time the request arrived: the call's `occurred_at`. */
  startedAt: number;
  bytesOut: number | undefined;
  errorCode: string | null;
  /** Counted out of the in-flight set once (response or abort). */
  done: boolean;
}

/** The call's tenant and actor: the principal's, or whom a refused credential named. */
function attributionOf(
  req: FastifyRequest,
): { tenantId: string; type: string; id: string | null } | undefined {
  const p = req.principal;
  if (p && p.kind !== "platform_admin") {
    return p.kind === "user"
      ? { tenantId: p.tenantId, type: "user", id: p.userId }
      : { tenantId: p.tenantId, type: "api_key", id: p.keyId };
  }
  const c = req.caller;
  if (p === undefined && c) {
    return c.actor.kind === "user"
      ? { tenantId: c.tenantId, type: "user", id: c.actor.userId }
      : { tenantId: c.tenantId, type: "api_key", id: c.actor.keyId };
  }
  return undefined;
}

function errorCodeOf(payload: unknown): string | null {
  const text =
    typeof payload === "string"
      ? payload
      : Buffer.isBuffer(payload)
        ? payload.toString("utf8")
        : undefined;
  if (text === undefined) return null;
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } })?.error?.code;
    return typeof code === "string" ? code : null;
  } catch {
    // Not the error shape (a static file's 404, a plugin's text): the status says enough.
    return null;
  }
}

function headerBytes(value: unknown): number | undefined {
  const n = Number(Array.isArray(value) ? value[0] : value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** A metric registered once per registry: a second app over one context reuses it. */
function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/**
 * API-call telemetry (DESIGN.md §4: "after the response: telemetry"). Every response of a
 * known tenant — errors, 401s whose credential named its tenant, 429s included — becomes a
 * call handed to the telemetry buffer; every response, tenant or not, counts in
 * `tenantrag_http_requests_total` and the latency histogram. The route is the pattern as
 * registered, never the raw URL. On `app.close()` (after the server stopped taking requests),
 * the hook waits for requests still running to answer, then flushes the buffer.
 */
export function registerTelemetryHook(
  app: FastifyInstance,
  deps: {
    telemetry: { record(call: ApiCall): boolean; flush(): Promise<void> };
    clock: Clock;
    registry: Registry;
    /** How long close waits for in-flight requests before flushing anyway. */
    drainTimeoutMs: number;
  },
): void {
  const registry = deps.registry;
  const requests = once(
    registry,
    "tenantrag_http_requests_total",
    () =>
      new Counter({
        name: "tenantrag_http_requests_total",
        help: "HTTP responses by route group and status class (tenant or not)",
        labelNames: ["route_group", "status_class"],
        registers: [registry],
      }),
  );
  const latency = once(
    registry,
    "tenantrag_http_request_duration_seconds",
    () =>
      new Histogram({
        name: "tenantrag_http_request_duration_seconds",
        help: "Time from request to response, by route group",
        labelNames: ["route_group"],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers: [registry],
      }),
  );
  const states = new WeakMap<FastifyRequest, CallState>();
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const finish = (state: CallState) => {
    if (state.done) return;
    state.done = true;
    inFlight -= 1;
    if (inFlight === 0) drained?.();
  };

  app.addHook("onRequest", async (req) => {
    inFlight += 1;
    states.set(req, {
      startedAt: deps.clock.now(),
      bytesOut: undefined,
      errorCode: null,
      done: false,
    });
  });
  app.addHook("onRequestAbort", async (req) => {
    const state = states.get(req);
    if (state) finish(state);
  });
  app.addHook("onSend", async (req, reply, payload) => {
    const state = states.get(req);
    if (!state) return payload;
    if (reply.statusCode >= 400) state.errorCode = errorCodeOf(payload);
    state.bytesOut =
      typeof payload === "string"
        ? Buffer.byteLength(payload)
        : Buffer.isBuffer(payload)
          ? payload.length
          : headerBytes(reply.getHeader("content-length"));
    return payload;
  });
  app.addHook("onResponse", async (req: FastifyRequest, reply: FastifyReply) => {
    const state = states.get(req);
    const pattern = req.routeOptions.url;
    const group = routeGroupOf(req.method, pattern);
    const status = reply.statusCode;
    requests.inc({ route_group: group, status_class: `${Math.floor(status / 100)}xx` });
    latency.observe({ route_group: group }, reply.elapsedTime / 1000);
    if (!state) return;
    try {
      const who = attributionOf(req);
      if (who === undefined || pattern === undefined) return;
      deps.telemetry.record({
        tenantId: who.tenantId,
        occurredAt: new Date(state.startedAt),
        requestId: req.id,
        method: req.method,
        route: pattern,
        routeGroup: group,
        status,
        errorCode: state.errorCode,
        latencyMs: reply.elapsedTime,
        bytesIn: headerBytes(req.headers["content-length"]) ?? 0,
        bytesOut: state.bytesOut ?? headerBytes(reply.getHeader("content-length")) ?? 0,
        actorType: who.type,
        actorId: who.id,
      });
    } finally {
      finish(state);
    }
  });

  app.addHook("onClose", async () => {
    if (inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deps.drainTimeoutMs);
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await deps.telemetry.flush();
  });
}
