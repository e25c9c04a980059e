// SPDX-License-Identifier: Apache-2.0
/**
 * A histogram whose owner keeps the bucket counts itself and that is read
 * only when /metrics is scraped. prom-client's Histogram takes one
 * observation at a time, hashing its labels each time: per proxied request
 * that was a large part of the agent's CPU (bench:l7-records). This
 * publishes what the owner counted in the exposition prom-client writes for
 * its own histograms (`le` first, cumulative buckets, +Inf, _sum, _count),
 * so a scraper sees no difference.
 */
import type { Histogram, Registry } from "prom-client";

/** One series as its owner counts it: `buckets[i]` observations in (bounds[i-1], bounds[i]], the last one above every bound. */
export interface BucketSeries {
  labels: Readonly<Record<string, string>>;
  buckets: ArrayLike<number>;
  sum: number;
  count: number;
}

interface Value {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

/** Index of the bucket `value` falls in: the first bound it does not exceed, or bounds.length above all. */
export function bucketOf(bounds: readonly number[], value: number): number {
  let i = 0;
  while (i < bounds.length && value > bounds[i]!) i++;
  return i;
}

/**
 * Registers a histogram `name` on `registry` that reads `series()` at each
 * scrape (series with no observation are left out, as prom-client leaves
 * out labels never observed).
 */
export function registerBucketHistogram(registry: Registry, o: { name: string; help: string; bounds: readonly number[]; series: () => Iterable<BucketSeries> }): void {
  const metric = {
    name: o.name,
    help: o.help,
    type: "histogram",
    aggregator: "sum",
    get: async () => ({ name: o.name, help: o.help, type: "histogram", aggregator: "sum", values: values(o.name, o.bounds, o.series()) }),
    reset: () => undefined,
  };
  // The registry reads name, help, type, aggregator and get(): all a metric needs to be scraped or merged.
  registry.registerMetric(metric as unknown as Histogram);
}

function values(name: string, bounds: readonly number[], series: Iterable<BucketSeries>): Value[] {
  const out: Value[] = [];
  const bucket = `${name}_bucket`;
  for (const s of series) {
    if (s.count === 0) continue;
    let acc = 0;
    for (const [i, le] of bounds.entries()) {
      acc += s.buckets[i]!;
      out.push({ labels: { le, ...s.labels }, value: acc, metricName: bucket });
    }
    out.push({ labels: { le: "+Inf", ...s.labels }, value: s.count, metricName: bucket });
    out.push({ labels: { ...s.labels }, value: s.sum, metricName: `${name}_sum` });
    out.push({ labels: { ...s.labels }, value: s.count, metricName: `${name}_count` });
  }
  return out;
}
