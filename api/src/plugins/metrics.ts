import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Registry, collectDefaultMetrics } from "prom-client";
import type { DomainMetrics } from "./domain-metrics.ts";
import { RequestMetrics, type RequestSeries } from "./request-metrics.ts";

declare module "fastify" {
  interface FastifyInstance {
    /** Public GET /metrics: HTTP, process and the domain's tenant-free metrics. */
    metrics: Registry;
    /** Operator-only GET /v1/metrics/tenants: the domain's series labelled by tenant. */
    tenantMetrics: Registry;
  }
}

export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60] as const;

/** Requests by route template (never the raw URL: names would explode the label set) and status. */
export const metricsPlugin = fp(
  async (app: FastifyInstance, opts: { domain: DomainMetrics }) => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: "weft_" });
    const requests = new RequestMetrics(
      {
        counter: "weft_http_requests_total",
        counterHelp: "HTTP requests answered, by route and status",
        histogram: "weft_http_request_duration_seconds",
        histogramHelp: "Time from request received to response sent",
      },
      LATENCY_BUCKETS,
    );
    requests.registerIn(registry);
    app.decorate("metrics", Registry.merge([registry, opts.domain.registry]));
    app.decorate("tenantMetrics", opts.domain.tenantRegistry);

    // Each route's config object is its own (the not-found handler's too), so
    // it keys the route's series: the route label is worked out once per
    // route, not per request. A route declared with several methods shares
    // one config, hence a list.
    const byRoute = new WeakMap<object, RequestSeries[]>();
    const seriesOf = (request: FastifyRequest): RequestSeries => {
      const { config, url } = request.routeOptions;
      let list = byRoute.get(config);
      if (list === undefined) byRoute.set(config, (list = []));
      for (const series of list) if (series.method === request.method) return series;
      const series = requests.seriesFor(request.method, url ?? "unmatched");
      list.push(series);
      return series;
    };
    app.addHook("onResponse", (request, reply, done) => {
      seriesOf(request).record(reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  },
  { name: "weft-metrics" },
);
