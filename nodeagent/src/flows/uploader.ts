// SPDX-License-Identifier: Apache-2.0
/**
 * Ships sealed intervals to the API, one batch in flight. A batch that
 * failed (API down, 5xx, 429, timeout) is sent again after the agent's
 * jittered backoff with the same batchId, so the API stores it once however
 * many tries reach it. Meanwhile new intervals queue up, at most maxPending
 * batches: when full, the two oldest not yet sent are merged (aggregates
 * summed per row, the oldest samples dropped first), so memory is bounded
 * and counts survive an outage of any length. A 404 is an API without the
 * flows route: uploads pause for five minutes (one log line, not one an
 * interval), what comes meanwhile counted lost. Any other 4xx but 408 and
 * 429 means the agent built a batch the API cannot take (a bug): it is
 * logged and dropped, and its events counted lost. Nothing here waits on the
 * datapath: the loop that drains the ring only ever calls enqueue().
 */
import { randomUUID } from "node:crypto";
import type { Log } from "../agent/agent.ts";
import { Backoff, sleep, type BackoffOptions } from "../agent/backoff.ts";
import { ApiError, type FlowAggregate, type FlowBatch } from "../agent/client.ts";
import { AGGREGATES_MAX, aggregateKey, SAMPLES_MAX, type SealedInterval } from "./aggregate.ts";
import type { FlowMetrics } from "./metrics.ts";

/** Sends one batch; resolves "accepted" or "duplicate", throws (ApiError) otherwise. */
export type SendBatch = (batch: FlowBatch, signal: AbortSignal) => Promise<"accepted" | "duplicate">;

export interface UploaderOptions {
  send: SendBatch;
  metrics: FlowMetrics;
  log: Log;
  backoff?: BackoffOptions;
  /** Batches kept while the API fails (>= 3: the one in flight and two to merge). */
  maxPending?: number;
  /** Longest wait a Retry-After may ask for. */
  maxRetryAfterMs?: number;
  /** How long uploads pause after a 404 (an API without the flows route). */
  pauseMs?: number;
  now?: () => number;
}

export const DEFAULT_MAX_PENDING = 8;
export const DEFAULT_PAUSE_MS = 5 * 60_000;

interface Pending {
  body: FlowBatch;
  /** Sent at least once: its batchId and content are fixed from then on. */
  sent: boolean;
}

/** Events a batch describes: each counted flow sits in exactly one aggregate row. */
const eventsIn = (b: FlowBatch): number => b.aggregates.reduce((n, a) => n + a.count, 0);

export class FlowUploader {
  private readonly pending: Pending[] = [];
  private readonly backoff: Backoff;
  private readonly maxPending: number;
  private readonly abort = new AbortController();
  /** Losses not yet carried by any batch (a rejected batch's events): told to the API with the next one. */
  private carriedAgent = 0;
  private carriedKernel = 0;
  /** No uploads before this time (ms): the API answered 404, it has no flows route. */
  private pausedUntil = 0;
  private readonly pauseMs: number;
  private readonly now: () => number;
  private pumping: Promise<void> | null = null;
  private failing = false;

  constructor(private readonly o: UploaderOptions) {
    this.backoff = new Backoff(o.backoff);
    this.maxPending = o.maxPending ?? DEFAULT_MAX_PENDING;
    this.pauseMs = o.pauseMs ?? DEFAULT_PAUSE_MS;
    this.now = o.now ?? Date.now;
    if (!Number.isInteger(this.maxPending) || this.maxPending < 3) throw new Error(`failed to configure the flow uploader: maxPending ${this.maxPending} is not an integer >= 3`);
  }

  /** Batches waiting, the one in flight included. */
  get queued(): readonly FlowBatch[] {
    return this.pending.map((p) => p.body);
  }

  /** Queues one interval (nothing when it holds nothing to say) and starts sending if idle. */
  enqueue(interval: SealedInterval, lostKernel: number): void {
    if (this.abort.signal.aborted) return;
    if (this.now() < this.pausedUntil) {
      // Counted, and told to the API in the first batch after the pause.
      const events = interval.aggregates.reduce((n, a) => n + a.count, 0);
      this.o.metrics.lost("upload", events);
      this.carriedAgent += events + interval.lost;
      this.carriedKernel += lostKernel;
      return;
    }
    const lost = { kernel: lostKernel + this.carriedKernel, agent: interval.lost + this.carriedAgent };
    this.carriedKernel = 0;
    if (interval.aggregates.length === 0 && interval.samples.length === 0 && lost.kernel === 0 && lost.agent === 0) return;
    this.carriedAgent = 0;
    if (this.pending.length >= this.maxPending) this.mergeOldestUnsent();
    this.pending.push({ body: { batchId: randomUUID(), lost, aggregates: interval.aggregates, flows: interval.samples }, sent: false });
    this.o.metrics.pendingBatches(this.pending.length);
    this.pumping ??= this.pump().finally(() => (this.pumping = null));
  }

