// SPDX-License-Identifier: Apache-2.0
/**
 * One interval's flows: counts and bytes per (source tenant and identity,
 * destination tenant and identity, destination port, protocol, verdict,
 * reason, rule), and the samples the interval ships. Both are bounded by
 * the upload contract's batch limits; what does not fit is counted as lost
 * (cause agent_buffer), never dropped in silence.
 */
import { flowEventSize } from "@weft/codec";
import type { FlowAggregate, FlowSample } from "../agent/client.ts";
import { isNotable, type CountedFlow } from "./flow.ts";

/** The contract's most aggregates and samples per batch. */
export const AGGREGATES_MAX = 5000;
export const SAMPLES_MAX = 2000;

/** An aggregate without its interval: what makes two flows the same row. */
export type AggregateRow = Omit<FlowAggregate, "start" | "end">;

export function aggregateKey(r: Omit<AggregateRow, "count" | "bytes">): string {
  return `${r.srcTenant}/${r.srcIdentity}>${r.dstTenant}/${r.dstIdentity}:${r.dstPort}/${r.protocol} ${r.verdict} ${r.reason} ${r.ruleId}`;
}

export function rowOf(s: Omit<FlowSample, "time">, bytes: number): AggregateRow {
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
  /**
   * The interval's sample records as the kernel wrote them, decoded only at
   * seal: drops and audits fill slots from the first up, allowed flows from
   * the last down, so a drop can take the newest allowed flow's slot. Bytes
   * rather than objects: an object kept for an interval outlives V8's young
   * generation, which then grows by MiB to hold thousands a second.
   */
  private readonly slots: Uint8Array;
  private notable = 0;
  private allowed = 0;
  private lost = 0;

  constructor(
    private startMs: number,
    /** Sample records back to back -> their samples (flow.ts samplesOf with the agent's clock). */
    private readonly decode: (records: Uint8Array) => FlowSample[],
    private readonly limits = { aggregates: AGGREGATES_MAX, samples: SAMPLES_MAX },
  ) {
    this.slots = new Uint8Array(limits.samples * flowEventSize);
  }

  /** One flow, and its record as the ring held it (flowEventSize bytes). */
  add(flow: CountedFlow, record: Uint8Array): void {
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
    const sampled = this.sample(record, isNotable(flow.sample));
    // A flow is lost once, whether it missed its row, its sample or both.
    if (!counted || !sampled) this.lost++;
  }

  /** Flows lost before they reached the agent's bounds (a source's own full buffer): counted as this interval's. */
  lose(n: number): void {
    if (n > 0) this.lost += n;
  }

  /** Whether the sample was kept. */
  private sample(record: Uint8Array, notable: boolean): boolean {
    const max = this.limits.samples;
    if (this.notable + this.allowed < max) {
      if (notable) this.slots.set(record, this.notable++ * flowEventSize);
      else this.slots.set(record, (max - ++this.allowed) * flowEventSize);
      return true;
    }
    if (!notable || this.allowed === 0) return false;
    // Full: a drop or audit takes the newest allowed flow's slot (the one next to the drops), whose flow is lost instead.
    this.allowed--;
    this.slots.set(record, this.notable++ * flowEventSize);
    this.lost++;
    return true;
  }

  /** The interval [start, endMs) as shipped; the next interval starts at endMs. */
  seal(endMs: number): SealedInterval {
    const start = new Date(this.startMs).toISOString();
    const end = new Date(Math.max(endMs, this.startMs)).toISOString();
    const aggregates = [...this.rows.values()].map((r) => ({ start, end, ...r }));
    const size = flowEventSize;
    const kept = new Uint8Array((this.notable + this.allowed) * size);
    kept.set(this.slots.subarray(0, this.notable * size), 0);
    kept.set(this.slots.subarray((this.limits.samples - this.allowed) * size), this.notable * size);
    const samples = this.decode(kept).sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    const sealed = { aggregates, samples, lost: this.lost };
    this.rows = new Map();
    this.notable = this.allowed = this.lost = 0;
    this.startMs = endMs;
    return sealed;
  }
}
