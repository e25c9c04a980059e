import type { Metric, Registry } from "prom-client";

/**
 * The HTTP request counter and latency histogram, kept as plain numbers.
 *
 * prom-client's own Counter and Histogram validate and hash their label set
 * on every inc() and observe(), children included: about a microsecond per
 * request on the hot read path for two numbers that change. Here a request
 * adds to the series it already holds, and the labels are only turned into
 * text when /metrics is scraped. The registry sees two metrics that answer
 * get() in prom-client's shape, so the exposition is the one prom-client's
 * Counter and Histogram print (test/api/request-metrics.test.ts compares
 * them line for line).
 */

/** prom-client's label values: a histogram's `le` is its bound, a number. */
type Labels = Record<string, string | number>;
interface Value {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** One (method, route) pair: its latency buckets, and its count per status. */
export class RequestSeries {
  /** Observations per bucket, not cumulative; past the last bound only count grows (+Inf). */
  readonly buckets: number[];
  sum = 0;
  count = 0;
  private readonly statuses = new Map<number, StatusCount>();

  constructor(
    private readonly owner: RequestMetrics,
    readonly method: string,
    readonly route: string,
  ) {
    this.buckets = owner.bounds.map(() => 0);
  }

  /** One answered request: its status and the seconds from receipt to sent. */
  record(status: number, seconds: number): void {
    let counted = this.statuses.get(status);
    if (counted === undefined) {
      counted = { labels: { method: this.method, route: this.route, status: String(status) }, value: 0 };
      this.statuses.set(status, counted);
      this.owner.counted.push(counted);
    }
    counted.value++;
    const bounds = this.owner.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (seconds <= bounds[i]!) {
        this.buckets[i]!++;
        break;
      }
    }
    this.sum += seconds;
    this.count++;
  }
}

interface StatusCount {
  labels: Labels;
  value: number;
}

export class RequestMetrics {
  /** Counts in the order their label sets first appeared, as prom-client lists them. */
  readonly counted: StatusCount[] = [];
  private readonly series: RequestSeries[] = [];

  constructor(
    readonly names: { counter: string; counterHelp: string; histogram: string; histogramHelp: string },
    readonly bounds: readonly number[],
  ) {}

  /** The series of a (method, route) pair, created on first use: callers keep it. */
  seriesFor(method: string, route: string): RequestSeries {
    let found = this.series.find((s) => s.method === method && s.route === route);
    if (found === undefined) {
      found = new RequestSeries(this, method, route);
      this.series.push(found);
    }
    return found;
  }

  /** Both metrics into a registry; a registry takes any object that answers get() as prom-client's do. */
  registerIn(registry: Registry): void {
    const counter = {
      name: this.names.counter,
      help: this.names.counterHelp,
      type: "counter" as const,
      aggregator: "sum" as const,
      get: async () => ({ ...header(counter), values: this.counted.map((c) => ({ labels: { ...c.labels }, value: c.value })) }),
      reset: () => {
        for (const c of this.counted) c.value = 0;
      },
    };
    const histogram = {
      name: this.names.histogram,
      help: this.names.histogramHelp,
      type: "histogram" as const,
      aggregator: "sum" as const,
      get: async () => ({ ...header(histogram), values: this.series.flatMap((s) => this.histogramValues(s)) }),
      reset: () => {
        for (const s of this.series) {
          s.buckets.fill(0);
          s.sum = 0;
          s.count = 0;
        }
      },
    };
    // The cast: prom-client types registerMetric for its own classes only.
    registry.registerMetric(counter as unknown as Metric);
    registry.registerMetric(histogram as unknown as Metric);
  }

  private histogramValues(s: RequestSeries): Value[] {
    const labels = { method: s.method, route: s.route };
    const bucket = `${this.names.histogram}_bucket`;
    let cumulative = 0;
    const values: Value[] = this.bounds.map((le, i) => {
      cumulative += s.buckets[i]!;
      return { labels: { le, ...labels }, value: cumulative, metricName: bucket };
    });
    values.push(
      { labels: { le: "+Inf", ...labels }, value: s.count, metricName: bucket },
      { labels: { ...labels }, value: s.sum, metricName: `${this.names.histogram}_sum` },
      { labels: { ...labels }, value: s.count, metricName: `${this.names.histogram}_count` },
    );
    return values;
  }
}

const header = (m: { name: string; help: string; type: string; aggregator: string }) => ({
  name: m.name,
  help: m.help,
  type: m.type,
  aggregator: m.aggregator,
});
