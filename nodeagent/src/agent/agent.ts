// SPDX-License-Identifier: Apache-2.0
/**
 * The agent loop: long-poll the node's datapath, validate, apply with the
 * ApplyEngine, keep the veths and SVIDs in step, report status.
 *
 * Invariants:
 * - The kernel only ever receives a validated state, applied as a diff
 *   against what it holds: nothing is flushed, on start or on failure.
 * - The API being down changes nothing in the kernel: the loop backs off
 *   (jittered, bounded) and the last good state keeps serving traffic.
 * - A refused answer (validation) is reported and remembered by its ETag,
 *   so the next long poll waits for a newer state instead of re-fetching
 *   the same bad one in a hot loop.
 * - Nothing is half-applied in silence: every desired local workload no tc
 *   programs guard is reported (status `unresolved`) and keeps the agent
 *   not ready (GET /readyz), and the API the node not converged.
 * - A status report at least every status interval (a heartbeat), and at
 *   once after a workload's health changes.
 * - Ready (GET /readyz) means the kernel holds the latest revision the API
 *   answered; alive (GET /healthz) means the loop is moving: no step of it
 *   (a long poll, handling an answer, a backoff) has outlasted its bound.
 */
import { ApplyEngine, type MapTarget, type MapTargets } from "../apply/index.ts";
import { Backoff, sleep, type BackoffOptions } from "./backoff.ts";
import { ApiError, datapathTimeoutMs, type ApiClient, type DatapathAnswer, type L7Status, type NodeWorkload, type StatusReport, type StatusReportWithTransport, type TransportStatus } from "./client.ts";
import { entryCounts, InvalidDatapath, isEmptyDelta, patch, validateDelta, validateFull, type DesiredRevision } from "./desired.ts";
import { HealthProber, healthCheckProblem, type HealthProberOptions, type HealthTarget } from "./health.ts";
import type { AgentMetrics, Liveness, Readiness } from "./metrics.ts";
import type { SvidManager } from "./svid.ts";
import { syncLocalVeths } from "./local-veths.ts";
import { parsePodCidr, type PodCidr } from "./pod-cidr.ts";
import type { VethReconciler } from "./veths.ts";

/** A desired local workload address no tc programs guard, as the status report names it. */
export type UnresolvedWorkload = NonNullable<StatusReport["unresolved"]>[number];

/** The contract's bounds on the status report's lists and strings. */
const MAX_UNRESOLVED = 256;
const MAX_HEALTH = 1024;
const MAX_REASON = 512;
const MAX_ERRORS = 64;
const MAX_ERROR = 1024;

/** Slack on each step's own bound before the loop counts as stuck (a busy event loop, a slow netlink dump). */
const STEP_GRACE_MS = 10_000;
/**
 * Handling one answer: the apply, then the pod CIDR read, the workload
 * listing and the SVID renewals it prompts, each an API call with its own
 * timeout; five minutes is far past any of them together.
 */
const DEFAULT_HANDLE_BOUND_MS = 300_000;

/** What the loop is doing, since when, and how long that may take at most. */
interface LoopStep {
  what: string;
  since: number;
  boundMs: number;
}

export type Log = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export const jsonLog: Log = (level, msg, fields = {}) => {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
};

