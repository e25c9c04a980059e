// SPDX-License-Identifier: Apache-2.0
/**
 * Carries out outlier.ts's decisions on the running HAProxy: an ejected
 * workload's servers go to `state maint` in every backend section holding
 * them, and back to `state ready` when its time is up. Commands run one at
 * a time, in the order decided. A worker that a reload or a restart just
 * started holds every server ready: the L7 driver calls reapply() then. A
 * command that fails (no worker serving at that moment) is logged; the
 * next reapply (after the reload or restart that caused it) repairs it.
 */
import type { Log } from "../agent/agent.ts";
import type { AccessRecord } from "./access-log.ts";
import type { L7Document } from "./document.ts";
import type { L7Metrics } from "./metrics.ts";
import { OutlierDetector, type OutlierAction } from "./outlier.ts";
import { setServerState } from "./runtime-api.ts";

/** The sweep runs this often at most (an interval shorter than this is swept this often). */
const MIN_SWEEP_MS = 50;
/** Without a frontend that ejects, the sweep still runs this often (a cheap loop over nothing). */
const IDLE_SWEEP_MS = 1_000;

export class OutlierDriver {
  readonly detector: OutlierDetector;
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private sweepMs = IDLE_SWEEP_MS;

  constructor(
    private readonly adminSocket: string,
    private readonly metrics: L7Metrics,
    private readonly log: Log,
    now: () => number = Date.now,
  ) {
    this.detector = new OutlierDetector(now);
  }

  /** The document the proxy serves now (after each apply and start). */
  follow(doc: L7Document): void {
    this.run(this.detector.follow(doc));
    const intervals = doc.frontends.flatMap((f) => (f.traffic?.outlier ? [f.traffic.outlier.intervalMs] : []));
    const every = intervals.length ? Math.max(MIN_SWEEP_MS, Math.min(...intervals)) : IDLE_SWEEP_MS;
    if (every !== this.sweepMs || !this.timer) this.schedule(every);
  }

  observe(r: AccessRecord): void {
    const actions = this.detector.observe(r);
    if (actions.length) this.run(actions);
  }

  /** Tells a new worker every ejection in force; resolves once sent. */
  reapply(): Promise<void> {
    return this.run(this.detector.ejected(), false);
  }

  /** Resolves once every command decided so far has run. */
  idle(): Promise<void> {
    return this.chain;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private schedule(every: number): void {
    this.stop();
    this.sweepMs = every;
    this.timer = setInterval(() => this.run(this.detector.sweep()), every);
    this.timer.unref();
  }

  private run(actions: OutlierAction[], fresh = true): Promise<void> {
    if (!actions.length) return this.chain;
    if (fresh) {
      for (const a of actions) {
        const service = this.detector.serviceOf(a.frontend);
        if (a.kind === "eject" && service) this.metrics.ejection(service);
        this.log(a.kind === "eject" ? "warn" : "info", a.kind === "eject" ? "ejected an outlier backend" : "brought an ejected backend back", { frontend: a.frontend, backend: a.host });
      }
    }
    this.chain = this.chain.then(async () => {
      for (const a of actions) {
        for (const s of a.servers) {
          try {
            await setServerState(this.adminSocket, s.backend, s.server, a.kind === "eject" ? "maint" : "ready");
          } catch (err) {
            this.log("warn", "failed to set an outlier's server state; the next reload or restart sets it again", { error: (err as Error).message });
          }
        }
      }
    });
    return this.chain;
  }
}
