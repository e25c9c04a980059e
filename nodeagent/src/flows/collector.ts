// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's flow loop: every DRAIN_MS it drains the kernel's ring (at
 * most DRAIN_BYTES; the rest waits for the next tick), decodes the events
 * with the codec, and hands each one to the last-N buffer, the interval's
 * aggregates and the Prometheus counters; every interval it reads the
 * kernel's loss counters and seals the interval into a batch for the
 * uploader. Timers only, and every failure caught and logged: flows never
 * hold up or break the datapath loop.
 */
import { decodeFlowEvents, encodeFlowEvents, flowEventSize, type FlowEvent, type FlowStats, type Hook, type Reason } from "@weft/codec";
import type { FlowSample } from "../agent/client.ts";
import type { Log } from "../agent/agent.ts";
import { IntervalAggregator } from "./aggregate.ts";
import { RecordRing } from "./buffer.ts";
import type { MonotonicClock } from "./clock.ts";
import { countedFlowOf, samplesOf, type FlowVerdict } from "./flow.ts";
import type { FlowMetrics } from "./metrics.ts";
import type { FlowUploader } from "./uploader.ts";

export const DRAIN_MS = 100;
/** 256 KiB a tick: about 3,300 events, 33,000 a second, far above the default rate limit of 1,000 a second per CPU. */
export const DRAIN_BYTES = 256 * 1024;

/** The kernel side: the ring's records, and the loss counters summed over CPUs. */
export interface FlowSource {
  drain(maxBytes: number): Uint8Array[];
  stats(): Pick<FlowStats, "rateLimited" | "ringFull">;
}

export interface CollectorOptions {
  source: FlowSource;
  clock: MonotonicClock;
  metrics: FlowMetrics;
  uploader: FlowUploader;
  /** The last N flows kept. */
  buffer: number;
  intervalMs: number;
  log: Log;
  now?: () => number;
}

export class FlowCollector {
  private readonly ring: RecordRing;
  private readonly aggregator: IntervalAggregator;
  private readonly now: () => number;
  /** The kernel's loss counters at the last read: reported as increases. */
  private lastStats: { rateLimited: bigint; ringFull: bigint };
  private drainTimer: ReturnType<typeof setInterval> | null = null;
  private sealTimer: ReturnType<typeof setInterval> | null = null;
  /** The last drain or stats read failure, logged once until it changes. */
  private lastError = "";

  constructor(private readonly o: CollectorOptions) {
    this.ring = new RecordRing(o.buffer, flowEventSize);
    this.now = o.now ?? Date.now;
    this.aggregator = new IntervalAggregator(this.now(), (records) => samplesOf(records, o.clock));
    // Losses before this agent started are not this agent's to report: the stats map outlives agents.
    this.lastStats = this.readStats() ?? { rateLimited: 0n, ringFull: 0n };
  }

  start(): void {
    this.drainTimer ??= setInterval(() => this.drainOnce(), DRAIN_MS);
    this.sealTimer ??= setInterval(() => this.seal(), this.o.intervalMs);
  }

  stop(): void {
    if (this.drainTimer) clearInterval(this.drainTimer);
    if (this.sealTimer) clearInterval(this.sealTimer);
    this.drainTimer = this.sealTimer = null;
  }

  /** The newest `limit` flows, oldest first (decoded now: the buffer keeps the kernel's bytes). */
  last(limit?: number): FlowSample[] {
    return samplesOf(this.ring.last(limit), this.o.clock);
  }

  /** One drain of the ring; answers how many events it handled. */
  drainOnce(): number {
    try {
      const records = this.o.source.drain(DRAIN_BYTES);
      if (records.length === 0) return 0;
      return this.handle(records.length === 1 ? records[0]! : concat(records));
    } catch (err) {
      this.failed(`failed to drain flow events: ${(err as Error).message}`);
      return 0;
    }
  }

  /**
   * Takes events as the ring holds them, back to back (the drain's, or a
   * test's); answers how many. `decoded`: the same events as objects, when
   * the caller made the records from them (handleEvents), so they are not
   * decoded again.
   */
  handle(records: Uint8Array, decoded?: readonly FlowEvent[]): number {
    const events = decoded ?? decodeFlowEvents(records);
    this.ring.push(records);
    // The counters are told once per batch and kind: prom-client hashes the labels on each inc.
    const kinds = new Map<string, { verdict: FlowVerdict; reason: Reason; hook: Hook; n: number }>();
    for (const [i, event] of events.entries()) {
      const flow = countedFlowOf(event);
      this.aggregator.add(flow, records.subarray(i * flowEventSize, (i + 1) * flowEventSize));
      const key = `${flow.verdict} ${event.reason} ${event.hook}`;
      const kind = kinds.get(key);
      if (kind) kind.n++;
      else kinds.set(key, { verdict: flow.verdict, reason: event.reason, hook: event.hook, n: 1 });
    }
    for (const k of kinds.values()) this.o.metrics.flow(k.verdict, k.reason, k.hook, k.n);
    this.o.metrics.bufferedFlows(this.ring.size);
    return events.length;
  }

  /**
   * Events the agent made itself (the transport's stream outcomes), handled
   * as if drained from the ring; `lost`: events their source dropped before
   * the agent saw them, counted with the agent's own losses.
   */
  handleEvents(events: readonly FlowEvent[], lost = 0): number {
    this.aggregator.lose(lost);
    return events.length === 0 ? 0 : this.handle(encodeFlowEvents(events), events);
  }

  /** Closes the interval: the kernel's new losses read, everything handed to the uploader. */
  seal(): void {
    // What the ring holds now belongs to this interval.
    this.drainOnce();
    let lostKernel = 0;
    const stats = this.readStats();
    if (stats) {
      const rateLimited = increase(this.lastStats.rateLimited, stats.rateLimited);
      const ringFull = increase(this.lastStats.ringFull, stats.ringFull);
      this.lastStats = stats;
      this.o.metrics.lost("rate_limited", rateLimited);
      this.o.metrics.lost("ring_full", ringFull);
      lostKernel = rateLimited + ringFull;
    }
    const sealed = this.aggregator.seal(this.now());
    this.o.metrics.lost("agent_buffer", sealed.lost);
    this.o.uploader.enqueue(sealed, lostKernel);
  }

  private readStats(): { rateLimited: bigint; ringFull: bigint } | null {
    try {
      const s = this.o.source.stats();
      return { rateLimited: s.rateLimited, ringFull: s.ringFull };
    } catch (err) {
      this.failed(`failed to read the flow loss counters: ${(err as Error).message}`);
      return null;
    }
  }

  private failed(message: string): void {
    if (message !== this.lastError) this.o.log("error", message);
    this.lastError = message;
  }
}

/** A counter's increase; a counter that went back (its map made anew) counts from zero. */
function increase(before: bigint, now: bigint): number {
  return Number(now >= before ? now - before : now);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