export interface AgentLoopOptions {
  node: string;
  client: Pick<ApiClient, "datapath" | "putStatus" | "nodeWorkloads"> & Partial<Pick<ApiClient, "node">>;
  maps: MapTargets;
  metrics: AgentMetrics;
  veths?: VethReconciler;
  /** The local_veth map, kept in step with the veths (host routing); kept empty when `hostRouting` is false. */
  localVeths?: MapTarget;
  hostRouting?: boolean;
  /**
   * The node's block of the pod CIDR as known at start (the registration's
   * answer, or the state directory); null or absent: not known yet. The loop
   * checks it against GET /v1/nodes/{node} (client.node) before its first
   * veth sync, and learns it there when it has none.
   */
  podCidr?: string | null;
  /** Called once the loop learns the block it did not know at start (the runtime saves it in the state directory). */
  onPodCidr?: (cidr: string) => void;
  svids?: SvidManager;
  /**
   * The node's transport when the agent runs one (transport-driver.ts): its
   * state goes into every status report, its faults into the errors, and
   * each applied datapath change has it read its document again.
   */
  transport?: { status(): TransportStatus; readonly errors: readonly string[]; refresh(): Promise<boolean> };
  /**
   * The node's L7 proxy (src/l7/driver.ts), or why it is off: its state
   * goes into every status report, its faults into the errors, and each
   * applied datapath change has it read its document again. Absent: off.
   */
  l7?: { status(): L7Status; readonly errors: readonly string[]; refresh(): Promise<boolean> };
  /** Long-poll seconds (API maximum 60). */
  waitSeconds?: number;
  /** A status report at least this often while the loop runs (--status-interval); default 5 s. */
  statusIntervalMs?: number;
  /** Health probes' knobs (tests shrink the second); the loop owns the prober. */
  health?: Omit<HealthProberOptions, "onTransition" | "onGauge">;
  backoff?: BackoffOptions;
  /** Bound on handling one answer before the loop counts as stuck (GET /healthz); default five minutes. */
  handleBoundMs?: number;
  /** Milliseconds now, for the liveness bounds (tests move it). */
  clock?: () => number;
  log?: Log;
}

export interface Applied {
  revision: number;
  hash: string;
  upserts: number;
  deletes: number;
  elapsedMs: number;
}

/**
 * One move of the revision the agent holds, in order: a full state (first,
 * after a 410 "gone", or refetched after a refusal or a failed apply), a
 * delta patched onto the revision `base`, or an empty delta that moved the
 * revision on from `base` without a change ("advance"). A sequence without
 * a gap has every delta's and advance's base equal to the revision before it.
 */
export interface RevisionStep {
  revision: number;
  hash: string;
  kind: "full" | "delta" | "advance";
  /** The revision a delta or advance started from; null for a full state. */
  base: number | null;
  /** Why a full state was fetched. */
  after?: "start" | "gone" | "refetch";
}

/** Entries kept of `revisions` and `history`: the latest, not a growing log. */
export const REVISION_RECORD_LIMIT = 1024;

function keepLatest<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > REVISION_RECORD_LIMIT) list.splice(0, list.length - REVISION_RECORD_LIMIT);
}

export class AgentLoop {
  private readonly engine: ApplyEngine;
  private readonly backoff: Backoff;
  private readonly log: Log;
  /** The last state written to the kernel in full. */
  private good: DesiredRevision | null = null;
  /** Deltas are asked from the good state only while the last answer was it (not after a 410, refusal or kernel failure). */
  private deltaFromGood = false;
  /** ETag for If-None-Match: the good state's, or a refused answer's. */
  private etag: string | null = null;
  /** Errors of the current state (refusals, kernel, the pod CIDR read), reported with the status. */
  private errors: string[] = [];
  /** Errors of the last veth sync (outside the block, local_veth writes, detaches): replaced by each sync. */
  private vethErrors: string[] = [];
  /** The last workload listing's failure, and health checks refused: replaced by each listing. */
  private listErrors: string[] = [];
  /** The last metrics map read's failure, replaced by each report. */
  private metricsError: string | null = null;
  /** Desired local workloads no tc programs guard, from the last veth sync. */
  private unresolved: UnresolvedWorkload[] = [];
  private workloadsRouteMissing = false;
  /** GET /v1/nodes/{node}/workloads as last answered (names for unresolved addresses, health checks, interfaces); null before. */
  private workloads: NodeWorkload[] | null = null;
  private readonly health: HealthProber;
  /** Veth syncs one at a time (a round's and a heartbeat's retry). */
  private vethQueue: Promise<unknown> = Promise.resolve();
  private running = false;
  /** Whether run() has ended: the loop will not move again. */
  private stopped = false;
  /** The loop's current step, for GET /healthz; null before run(). */
  private doing: LoopStep | null = null;
  /** The revision of the latest answer that carried one (applied, refused or failed), for GET /readyz. */
  private fetchedRevision: number | null = null;
  /** Set by a 410 (the API keeps no deltas from our revision): something newer exists, not fetched yet. */
  private behindLog = false;
  private heartbeat: ReturnType<typeof setTimeout> | null = null;
  /** A heartbeat's veth retry and report start, awaited when the loop stops. */
  private beating: Promise<void> | null = null;
  /** The node's block: local_veth names only addresses inside it. null: unknown, every address is named (older API). */
  private podCidr: PodCidr | null = null;
  /** Whether the API was asked for the block by this process; "unsupported": it does not know blocks (or forbids the read). */
  private podCidrAsked: "no" | "yes" | "unsupported" = "no";
  /** Errors about the block itself (a malformed one, the API naming another), reported with every status until fixed. */
  private podCidrErrors: string[] = [];
  /** The addresses last found outside the block, to log a change once rather than every round. */
  private lastOutside = "";
  /** The addresses (and API-given interfaces) the veths were last synced to, for rounds without a change. */
  private vethInput: { addresses: string[]; interfaces: Map<string, string> } | null = null;
  /** The latest applies (REVISION_RECORD_LIMIT), for tests and the restart proof. */
  readonly history: Applied[] = [];
  /** The latest revision steps (REVISION_RECORD_LIMIT), served on GET /revisions: proof that no revision was skipped. */
  readonly revisions: RevisionStep[] = [];
  /** What the next full state applied follows: the start, a 410; after the first, anything else is a refetch (a refusal, a failed apply). */
  private fullAfter: NonNullable<RevisionStep["after"]> = "start";
  private waiters: (() => void)[] = [];
  /** The status report in flight (reportSoon), and whether another was asked for meanwhile. */
  private reporting: Promise<void> | null = null;
  private reportAgain = false;

