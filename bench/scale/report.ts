/** bench/scale's figures: quantiles, units, and the goals table with met / not met and the ratio to each goal. */
import { loadavg } from "node:os";

export const quantile = (sorted: number[], q: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);

export interface Spread {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  return { n: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN };
}

export const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(v < 10 ? 1 : 0) : "-");
export const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
export const kib = (bytes: number) => (bytes / 1024).toFixed(1);
export const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

export interface Goal {
  what: string;
  measured: string;
  goal: string;
  /** measured / goal, where the goal is a bound ("-" when it is a yes/no). */
  ratio: number | null;
  met: boolean;
}

export class Goals {
  readonly rows: Goal[] = [];

  /** A bound from above: met when value ≤ limit (or < limit when strict). */
  atMost(what: string, value: number, limit: number, unit: string, opts: { strict?: boolean; measured?: string } = {}): void {
    const met = Number.isFinite(value) && (opts.strict ? value < limit : value <= limit);
    this.rows.push({ what, measured: opts.measured ?? `${fmt(value)} ${unit}`, goal: `${opts.strict ? "<" : "≤"} ${fmt(limit)} ${unit}`, ratio: limit > 0 ? value / limit : null, met });
  }

  check(what: string, met: boolean, measured: string, goal: string): void {
    this.rows.push({ what, measured, goal, ratio: null, met });
  }

  table(): (string | number)[][] {
    return [
      ["goal", "measured", "target", "ratio", "met"],
      ...this.rows.map((g) => [g.what, g.measured, g.goal, g.ratio === null || !Number.isFinite(g.ratio) ? "-" : `${g.ratio.toFixed(2)}x`, g.met ? "met" : "NOT MET"]),
    ];
  }
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
