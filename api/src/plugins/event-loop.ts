import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Gauge, Histogram } from "prom-client";

/** How often the loop is sampled: a stall shorter than this may go unseen, one longer never does. */
export const EVENT_LOOP_SAMPLE_MS = 10;
export const EVENT_LOOP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/**
 * Event-loop stalls on the open /metrics: how late a timer that should fire
 * every EVENT_LOOP_SAMPLE_MS fires, as a histogram (weft_event_loop_delay_seconds,
 * safe with any number of scrapers) and the worst delay since the previous
 * scrape (weft_event_loop_delay_max_seconds, read by bench/scale before and
 * after a write's wave).
 *
 * prom-client's own weft_nodejs_eventloop_lag_max_seconds comes from
 * perf_hooks.monitorEventLoopDelay, which on Node 20, 22 and 24 reports 10 – 65 ms
 * for a loop held 300 ms (measured 2026-12-06): it misses exactly the stalls
 * that matter. A late timer does not (test/api/event-loop-metrics.test.ts
 * holds the loop and reads these).
 */
export const eventLoopPlugin = fp(
  async (app: FastifyInstance) => {
    let worst = 0;
    const delays = new Histogram({
      name: "weft_event_loop_delay_seconds",
      help: `How late the event loop ran a timer due every ${EVENT_LOOP_SAMPLE_MS} ms`,
      buckets: [...EVENT_LOOP_BUCKETS],
      registers: [app.metrics],
    });
    new Gauge({
      name: "weft_event_loop_delay_max_seconds",
      help: "The worst event-loop delay since the previous scrape of this endpoint",
      registers: [app.metrics],
      collect() {
        this.set(worst);
        worst = 0;
      },
    });
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      const delay = Math.max(0, now - last - EVENT_LOOP_SAMPLE_MS) / 1000;
      last = now;
      delays.observe(delay);
      if (delay > worst) worst = delay;
    }, EVENT_LOOP_SAMPLE_MS);
    // A sampler must not keep a closing process alive.
    timer.unref();
    app.addHook("onClose", async () => clearInterval(timer));
  },
  { name: "weft-event-loop", dependencies: ["weft-metrics"] },
);