  /**
   * Stops sending, after at most graceMs more of it (a clean stop sends
   * what it holds while the API answers); what is still queued then is lost
   * with the process.
   */
  async close(graceMs = 0): Promise<void> {
    if (graceMs > 0 && this.pumping) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    this.abort.abort();
    await this.pumping;
  }

  /** Resolves once nothing is queued or in flight (tests, and a clean stop that wants to flush). */
  async idle(): Promise<void> {
    while (this.pumping) await this.pumping;
  }

  private mergeOldestUnsent(): void {
    const first = this.pending.findIndex((p) => !p.sent);
    const older = this.pending[first]!;
    const newer = this.pending[first + 1]!;
    const { batch, dropped } = mergeBatches(older.body, newer.body);
    this.o.metrics.lost("agent_buffer", dropped);
    this.pending.splice(first, 2, { body: batch, sent: false });
  }

  private async pump(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted && this.pending.length > 0) {
      const head = this.pending[0]!;
      head.sent = true;
      try {
        const result = await this.o.send(head.body, signal);
        this.o.metrics.batch(result);
        this.pending.shift();
        this.backoff.reset();
        if (this.failing) this.o.log("info", "flow uploads work again", { pending: this.pending.length });
        this.failing = false;
      } catch (err) {
        if (signal.aborted) break;
        const status = err instanceof ApiError ? err.status : 0;
        if (status === 404) {
          // An API without the flows route (older than this agent): pause instead of refusing every interval.
          const events = eventsIn(head.body);
          this.o.metrics.batch("rejected");
          this.o.metrics.lost("upload", events);
          this.carriedAgent += events;
          this.pending.shift();
          this.pausedUntil = this.now() + this.pauseMs;
          this.o.log("warn", "the API does not take flows (404); not uploading for a while, GET /flows on the node still has them", { retryInMs: this.pauseMs, error: (err as Error).message });
        } else if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
          // The API says the batch itself is wrong: sending it again cannot help.
          const events = eventsIn(head.body);
          this.o.metrics.batch("rejected");
          this.o.metrics.lost("upload", events);
          this.carriedAgent += events;
          this.pending.shift();
          this.o.log("error", "the API refused a flow batch; dropped (a bug in the agent)", { batchId: head.body.batchId, status, events, error: (err as Error).message });
        } else {
          this.o.metrics.batch("failed");
          const retryAfter = err instanceof ApiError && err.retryAfterMs !== null ? Math.min(err.retryAfterMs, this.o.maxRetryAfterMs ?? 60_000) : 0;
          const delay = Math.max(this.backoff.next(), retryAfter);
          if (!this.failing) this.o.log("warn", "failed to upload flows; retrying the same batch", { batchId: head.body.batchId, status, error: (err as Error).message, retryInMs: Math.round(delay) });
          this.failing = true;
          await sleep(delay, signal);
        }
      }
      this.o.metrics.pendingBatches(this.pending.length);
    }
  }
}

/**
 * Two queued batches as one (`older` first): aggregates summed per row over
 * both intervals, at most AGGREGATES_MAX rows (the largest kept); samples
 * the newest SAMPLES_MAX. `dropped` counts the events and samples left out,
 * which the merged batch's lost.agent carries too.
 */
export function mergeBatches(older: FlowBatch, newer: FlowBatch): { batch: FlowBatch; dropped: number } {
  const rows = new Map<string, FlowAggregate>();
  for (const a of [...older.aggregates, ...newer.aggregates]) {
    const key = aggregateKey(a);
    const had = rows.get(key);
    if (!had) rows.set(key, { ...a });
    else {
      had.count += a.count;
      had.bytes += a.bytes;
      if (a.start < had.start) had.start = a.start;
      if (a.end > had.end) had.end = a.end;
    }
  }
  let aggregates = [...rows.values()];
  let dropped = 0;
  if (aggregates.length > AGGREGATES_MAX) {
    aggregates.sort((a, b) => b.count - a.count);
    for (const a of aggregates.slice(AGGREGATES_MAX)) dropped += a.count;
    aggregates = aggregates.slice(0, AGGREGATES_MAX);
  }
  const samples = [...older.flows, ...newer.flows];
  const cut = Math.max(0, samples.length - SAMPLES_MAX);
  dropped += cut;
  return {
    batch: {
      // Neither was sent, so neither id is known to the API: the merged batch is a new one.
      batchId: randomUUID(),
      lost: { kernel: older.lost.kernel + newer.lost.kernel, agent: older.lost.agent + newer.lost.agent + dropped },
      aggregates,
      flows: samples.slice(cut),
    },
    dropped,
  };
}
