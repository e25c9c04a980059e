import fc from "fast-check";
import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { LATENCY_BUCKETS } from "../../api/src/plugins/metrics.ts";
import { RequestMetrics } from "../../api/src/plugins/request-metrics.ts";

const NAMES = {
  counter: "weft_http_requests_total",
  counterHelp: "HTTP requests answered, by route and status",
  histogram: "weft_http_request_duration_seconds",
  histogramHelp: "Time from request received to response sent",
};

interface Observation {
  method: string;
  route: string;
  status: number;
  seconds: number;
}

/** The same observations into prom-client's own Counter and Histogram and into RequestMetrics. */
async function expositions(observations: Observation[]): Promise<{ ours: string; theirs: string }> {
  const theirRegistry = new Registry();
  const counter = new Counter({
    name: NAMES.counter,
    help: NAMES.counterHelp,
    labelNames: ["method", "route", "status"] as const,
    registers: [theirRegistry],
  });
  const histogram = new Histogram({
    name: NAMES.histogram,
    help: NAMES.histogramHelp,
    labelNames: ["method", "route"] as const,
    buckets: [...LATENCY_BUCKETS],
    registers: [theirRegistry],
  });
  const ourRegistry = new Registry();
  const metrics = new RequestMetrics(NAMES, LATENCY_BUCKETS);
  metrics.registerIn(ourRegistry);
  for (const o of observations) {
    counter.labels(o.method, o.route, String(o.status)).inc();
    histogram.labels(o.method, o.route).observe(o.seconds);
    metrics.seriesFor(o.method, o.route).record(o.status, o.seconds);
  }
  return { ours: await ourRegistry.metrics(), theirs: await theirRegistry.metrics() };
}

describe("request metrics", () => {
  it("expose exactly what prom-client's Counter and Histogram expose for the same requests", async () => {
    const observation = fc.record({
      method: fc.constantFrom("GET", "PUT", "HEAD"),
      route: fc.constantFrom("/v1/tenants/:tenant", "/v1/tenants", "unmatched", 'odd "quoted"\\route\n'),
      status: fc.constantFrom(200, 201, 304, 404, 500),
      // Bucket bounds themselves, and values between and beyond them.
      seconds: fc.oneof(fc.constantFrom(0, ...LATENCY_BUCKETS, 61), fc.double({ min: 0, max: 100, noNaN: true })),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { maxLength: 60 }), async (observations) => {
        const { ours, theirs } = await expositions(observations);
        expect(ours).toBe(theirs);
      }),
      { numRuns: 200 },
    );
  });

  it("counts a request in the first bucket whose bound holds it, and in every later one", async () => {
    const { ours } = await expositions([
      { method: "GET", route: "/r", status: 200, seconds: 0.001 },
      { method: "GET", route: "/r", status: 304, seconds: 0.003 },
      { method: "GET", route: "/r", status: 304, seconds: 99 },
    ]);
    const bucket = (le: string) =>
      Number(new RegExp(`^weft_http_request_duration_seconds_bucket\\{le="${le}",method="GET",route="/r"\\} (\\d+)$`, "m").exec(ours)?.[1]);
    expect([bucket("0.0005"), bucket("0.001"), bucket("0.0025"), bucket("0.005"), bucket("60"), bucket("\\+Inf")]).toEqual([0, 1, 1, 2, 2, 3]);
    expect(ours).toMatch(/^weft_http_requests_total\{method="GET",route="\/r",status="304"\} 2$/m);
    expect(ours).toMatch(/^weft_http_request_duration_seconds_sum\{method="GET",route="\/r"\} 99\.004$/m);
  });

  it("start again from zero when the registry resets its metrics", async () => {
    const registry = new Registry();
    const metrics = new RequestMetrics(NAMES, LATENCY_BUCKETS);
    metrics.registerIn(registry);
    metrics.seriesFor("GET", "/r").record(200, 0.002);
    registry.resetMetrics();
    metrics.seriesFor("GET", "/r").record(200, 0.002);
    const text = await registry.metrics();
    expect(text).toMatch(/^weft_http_requests_total\{method="GET",route="\/r",status="200"\} 1$/m);
    expect(text).toMatch(/^weft_http_request_duration_seconds_count\{method="GET",route="\/r"\} 1$/m);
  });
});