  constructor(private readonly o: AgentLoopOptions) {
    this.engine = new ApplyEngine(o.maps);
    this.backoff = new Backoff(o.backoff);
    this.log = o.log ?? jsonLog;
    if (o.podCidr) {
      this.podCidr = parsePodCidr(o.podCidr);
      if (!this.podCidr) this.podCidrErrors = [`the saved pod CIDR block "${o.podCidr}" is not an IPv4 prefix: host routing is not limited to a block`];
    }
    if (!o.client.node) this.podCidrAsked = "unsupported";
    o.metrics.podCidr(this.podCidr?.cidr ?? null);
    this.health = new HealthProber({
      ...o.health,
      onGauge: (tenant, workload, state) => o.metrics.workloadHealth(tenant, workload, state),
      onTransition: (t) => {
        this.log(t.to === "healthy" ? "info" : "warn", `workload ${t.tenant}/${t.workload} is ${t.to}`, { from: t.from, ...(t.reason ? { reason: t.reason } : {}) });
        // The API withdraws or restores backends on it: report at once, not at the next heartbeat.
        this.reportSoon();
      },
    });
  }

  /** The node's block of the pod CIDR in use, or null while unknown. */
  get podCidrBlock(): string | null {
    return this.podCidr?.cidr ?? null;
  }

  get applied(): DesiredRevision | null {
    return this.good;
  }

  /** The counters the status report carries. */
  counters(): Record<string, number> {
    return this.o.metrics.statusCounters();
  }

  /** Every error the status report carries now. */
  get currentErrors(): readonly string[] {
    const errors = [...this.errors, ...this.podCidrErrors, ...this.vethErrors, ...this.listErrors, ...(this.o.svids?.lastErrors ?? []), ...(this.o.transport?.errors ?? []), ...(this.o.l7?.errors ?? [])];
    if (this.metricsError) errors.push(this.metricsError);
    return [...new Set(errors)];
  }

  /** Desired local workloads no tc programs guard (status `unresolved`). */
  get unresolvedWorkloads(): readonly UnresolvedWorkload[] {
    return this.unresolved;
  }

  /** The probed workloads' states (status `health`). */
  get workloadHealth(): ReturnType<HealthProber["list"]> {
    return this.health.list();
  }

