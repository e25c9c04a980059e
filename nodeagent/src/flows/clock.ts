// SPDX-License-Identifier: Apache-2.0
/**
 * Kernel time to wall time. bpf_ktime_get_ns() reads CLOCK_MONOTONIC, and on
 * Linux Node's process.hrtime.bigint() is libuv's uv_hrtime(), which reads
 * clock_gettime(CLOCK_MONOTONIC) too (test/agent/flows-clock.test.ts checks
 * it against libc's clock_gettime through the FFI), so an event's time plus
 * the offset between that clock and Date.now() is its wall time. The offset
 * is measured again every minute: the wall clock may be stepped (NTP, an
 * operator), the monotonic one never is.
 */

export interface MonotonicClock {
  /** Milliseconds since the epoch of a CLOCK_MONOTONIC reading in ns. */
  wallMs(monotonicNs: bigint): number;
}

const REMEASURE_MS = 60_000;
const SAMPLES = 5;

export class SystemClock implements MonotonicClock {
  /** Date.now() (ms) minus CLOCK_MONOTONIC (ns), in ns. */
  private offsetNs = 0n;
  private measuredAt = -Infinity;

  constructor(
    private readonly monotonicNs: () => bigint = process.hrtime.bigint,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.measure();
  }

  /**
   * Date.now() bracketed by two monotonic readings, best of a few tries: the
   * narrowest bracket is the one least disturbed by a preemption between reads.
   */
  measure(): bigint {
    let best: { width: bigint; offset: bigint } | null = null;
    for (let i = 0; i < SAMPLES; i++) {
      const before = this.monotonicNs();
      const wall = this.nowMs();
      const after = this.monotonicNs();
      const width = after - before;
      // Date.now() has ms resolution: take it as the middle of its millisecond.
      const offset = BigInt(wall) * 1_000_000n + 500_000n - (before + width / 2n);
      if (!best || width < best.width) best = { width, offset };
    }
    this.offsetNs = best!.offset;
    this.measuredAt = this.nowMs();
    return this.offsetNs;
  }

  wallMs(monotonicNs: bigint): number {
    if (Math.abs(this.nowMs() - this.measuredAt) > REMEASURE_MS) this.measure();
    return Number((monotonicNs + this.offsetNs) / 1_000_000n);
  }
}
