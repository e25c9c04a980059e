// SPDX-License-Identifier: Apache-2.0
/**
 * Health probes of the node's workloads (issue #15): for each local workload
 * whose NodeWorkload carries a `healthCheck`, a TCP connect or an HTTP GET to
 * its first address from the agent's own network namespace, and a state per
 * workload that the status report carries (`health`) and the API turns into
 * withdrawn or restored backends.
 *
 * State machine (pure, `nextHealth`): "unknown" at first; `healthyThreshold`
 * consecutive successes make it "healthy", `unhealthyThreshold` consecutive
 * failures "unhealthy" (from unknown, whichever is met first). A changed
 * check or address starts the counts again but keeps the state: a new probe
 * has proved nothing yet, and dropping to unknown would restore a withdrawn
 * backend before anything says it serves.
 *
 * Bounded: one probe in flight per workload (the next is scheduled when it
 * ends), each with its timeout, at the check's interval with ±10 % jitter so
 * probes of a node's workloads do not march in step; workloads that left
 * the listing stop being probed at once.
 */
import { request } from "node:http";
import { connect } from "node:net";
import type { NodeWorkload } from "./client.ts";

export type HealthCheck = NonNullable<NodeWorkload["healthCheck"]>;
export type HealthState = "unknown" | "healthy" | "unhealthy";

/** One workload's state and the run of results that leads to the next. */
export interface HealthRecord {
  state: HealthState;
  /** When the state was entered (ms since the epoch); null while unknown. */
  since: number | null;
  successes: number;
  failures: number;
}

export const UNKNOWN: HealthRecord = { state: "unknown", since: null, successes: 0, failures: 0 };

/** The record after one probe's result at `now`. */
export function nextHealth(h: HealthRecord, ok: boolean, check: Pick<HealthCheck, "healthyThreshold" | "unhealthyThreshold">, now: number): HealthRecord {
  const successes = ok ? h.successes + 1 : 0;
  const failures = ok ? 0 : h.failures + 1;
  if (ok && h.state !== "healthy" && successes >= check.healthyThreshold) return { state: "healthy", since: now, successes, failures };
  if (!ok && h.state !== "unhealthy" && failures >= check.unhealthyThreshold) return { state: "unhealthy", since: now, successes, failures };
  return { ...h, successes, failures };
}

const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/**
 * Why the agent cannot use this check, or null. The API validates what it
 * stores; this keeps a wrong answer from turning into a probe storm or a
 * request the HTTP client would throw on.
 */
export function healthCheckProblem(check: unknown): string | null {
  if (check === null || typeof check !== "object") return "not an object";
  const c = check as Record<string, unknown>;
  if (c.protocol !== "tcp" && c.protocol !== "http") return `protocol ${JSON.stringify(c.protocol)} is not tcp or http`;
  if (!isInt(c.port, 1, 65535)) return `port ${JSON.stringify(c.port)} is not 1..65535`;
  if (!isInt(c.intervalSeconds, 1, 300)) return `intervalSeconds ${JSON.stringify(c.intervalSeconds)} is not 1..300`;
  if (!isInt(c.timeoutSeconds, 1, 60) || c.timeoutSeconds > c.intervalSeconds) return `timeoutSeconds ${JSON.stringify(c.timeoutSeconds)} is not 1..60 and at most intervalSeconds`;
  if (!isInt(c.healthyThreshold, 1, 10)) return `healthyThreshold ${JSON.stringify(c.healthyThreshold)} is not 1..10`;
  if (!isInt(c.unhealthyThreshold, 1, 10)) return `unhealthyThreshold ${JSON.stringify(c.unhealthyThreshold)} is not 1..10`;
  if (c.protocol === "http") {
    // Printable ASCII without spaces: anything else would be refused by the HTTP client or split the request line.
    if (typeof c.path !== "string" || !/^\/[\x21-\x7e]*$/.test(c.path) || c.path.length > 1024) return `path ${JSON.stringify(c.path)} is not an absolute path`;
    if (!isInt(c.expectStatus, 100, 599)) return `expectStatus ${JSON.stringify(c.expectStatus)} is not 100..599`;
  }
  return null;
}

export type ProbeResult = { ok: true } | { ok: false; reason: string };

/**
 * One probe of `address` within `timeoutMs`: tcp, a connect that completes;
 * http, `GET path` over HTTP/1.1 (Host: address, a fresh connection) whose
 * status is `expectStatus`. Never throws.
 */
export function probe(address: string, check: HealthCheck, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let release = (): void => undefined;
    let settled = false;
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      release();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
    const failed = (err: Error & { code?: string }): void => done({ ok: false, reason: err.code ?? err.message });
    try {
      if (check.protocol === "tcp") {
        const socket = connect({ host: address, port: check.port });
        release = () => socket.destroy();
        socket.once("connect", () => done({ ok: true }));
        socket.once("error", failed);
        return;
      }
      const req = request({ host: address, port: check.port, method: "GET", path: check.path ?? "/", headers: { host: address }, agent: false });
      release = () => req.destroy();
      req.once("response", (res) => {
        res.resume();
        const expected = check.expectStatus ?? 200;
        done(res.statusCode === expected ? { ok: true } : { ok: false, reason: `status ${res.statusCode}, expected ${expected}` });
      });
      req.once("error", failed);
      req.end();
    } catch (err) {
      failed(err as Error);
    }
  });
}

/** A workload to probe. */
export interface HealthTarget {
  tenant: string;
  workload: string;
  /** The workload's first address. */
  address: string;
  check: HealthCheck;
}

