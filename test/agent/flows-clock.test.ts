/**
 * Kernel event time to wall time. bpf_ktime_get_ns() is CLOCK_MONOTONIC;
 * the agent converts with process.hrtime.bigint(), which this test checks
 * is that same clock on this platform by reading libc's
 * clock_gettime(CLOCK_MONOTONIC) through the FFI between two hrtime reads.
 */
import koffi from "koffi";
import { describe, expect, it } from "vitest";
import { SystemClock } from "../../nodeagent/src/flows/clock.ts";

const CLOCK_MONOTONIC = 1;

describe.runIf(process.platform === "linux")("the monotonic clock", () => {
  it("process.hrtime.bigint() reads clock_gettime(CLOCK_MONOTONIC)", () => {
    const libc = koffi.load("libc.so.6");
    const timespec = koffi.struct("weft_test_timespec", { tv_sec: "int64_t", tv_nsec: "long" });
    const clockGettime = libc.func("int clock_gettime(int clk, _Out_ weft_test_timespec *ts)");
    for (let i = 0; i < 100; i++) {
      const ts = { tv_sec: 0, tv_nsec: 0 };
      const before = process.hrtime.bigint();
      expect(clockGettime(CLOCK_MONOTONIC, ts)).toBe(0);
      const after = process.hrtime.bigint();
      const mono = BigInt(ts.tv_sec) * 1_000_000_000n + BigInt(ts.tv_nsec);
      expect(mono >= before && mono <= after, `${before} <= ${mono} <= ${after}`).toBe(true);
    }
  });

  it("converts a monotonic reading to Date.now() within a millisecond or two", () => {
    const clock = new SystemClock();
    for (let i = 0; i < 20; i++) {
      const wall = clock.wallMs(process.hrtime.bigint());
      expect(Math.abs(wall - Date.now())).toBeLessThanOrEqual(2);
    }
  });
});

describe("offset", () => {
  it("is measured again after a minute, so a stepped wall clock is followed", () => {
    let mono = 5_000_000_000n;
    const t0 = Date.UTC(2026, 11, 6, 12);
    let wall = t0;
    const clock = new SystemClock(() => mono, () => wall);
    expect(clock.wallMs(5_000_000_000n)).toBe(t0);
    expect(clock.wallMs(6_000_000_000n)).toBe(t0 + 1000);
    // The wall clock steps back an hour while the monotonic one moves on by a second.
    mono += 1_000_000_000n;
    wall += 1000 - 3_600_000;
    expect(clock.wallMs(6_000_000_000n)).toBe(t0 + 1000 - 3_600_000);
  });
});