  /**
   * Ready: the latest revision fetched is the one applied, no unresolved
   * workload, no error (GET /readyz).
   */
  readiness(): Readiness {
    const reasons: string[] = [];
    if (!this.good) reasons.push("no datapath state applied yet");
    else if (this.fetchedRevision !== null && this.fetchedRevision > this.good.revision) {
      reasons.push(`datapath revision ${this.fetchedRevision} was fetched but the kernel holds revision ${this.good.revision}`);
    } else if (this.behindLog) reasons.push(`the API keeps no changes since revision ${this.good.revision}: fetching its full state`);
    for (const u of this.unresolved) reasons.push(`unresolved workload ${u.tenant || "?"}/${u.workload || "?"} (${u.address}): ${u.reason}`);
    reasons.push(...this.currentErrors);
    return { ready: reasons.length === 0, reasons: reasons.slice(0, MAX_ERRORS) };
  }

  /**
   * Alive: the loop runs and its current step (a long poll, handling an
   * answer, a backoff) has not outlasted its bound (GET /healthz). Before
   * run() it is alive: start-up has its own timeouts and exits on failure.
   */
  liveness(): Liveness {
    if (this.stopped) return { alive: false, reasons: ["the agent loop has stopped"] };
    const s = this.doing;
    if (!s) return { alive: true, reasons: [] };
    const elapsed = this.now() - s.since;
    if (elapsed <= s.boundMs) return { alive: true, reasons: [] };
    return { alive: false, reasons: [`the agent loop is stuck ${s.what}: ${Math.round(elapsed / 1000)} s, bound ${Math.round(s.boundMs / 1000)} s`] };
  }

  private now(): number {
    return (this.o.clock ?? Date.now)();
  }

  /** The loop starts a step that should end within boundMs (plus the grace). */
  private enter(what: string, boundMs: number): void {
    this.doing = { what, since: this.now(), boundMs: boundMs + STEP_GRACE_MS };
  }

  /** Runs until the signal aborts; never throws for API or kernel failures. */
  async run(signal: AbortSignal): Promise<void> {
    this.running = true;
    try {
      await this.poll(signal);
    } finally {
      this.stopped = true;
      this.running = false;
      if (this.heartbeat) clearTimeout(this.heartbeat);
      this.heartbeat = null;
      this.health.close();
      while (this.beating) await this.beating;
      while (this.reporting) await this.reporting;
    }
  }

  private async poll(signal: AbortSignal): Promise<void> {
    // The first report (the heartbeat's clock) once the first answer is handled, or one interval in if the API stays silent.
    this.armHeartbeat();
    let first = true;
    while (!signal.aborted) {
      let answer: DatapathAnswer;
      const waitSeconds = first ? 0 : (this.o.waitSeconds ?? 30);
      this.enter("waiting for the API's datapath answer", datapathTimeoutMs(waitSeconds));
      try {
        answer = await this.o.client.datapath(this.o.node, {
          etag: this.etag,
          since: this.good && this.deltaFromGood ? this.good.revision : null,
          waitSeconds,
          signal,
        });
      } catch (err) {
        if (signal.aborted) break;
        await this.failed(`${(err as Error).message}`, signal);
        continue;
      }
      first = false;
      let ok: boolean;
      this.enter("handling a datapath answer", this.o.handleBoundMs ?? DEFAULT_HANDLE_BOUND_MS);
      try {
        ok = await this.step(answer);
      } catch (err) {
        // A bug or an unexpected failure (a state directory gone read-only): report it, keep the kernel, retry.
        this.errors = [`failed to handle datapath answer: ${(err as Error).message}`];
        this.etag = null;
        this.deltaFromGood = false;
        this.log("error", this.errors[0]!);
        ok = false;
      }
      // The report does not hold up the next long poll: a write landing while it is in flight still wakes the agent at once.
      this.reportSoon();
      if (!ok) {
        const delay = this.backoff.next();
        this.enter("backing off", delay);
        await sleep(delay, signal);
      } else this.backoff.reset();
    }
  }

  /** The next heartbeat one status interval from now (each report starts the interval again). */
  private armHeartbeat(): void {
    if (this.heartbeat) clearTimeout(this.heartbeat);
    this.heartbeat = null;
    if (!this.running) return;
    this.heartbeat = setTimeout(() => {
      this.heartbeat = null;
      this.beating ??= this.beat().finally(() => (this.beating = null));
    }, this.o.statusIntervalMs ?? 5_000);
  }