/** A probed workload that left "unknown", as the status report carries it. */
export interface WorkloadHealth {
  tenant: string;
  workload: string;
  state: "healthy" | "unhealthy";
  /** RFC 3339. */
  since: string;
}

export interface HealthTransition {
  tenant: string;
  workload: string;
  from: HealthState;
  to: "healthy" | "unhealthy";
  /** The last probe's failure, when it failed. */
  reason?: string;
}

export interface HealthProberOptions {
  /** Called on every state change (the loop reports at once). */
  onTransition?: (t: HealthTransition) => void;
  /** Called when a workload's state changes or it stops being probed: null while unknown or gone. */
  onGauge?: (tenant: string, workload: string, state: "healthy" | "unhealthy" | null) => void;
  /** Milliseconds per second of the check's intervals and timeouts; tests shrink it. */
  msPerSecond?: number;
  random?: () => number;
  now?: () => number;
  probe?: (address: string, check: HealthCheck, timeoutMs: number) => Promise<ProbeResult>;
}

interface Probed {
  target: HealthTarget;
  record: HealthRecord;
  timer: ReturnType<typeof setTimeout> | null;
  inFlight: boolean;
  /** Bumped when the target changes or leaves: a result of an older probe is dropped. */
  generation: number;
  gone: boolean;
}

const keyOf = (t: { tenant: string; workload: string }): string => `${t.tenant}/${t.workload}`;

/** Keeps one probe schedule per target; `update` with the node's current targets, `list` for the report. */
export class HealthProber {
  private readonly probed = new Map<string, Probed>();
  private readonly ms: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly probeOnce: NonNullable<HealthProberOptions["probe"]>;
  private closed = false;

  constructor(private readonly o: HealthProberOptions = {}) {
    this.ms = o.msPerSecond ?? 1000;
    this.random = o.random ?? Math.random;
    this.now = o.now ?? Date.now;
    this.probeOnce = o.probe ?? probe;
  }

  /** Probes exactly these targets from now on (valid checks only: see healthCheckProblem). */
  update(targets: readonly HealthTarget[]): void {
    if (this.closed) return;
    const next = new Map(targets.map((t) => [keyOf(t), t]));
    for (const [key, p] of this.probed) {
      if (next.has(key)) continue;
      this.stop(p);
      this.probed.delete(key);
      this.o.onGauge?.(p.target.tenant, p.target.workload, null);
    }
    for (const [key, target] of next) {
      const p = this.probed.get(key);
      if (!p) {
        const fresh: Probed = { target, record: UNKNOWN, timer: null, inFlight: false, generation: 0, gone: false };
        this.probed.set(key, fresh);
        // The first probe soon, spread over up to a second so a node's workloads do not start in step.
        this.schedule(fresh, this.random() * Math.min(target.check.intervalSeconds, 1) * this.ms);
        continue;
      }
      if (p.target.address === target.address && JSON.stringify(p.target.check) === JSON.stringify(target.check)) continue;
      p.target = target;
      p.generation++;
      p.record = { ...p.record, successes: 0, failures: 0 };
      // A pending timer may be for the old, longer interval; an in-flight probe reschedules when it ends.
      if (p.timer) {
        clearTimeout(p.timer);
        p.timer = null;
        this.schedule(p, this.random() * Math.min(target.check.intervalSeconds, 1) * this.ms);
      }
    }
  }

  /** The state of every probed workload that left "unknown", by tenant and name. */
  list(): WorkloadHealth[] {
    const out: WorkloadHealth[] = [];
    for (const { target, record } of this.probed.values()) {
      if (record.state === "unknown") continue;
      out.push({ tenant: target.tenant, workload: target.workload, state: record.state, since: new Date(record.since!).toISOString() });
    }
    return out.sort((a, b) => a.tenant.localeCompare(b.tenant) || a.workload.localeCompare(b.workload));
  }

  /** The record of one workload (tests, logs). */
  stateOf(tenant: string, workload: string): HealthRecord | undefined {
    return this.probed.get(keyOf({ tenant, workload }))?.record;
  }

  /** Stops every probe; results still in flight are dropped. */
  close(): void {
    this.closed = true;
    for (const p of this.probed.values()) this.stop(p);
    this.probed.clear();
  }

  private stop(p: Probed): void {
    p.gone = true;
    p.generation++;
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
  }

  private schedule(p: Probed, delayMs: number): void {
    p.timer = setTimeout(() => {
      p.timer = null;
      void this.tick(p);
    }, Math.max(0, delayMs));
    // The loop keeps the process alive; a forgotten prober must not.
    p.timer.unref?.();
  }

  private async tick(p: Probed): Promise<void> {
    if (p.gone || p.inFlight) return;
    const { target, generation } = p;
    const started = this.now();
    p.inFlight = true;
    let result: ProbeResult;
    try {
      result = await this.probeOnce(target.address, target.check, target.check.timeoutSeconds * this.ms);
    } catch (err) {
      result = { ok: false, reason: (err as Error).message };
    } finally {
      p.inFlight = false;
    }
    if (p.gone) return;
    if (generation === p.generation) {
      const from = p.record.state;
      p.record = nextHealth(p.record, result.ok, target.check, this.now());
      const to = p.record.state;
      if (to !== from && to !== "unknown") {
        this.o.onGauge?.(target.tenant, target.workload, to);
        this.o.onTransition?.({ tenant: target.tenant, workload: target.workload, from, to, ...(result.ok ? {} : { reason: result.reason }) });
      }
    }
    // The next probe an interval after this one started, jittered by ±10 %.
    const interval = p.target.check.intervalSeconds * this.ms * (0.9 + 0.2 * this.random());
    this.schedule(p, interval - (this.now() - started));
  }
}
