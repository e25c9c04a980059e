// SPDX-License-Identifier: Apache-2.0
/**
 * Bounded exponential backoff with jitter, for an API that is down or
 * failing: many agents restarting together must not hammer it in step, and
 * no agent waits longer than `maxMs` to notice it is back.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
  /** [0, 1); injectable so tests can pin the jitter. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  readonly initialMs: number;
  readonly maxMs: number;
  private readonly factor: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 15_000;
    this.factor = options.factor ?? 2;
    this.random = options.random ?? Math.random;
    if (!(this.initialMs > 0 && this.maxMs >= this.initialMs && this.factor >= 1)) {
      throw new Error(`failed to configure backoff: need 0 < initialMs <= maxMs and factor >= 1`);
    }
  }

  /**
   * The next delay: the ceiling doubles per failure up to maxMs; the delay is
   * drawn from [ceiling/2, ceiling) ("equal jitter"), so it spreads agents out
   * yet still grows, and always lies within [initialMs/2, maxMs).
   */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    if (ceiling < this.maxMs) this.attempt++;
    return ceiling / 2 + this.random() * (ceiling / 2);
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}

/** Resolves after ms, or early (without throwing) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
