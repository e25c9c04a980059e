// SPDX-License-Identifier: Apache-2.0
/**
 * One interval's flows: counts and bytes per (source tenant and identity,
 * destination tenant and identity, destination port, protocol, verdict,
 * reason, rule), and the samples the interval ships. Both are bounded by
 * the upload contract's batch limits; what does not fit is counted as lost
 * (cause agent_buffer), never dropped in silence.
 */
import type { FlowAggregate, FlowSample } from "../agent/client.ts";
import { isNotable, type Flow } from "./flow.ts";

/** The contract's most aggregates and samples per batch. */
export const AGGREGATES_MAX = 5000;
export const SAMPLES_MAX = 2000;

/** An aggregate without its interval: what makes two flows the same row. */
export type AggregateRow = Omit<FlowAggregate, "start" | "end">;

export function aggregateKey(r: Omit<AggregateRow, "count" | "bytes">): string {
  return `${r.srcTenant}/${r.srcIdentity}>${r.dstTenant}/${r.dstIdentity}:${r.dstPort}/${r.protocol} ${r.verdict} ${r.reason} ${r.ruleId}`;
}

export function rowOf(s: FlowSample, bytes: number): AggregateRow {
  return {
    srcIdentity: s.src.identity,
    srcTenant: s.src.tenant,
    dstIdentity: s.dst.identity,
    dstTenant: s.dst.tenant,
    dstPort: s.dst.port,
    protocol: s.protocol,
    verdict: s.verdict,
    reason: s.reason,
    ruleId: s.ruleId,
    count: 1,
    bytes,
  };
}

export interface SealedInterval {
  aggregates: FlowAggregate[];
  samples: FlowSample[];
  /** Flows this interval could not keep in full: without a sample, or (past the row bound) without an aggregate row. */
  lost: number;
}

export class IntervalAggregator {
  private rows = new Map<string, AggregateRow>();
  /** Drops and audits, kept before allowed samples. */
  private notable: FlowSample[] = [];
  private allowed: FlowSample[] = [];
  private lost = 0;

  constructor(
    private startMs: number,
    private readonly limits = { aggregates: AGGREGATES_MAX, samples: SAMPLES_MAX },
  ) {}

  add(flow: Flow): void {
    const row = rowOf(flow.sample, flow.bytes);
    const key = aggregateKey(row);
    const had = this.rows.get(key);
    let counted = true;
    if (had) {
      had.count++;
      had.bytes += flow.bytes;
    } else if (this.rows.size < this.limits.aggregates) {
      this.rows.set(key, row);
    } else {
      counted = false;
    }
    const sampled = this.sample(flow.sample);
    // A flow is lost once, whether it missed its row, its sample or both.
    if (!counted || !sampled) this.lost++;
  }

  /** Whether the sample was kept. */
  private sample(s: FlowSample): boolean {
    if (this.notable.length + this.allowed.length < this.limits.samples) {
      (isNotable(s) ? this.notable : this.allowed).push(s);
      return true;
    }
    if (!isNotable(s) || this.allowed.length === 0) return false;
    // Full: a drop or audit takes the place of the newest allowed sample, whose flow is lost instead.
    this.allowed.pop();
    this.notable.push(s);
    this.lost++;
    return true;
  }

  /** Whether anything was added since the last seal. */
  get empty(): boolean {
    return this.rows.size === 0 && this.lost === 0;
  }

  /** The interval [start, endMs) as shipped; the next interval starts at endMs. */
  seal(endMs: number): SealedInterval {
    const start = new Date(this.startMs).toISOString();
    const end = new Date(Math.max(endMs, this.startMs)).toISOString();
    const aggregates = [...this.rows.values()].map((r) => ({ start, end, ...r }));
    const samples = [...this.notable, ...this.allowed].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    const sealed = { aggregates, samples, lost: this.lost };
    this.rows = new Map();
    this.notable = [];
    this.allowed = [];
    this.lost = 0;
    this.startMs = endMs;
    return sealed;
  }
}