  /**
   * A report although nothing was answered; while a workload is unresolved
   * its veth is looked for again first (a veth made after the state arrived
   * is guarded within an interval, not at the next long poll's end).
   */
  private async beat(): Promise<void> {
    try {
      if (this.unresolved.length > 0 && this.vethInput && this.o.veths) await this.syncVeths(this.vethInput);
    } catch (err) {
      this.log("error", "failed to check veths", { error: (err as Error).message });
    }
    if (this.running) this.reportSoon();
  }

  /**
   * Starts a status report without waiting for it: one report at a time, in
   * order; one asked for while another is in flight is sent after it, with
   * the state as it is then (so the last report always carries the last state).
   */
  private reportSoon(): void {
    if (this.reporting) {
      this.reportAgain = true;
      return;
    }
    const send = async (): Promise<void> => {
      try {
        do {
          this.reportAgain = false;
          this.armHeartbeat();
          await this.report();
        } while (this.reportAgain);
      } catch (err) {
        // report() handles API failures itself; this is a bug's way out, which must not stop later reports.
        this.log("error", "failed to report status", { error: (err as Error).message });
      } finally {
        this.reporting = null;
      }
    };
    this.reporting = send();
  }

  /** Handles one answer; false when the loop should back off (a kernel failure). */
  async step(answer: DatapathAnswer): Promise<boolean> {
    if (answer.kind === "unchanged") {
      await this.recheck();
      return true;
    }
    if (answer.kind === "gone") {
      // Our revision is older than the API's change log: the next poll asks for the full state.
      this.behindLog = true;
      this.etag = null;
      this.deltaFromGood = false;
      this.fullAfter = "gone";
      return true;
    }
    this.noteFetched(answer.body);
    let next: DesiredRevision;
    try {
      if (answer.kind === "full") next = validateFull(answer.body);
      else {
        const delta = validateDelta(answer.body);
        if (!this.good) throw new InvalidDatapath("failed to validate datapath delta: the agent holds no full state to patch");
        if (isEmptyDelta(delta) && delta.hash === this.good.hash) {
          // Nothing for this node since our revision (a long poll's timeout): ask from the newer one next,
          // else a revision that moved on without content would answer every poll at once.
          const base = this.good.revision;
          this.good = { ...this.good, revision: Math.max(base, delta.revision) };
          keepLatest(this.revisions, { revision: this.good.revision, hash: this.good.hash, kind: "advance", base });
          await this.recheck();
          return true;
        }
        next = patch(this.good, delta);
      }
    } catch (err) {
      if (!(err instanceof InvalidDatapath)) throw err;
      this.o.metrics.refusedAnswer();
      this.errors = [err.message];
      // Wait for a newer answer than this one, and full: a delta onto a refused state means nothing.
      this.etag = answer.etag;
      this.deltaFromGood = false;
      this.log("error", "refused datapath answer; the kernel keeps the last good state", { error: err.message, revision: this.good?.revision ?? null });
      return true;
    }
    try {
      const r = this.engine.apply(next.maps);
      this.o.metrics.applied(next.revision, r.elapsedMs / 1000, entryCounts(next), r.upserts, r.deletes);
      keepLatest(
        this.revisions,
        answer.kind === "full" ? { revision: next.revision, hash: next.hash, kind: "full", base: null, after: this.fullAfter } : { revision: next.revision, hash: next.hash, kind: "delta", base: this.good!.revision },
      );
      this.fullAfter = "refetch";
      this.good = next;
      this.behindLog = false;
      this.deltaFromGood = true;
      this.etag = answer.etag;
      this.errors = [];
      const applied = { revision: next.revision, hash: next.hash, upserts: r.upserts, deletes: r.deletes, elapsedMs: r.elapsedMs };
      keepLatest(this.history, applied);
      if (r.upserts + r.deletes > 0) this.log("info", "applied datapath", applied);
    } catch (err) {
      this.o.metrics.applyError();
      this.errors = [(err as Error).message];
      // Refetch in full after the backoff: the kernel holds a mix the next full apply completes.
      this.etag = null;
      this.deltaFromGood = false;
      this.log("error", "failed to apply datapath; retrying", { error: (err as Error).message });
      return false;
    }
    await this.sideEffects(next);
    // A new revision for this node: the policies, workloads or nodes behind the transport and L7 documents may have changed (a 304 when not).
    void this.o.transport?.refresh();
    void this.o.l7?.refresh();
    for (const w of this.waiters.splice(0)) w();
    return true;
  }

