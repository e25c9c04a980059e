import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

declare module "fastify" {
  interface FastifyInstance {
    metrics: Registry;
  }
}

/** Requests by route template (never the raw URL: names would explode the label set) and status. */
export const metricsPlugin = fp(
  async (app: FastifyInstance) => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: "weft_" });
    const requests = new Counter({
      name: "weft_http_requests_total",
      help: "HTTP requests answered, by route and status",
      labelNames: ["method", "route", "status"] as const,
      registers: [registry],
    });
    const latency = new Histogram({
      name: "weft_http_request_duration_seconds",
      help: "Time from request received to response sent",
      labelNames: ["method", "route"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
      registers: [registry],
    });
    app.decorate("metrics", registry);
    // prom-client hashes a label object on every call; the children for a
    // (method, route, status) are looked up once and kept.
    const children = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>();
    app.addHook("onResponse", (request, reply, done) => {
      const route = request.routeOptions.url ?? "unmatched";
      const key = `${request.method} ${route} ${reply.statusCode}`;
      let child = children.get(key);
      if (!child) {
        child = {
          count: requests.labels(request.method, route, String(reply.statusCode)),
          time: latency.labels(request.method, route),
        };
        children.set(key, child);
      }
      child.count.inc();
      child.time.observe(reply.elapsedTime / 1000);
      done();
    });
  },
  { name: "weft-metrics" },
);
