// SPDX-License-Identifier: Apache-2.0
/**
 * Sends spans to an OTLP/HTTP receiver (POST <endpoint>/v1/traces,
 * application/x-protobuf) in batches, off the path that makes them:
 * `add` only queues. The queue is bounded: a span that finds it full is
 * dropped and counted, never waited for. A batch goes out every flushMs, or
 * as soon as batchMax spans wait; one export at a time. An export that fails
 * in a way the OTLP specification calls retryable (no answer, 429, 502, 503,
 * 504) is tried again with backoff, at most maxAttempts times; any other
 * refusal drops the batch (sending it again would be refused again).
 */
import { encodeExportRequest, type SpanSource } from "./encode.ts";
import type { Span } from "./span.ts";

export type DropReason = "queue-full" | "refused" | "retries-exhausted" | "closed";

export interface SpanExporterOptions {
  /** The receiver: a base URL (/v1/traces is appended) or the full URL of its /v1/traces. */
  endpoint: string;
  source: SpanSource;
  queueMax?: number;
  batchMax?: number;
  flushMs?: number;
  maxAttempts?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** Each export's bound. */
  timeoutMs?: number;
  /** close()'s bound: a receiver that is down does not hold up a shutdown; what is left then is dropped. */
  closeMs?: number;
  exported?: (spans: number) => void;
  dropped?: (spans: number, reason: DropReason) => void;
  /** An export that failed (it may be tried again). */
  failed?: (error: string) => void;
}

const RETRYABLE = new Set([429, 502, 503, 504]);

/** The URL spans are posted to. */
export function tracesUrl(endpoint: string): URL {
  const url = new URL(endpoint);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`${endpoint} is not an http or https URL`);
  // It is logged and shown in status: a secret has no place in it.
  if (url.username || url.password) throw new Error(`${url.host}: credentials in the URL are not taken`);
  if (!url.pathname.endsWith("/v1/traces")) url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`;
  return url;
}

export class SpanExporter {
  private readonly url: URL;
  private queue: Span[] = [];
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;
  private closed = false;
  /** Aborted closeMs after close(): ends the export under way and the backoff. */
  private readonly stopping = new AbortController();
  /** Ends the backoff sleep under way, if any. */
  private wake: (() => void) | null = null;
  private readonly o: Required<Omit<SpanExporterOptions, "exported" | "dropped" | "failed">> & Pick<SpanExporterOptions, "exported" | "dropped" | "failed">;

  constructor(options: SpanExporterOptions) {
    this.o = { queueMax: 4_096, batchMax: 512, flushMs: 1_000, maxAttempts: 5, backoff: { initialMs: 500, maxMs: 30_000 }, timeoutMs: 10_000, closeMs: 5_000, ...options };
    this.url = tracesUrl(options.endpoint);
    this.timer = setInterval(() => this.flush(), this.o.flushMs);
    this.timer.unref();
  }

  /** Queues one span; never waits. */
  add(span: Span): void {
    if (this.closed || this.queue.length >= this.o.queueMax) {
      this.o.dropped?.(1, this.closed ? "closed" : "queue-full");
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.o.batchMax) this.flush();
  }

  /** Starts sending what waits, unless an export is under way (it takes the rest when it ends). */
  flush(): void {
    if (this.sending || this.queue.length === 0) return;
    this.sending = this.drain().finally(() => (this.sending = null));
  }

  /** Stops taking spans and sends what waits, one attempt each, within closeMs. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const deadline = setTimeout(() => this.stopping.abort(), this.o.closeMs);
    deadline.unref();
    // A batch waiting out its backoff is tried once more now, not after the wait.
    this.wake?.();
    await this.sending;
    if (this.queue.length) await this.drain(1);
    clearTimeout(deadline);
    if (this.queue.length) this.o.dropped?.(this.queue.splice(0).length, "closed");
  }

  private async drain(maxAttempts = this.o.maxAttempts): Promise<void> {
    while (this.queue.length && !this.stopping.signal.aborted) {
      const batch = this.queue.splice(0, this.o.batchMax);
      await this.send(batch, maxAttempts);
      if (this.queue.length < this.o.batchMax && !this.closed) return;
    }
  }

  private async send(batch: Span[], maxAttempts: number): Promise<void> {
    const body = encodeExportRequest(this.o.source, batch);
    let delay = this.o.backoff.initialMs;
    for (let attempt = 1; ; attempt++) {
      const result = await this.post(body);
      if (result === "ok") return this.o.exported?.(batch.length);
      this.o.failed?.(result.error);
      if (!result.retryable) return this.o.dropped?.(batch.length, "refused");
      if (attempt >= maxAttempts || this.closed) return this.o.dropped?.(batch.length, "retries-exhausted");
      await this.sleep(delay * (0.5 + Math.random() / 2));
      delay = Math.min(delay * 2, this.o.backoff.maxMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake?.(), ms);
      timer.unref();
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  private async post(body: Uint8Array): Promise<"ok" | { error: string; retryable: boolean }> {
    try {
      const res = await fetch(this.url, { method: "POST", headers: { "content-type": "application/x-protobuf" }, body, signal: AbortSignal.any([AbortSignal.timeout(this.o.timeoutMs), this.stopping.signal]) });
      // Nothing in the answer is used, and a receiver's body is not read into memory.
      await res.body?.cancel().catch(() => undefined);
      if (res.ok) return "ok";
      return { error: `the OTLP receiver ${this.url.origin} answered ${res.status}`, retryable: RETRYABLE.has(res.status) };
    } catch (err) {
      // fetch says only "fetch failed"; why is in its cause (ECONNREFUSED, a timeout).
      const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      return { error: `failed to reach the OTLP receiver ${this.url.origin}: ${why}`, retryable: true };
    }
  }
}