  /**
   * The revision an answer names, read before validation: a refused answer
   * still tells that the API is ahead of the kernel (not ready). Only a
   * plausible revision counts, so garbage cannot pin the agent unready
   * beyond the next good answer.
   */
  private noteFetched(body: unknown): void {
    const revision = (body as { revision?: unknown } | null)?.revision;
    if (typeof revision === "number" && Number.isSafeInteger(revision) && revision >= 0) this.fetchedRevision = revision;
  }

  /** Resolves after the next successful apply (tests). */
  nextApply(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Asks GET /v1/nodes/{node} for the node's block: once per process to
   * check the known one, and on every apply while none is known (a node
   * registered before blocks existed gets one later). The first block known
   * stays: the API never moves a node's block, so an answer naming another
   * is reported as an error and not adopted (a compromised API must not
   * widen what host routing delivers here).
   */
  private async refreshPodCidr(): Promise<void> {
    if (this.podCidrAsked === "unsupported" || (this.podCidrAsked === "yes" && this.podCidr)) return;
    let answer: string | null | undefined;
    try {
      ({ podCidr: answer } = await this.o.client.node!(this.o.node));
    } catch (err) {
      if (err instanceof ApiError && (err.status === 403 || err.status === 404)) {
        // An API that does not let the node read itself: nothing to learn the block from.
        this.podCidrAsked = "unsupported";
        this.log("warn", "the API does not let this node read GET /v1/nodes/{node}: pod CIDR block unknown, host routing not limited to a block", {
          podCidr: this.podCidr?.cidr ?? null,
          status: err.status,
        });
      } else {
        this.errors.push(`failed to read the pod CIDR block of node ${this.o.node}: ${(err as Error).message}`);
      }
      return;
    }
    this.podCidrAsked = "yes";
    if (answer === undefined) {
      this.podCidrAsked = "unsupported";
      this.log("warn", "the API assigns no pod CIDR blocks (no podCidr on GET /v1/nodes/{node}): host routing not limited to a block", { podCidr: this.podCidr?.cidr ?? null });
      return;
    }
    if (answer === null) return; // none yet: asked again on the next apply
    const block = parsePodCidr(answer);
    if (!block) {
      this.podCidrErrors = [`the API's pod CIDR block "${answer}" for node ${this.o.node} is not an IPv4 prefix: not used`];
      return;
    }
    if (this.podCidr) {
      if (this.podCidr.cidr === block.cidr) {
        this.podCidrErrors = [];
        return;
      }
      this.podCidrErrors = [
        `the API names pod CIDR block ${block.cidr} for node ${this.o.node}, but the node holds ${this.podCidr.cidr} (state directory): keeping ${this.podCidr.cidr}`,
      ];
      this.log("error", this.podCidrErrors[0]!);
      return;
    }
    this.podCidr = block;
    this.podCidrErrors = [];
    this.o.metrics.podCidr(block.cidr);
    this.log("info", "pod CIDR block learned: host routing only for addresses inside it", { podCidr: block.cidr });
    try {
      this.o.onPodCidr?.(block.cidr);
    } catch (err) {
      this.errors.push(`failed to save the pod CIDR block: ${(err as Error).message}`);
    }
  }

  /** Veths, SVIDs and health probes follow the applied state; their failures are reported, never undo the apply. */
  private async sideEffects(state: DesiredRevision): Promise<void> {
    if (this.o.veths) await this.refreshPodCidr();
    const listed = await this.refreshWorkloads();
    if (this.o.veths) {
      this.vethInput = { addresses: (state.maps.endpoint as { key: { address: string } }[]).map((e) => e.key.address), interfaces: interfacesOf(this.workloads) };
      await this.syncVeths(this.vethInput);
    }
    // Only after a listing that answered: a failed one must not remove the SVIDs of workloads still here.
    if (this.o.svids && listed && this.workloads) {
      await this.o.svids.sync(
        this.workloads.map((w) => ({
          tenant: w.tenant,
          identity: w.identity,
          workload: w.name,
          addresses: w.addresses,
          ...(w.spiffeId ? { spiffeId: w.spiffeId } : {}),
          ...(w.interface ? { interface: w.interface } : {}),
        })),
      );
    }
  }

  /**
   * A round without a change (a long poll's timeout): the listing again (a
   * health check changed, a workload's interface) and the veths (one
   * replaced behind the API's back gets the programs and its entry).
   */
  private async recheck(): Promise<void> {
    if (!this.good) return;
    await this.refreshWorkloads();
    if (this.vethInput && this.o.veths) {
      this.vethInput = { ...this.vethInput, interfaces: interfacesOf(this.workloads) };
      await this.syncVeths(this.vethInput);
    }
  }

  /**
   * GET /v1/nodes/{node}/workloads into `workloads`, and the health probes
   * onto its checks; true when it answered. A failed listing keeps the last
   * one (and its probes) and is reported.
   */
  private async refreshWorkloads(): Promise<boolean> {
    if (this.workloadsRouteMissing) return false;
    let listed: NodeWorkload[] | null;
    try {
      listed = await this.o.client.nodeWorkloads(this.o.node);
    } catch (err) {
      this.listErrors = [`failed to list workloads of node ${this.o.node}: ${(err as Error).message}`];
      return false;
    }
    this.listErrors = [];
    if (listed === null) {
      this.workloadsRouteMissing = true;
      this.workloads = null;
      this.health.update([]);
      this.log("warn", "the API does not list this node's workloads (GET /v1/nodes/{node}/workloads): no workload SVIDs, no health probes; veths found by route");
      return false;
    }
    this.workloads = listed;
    const targets: HealthTarget[] = [];
    for (const w of listed) {
      if (w.healthCheck === undefined) continue;
      const problem = healthCheckProblem(w.healthCheck) ?? (w.addresses[0] === undefined ? "the workload has no address" : null);
      if (problem) this.listErrors.push(`workload ${w.tenant}/${w.name}: health check not probed: ${problem}`);
      else targets.push({ tenant: w.tenant, workload: w.name, address: w.addresses[0]!, check: w.healthCheck });
    }
    this.health.update(targets);
    return true;
  }

  /** One veth sync at a time: a round's and a heartbeat's never interleave. */
  private syncVeths(input: { addresses: string[]; interfaces: Map<string, string> }): Promise<void> {
    const next = this.vethQueue.then(() => this.syncVethsNow(input));
    this.vethQueue = next.catch(() => undefined);
    return next;
  }

  /**
   * tc programs on each workload's veth, and local_veth naming exactly those
   * veths; sets the unresolved workloads and the veth errors. Also run on
   * rounds that bring no change: a workload's veth replaced behind the API's
   * back (a new ifindex for the same address) gets the programs and its
   * entry by the next long poll.
   */
  private async syncVethsNow(input: { addresses: string[]; interfaces: Map<string, string> }): Promise<void> {
    const block = this.podCidr;
    const r = await this.o.veths!.sync(input.addresses, input.interfaces, block);
    if (r.attached.length || r.detached.length) this.log("info", "veths changed", { attached: r.attached, detached: r.detached });
    const errors = [...r.errors];
    const before = new Set(this.unresolved.map((u) => `${u.address}\n${u.reason}`));
    this.unresolved = this.nameUnresolved(r.unresolved);
    this.o.metrics.unresolved(this.unresolved.length);
    const fresh = this.unresolved.filter((u) => !before.has(`${u.address}\n${u.reason}`));
    if (fresh.length) this.log("error", "desired workloads without tc programs: the node is not ready", { unresolved: fresh });
    this.o.metrics.outsideBlock(r.outsideBlock.length);
    if (block) {
      for (const a of r.outsideBlock) errors.push(`workload address ${a} is outside this node's pod CIDR block ${block.cidr}: no host routing for it`);
      const outside = r.outsideBlock.join(",");
      if (outside !== this.lastOutside && r.outsideBlock.length) {
        this.log("error", "desired workload addresses outside this node's pod CIDR block: no host routing for them", { podCidr: block.cidr, addresses: r.outsideBlock });
      }
      this.lastOutside = outside;
    }
    // After a failed lookup the map stays as it is: an address looked up in vain would lose its entry.
    if (this.o.localVeths && (r.complete || this.o.hostRouting === false)) {
      try {
        const wanted = this.o.hostRouting === false ? new Map<string, number>() : r.localVeths;
        syncLocalVeths(this.o.localVeths, wanted);
        this.o.metrics.localVeths(wanted.size);
      } catch (err) {
        errors.push(`failed to write the local_veth map: ${(err as Error).message}`);
      }
    }
    this.vethErrors = errors;
  }

  /**
   * The reconciler's addresses with their workloads' names from the last
   * listing; an address the listing does not name (none offered, or older
   * than the datapath) keeps tenant and workload "" and says so in its reason.
   */
  private nameUnresolved(addresses: readonly { address: string; reason: string }[]): UnresolvedWorkload[] {
    const owners = new Map<string, NodeWorkload>();
    for (const w of this.workloads ?? []) for (const a of w.addresses) owners.set(a, w);
    const unknown = this.workloadsRouteMissing
      ? "workload unknown: the API does not list this node's workloads"
      : this.workloads === null
        ? "workload unknown: this node's workloads could not be listed"
        : "workload unknown: not in this node's workload listing";
    return addresses.slice(0, MAX_UNRESOLVED).map(({ address, reason }) => {
      const w = owners.get(address);
      return w
        ? { tenant: w.tenant, workload: w.name, address, reason: reason.slice(0, MAX_REASON) }
        : { tenant: "", workload: "", address, reason: `${reason} (${unknown})`.slice(0, MAX_REASON) };
    });
  }

  private async failed(message: string, signal: AbortSignal): Promise<void> {
    this.o.metrics.apiError();
    const delay = this.backoff.next();
    this.enter("backing off from the API", delay);
    this.log("warn", "API unavailable; the kernel keeps the last good state", { error: message, retryInMs: Math.round(delay) });
    await sleep(delay, signal);
  }

  /** PUT status; a failure counts as an API error and waits for the next round. */
  async report(): Promise<void> {
    try {
      this.o.metrics.refreshVerdicts();
      this.metricsError = null;
    } catch (err) {
      this.metricsError = `failed to read the metrics map: ${(err as Error).message}`;
    }
    const health = this.health.list().slice(0, MAX_HEALTH);
    const body: StatusReportWithTransport = {
      appliedRevision: this.good?.revision ?? 0,
      // Before anything was applied there is no hash; the API requires a non-empty string.
      hash: this.good?.hash ?? "none",
      counters: this.o.metrics.statusCounters(),
      errors: this.currentErrors.slice(0, MAX_ERRORS).map((e) => e.slice(0, MAX_ERROR)),
      // Full sets, left out when empty (absent means none): an API without the fields still takes a clean node's report.
      ...(this.unresolved.length ? { unresolved: this.unresolved } : {}),
      ...(health.length ? { health } : {}),
      // "off" clears the endpoint the API holds, so no peer's transport document keeps sending streams here.
      transport: this.o.transport ? this.o.transport.status() : { endpoint: null, state: "off" },
      l7: this.o.l7 ? this.o.l7.status() : { state: "off", detail: "the agent runs without an L7 proxy" },
    };
    try {
      await this.o.client.putStatus(this.o.node, body);
    } catch (err) {
      this.o.metrics.apiError();
      this.log("warn", "failed to report status", { error: (err as Error).message, status: err instanceof ApiError ? err.status : undefined });
    }
  }
}

/** Address -> interface, as the workload listing names them (the API's `interface` wins over the route). */
function interfacesOf(workloads: readonly NodeWorkload[] | null): Map<string, string> {
  const interfaces = new Map<string, string>();
  for (const w of workloads ?? []) if (w.interface) for (const a of w.addresses) interfaces.set(a, w.interface);
  return interfaces;
}
