// SPDX-License-Identifier: Apache-2.0
/**
 * The open /metrics reports event-loop stalls (api/src/plugins/event-loop.ts):
 * a histogram of how late a sampling timer ran, and the worst delay since the
 * previous scrape, which bench/scale reads per replica around a write's wave.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { startApi } from "../support/api.ts";

const STALL_MS = 300;

/** A sample's value from exposition text, or NaN when absent. */
const sample = (text: string, series: string): number => {
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return Number(new RegExp(`^${escaped} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
};

/** Holds the loop the way a long synchronous task (a compile, a GC) would. */
function holdTheLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("event-loop stalls on /metrics", () => {
  let app: WeftApp;
  const scrape = async () => {
    const res = await app.inject("/metrics");
    expect(res.statusCode).toBe(200);
    return res.body;
  };
  /** Samples of the histogram over 100 ms: cumulative, so the difference counts the stalls above it. */
  const over100ms = (text: string) => sample(text, "weft_event_loop_delay_seconds_count") - sample(text, 'weft_event_loop_delay_seconds_bucket{le="0.1"}');

  beforeAll(async () => {
    app = await startApi("pglite");
  });
  afterAll(() => app.close());

  it("shows a stall in the next scrape's worst delay and in the histogram", async () => {
    const before = await scrape();
    await tick(50);
    holdTheLoop(STALL_MS);
    // The sampling timer runs once the loop is free again, and records how late it is.
    await tick(50);
    const after = await scrape();
    const worst = sample(after, "weft_event_loop_delay_max_seconds");
    expect(worst).toBeGreaterThanOrEqual((STALL_MS * 0.9) / 1000);
    expect(worst).toBeLessThan(10);
    expect(over100ms(after) - over100ms(before)).toBeGreaterThanOrEqual(1);
    expect(sample(after, "weft_event_loop_delay_seconds_sum")).toBeGreaterThanOrEqual((STALL_MS * 0.9) / 1000);
  });

  it("starts a new window for the worst delay at each scrape, and keeps the histogram", async () => {
    await tick(50);
    holdTheLoop(STALL_MS);
    await tick(50);
    const stalled = await scrape();
    await tick(50);
    const next = await scrape();
    expect(sample(next, "weft_event_loop_delay_max_seconds")).toBeLessThan(sample(stalled, "weft_event_loop_delay_max_seconds"));
    expect(over100ms(next)).toBeGreaterThanOrEqual(over100ms(stalled));
  });
});
