// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's Prometheus metrics, served on 127.0.0.1 only (they name
 * identities and counts, not for the network), and the same numbers as the
 * flat counters the status report carries. The same server answers
 * GET /readyz with the loop's readiness and GET /healthz with its liveness.
 *
 * AgentMetrics.registry is the agent's one registry: other parts' metrics
 * (the flows' in nodeagent/src/flows/metrics.ts) are registered on it, given
 * to them by the runtime, so one /metrics shows everything. Names follow
 * Prometheus's conventions: counters end in _total, units are base units.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeKeys, decodeValues, sumPerCpu, type Hook, type Reason } from "@weft/codec";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { possibleCpus } from "../kernel/index.ts";
import type { MapTarget } from "../apply/index.ts";
import { MANAGED_MAPS, type ManagedMap } from "../apply/index.ts";
import type { EndpointSet } from "./endpoints.ts";

export interface VerdictCount {
  hook: Hook;
  reason: Reason;
  packets: number;
  bytes: number;
}

/** Packets and bytes per (hook, reason) from the per-CPU metrics map, summed over CPUs; never-counted slots left out. */
export function readVerdicts(metrics: Pick<MapTarget, "dump">): VerdictCount[] {
  const { keys, values } = metrics.dump();
  const slots = decodeKeys("metrics", keys);
  const copies = decodeValues("metrics", values);
  const cpus = copies.length / Math.max(1, slots.length) || possibleCpus();
  const out: VerdictCount[] = [];
  slots.forEach((slot, i) => {
    if (slot.reason === "none") return;
    const sum = sumPerCpu(copies.slice(i * cpus, (i + 1) * cpus));
    if (sum.packets === 0n && sum.bytes === 0n) return;
    out.push({ hook: slot.hook, reason: slot.reason, packets: Number(sum.packets), bytes: Number(sum.bytes) });
  });
  return out;
}

/** A GET route beside /metrics: its status, media type and JSON body for a query string. */
export type LocalRoute = (query: URLSearchParams) => { status: number; type?: string; body: unknown };

/** GET /readyz: 200 {"ready":true}, or 503 {"ready":false,"reasons":[...]}. */
export interface Readiness {
  ready: boolean;
  reasons: string[];
}

/** GET /healthz: 200 {"alive":true}, or 503 {"alive":false,"reasons":[...]} (a supervisor restarts the agent). */
export interface Liveness {
  alive: boolean;
  reasons: string[];
}

/** Prefix of the process metrics (CPU, memory, event loop lag, file descriptors); the API's are weft_process_... */
export const PROCESS_METRICS_PREFIX = "weft_agent_";

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly revision: Gauge;
  private readonly applyLatency: Histogram;
  private readonly entries: Gauge;
  private readonly verdictPackets: Counter;
  private readonly verdictBytes: Counter;
  private readonly apiErrors: Counter;
  private readonly applyErrors: Counter;
  private readonly refused: Counter;
  private readonly applies: Counter;
  private readonly upserts: Counter;
  private readonly deletes: Counter;
  private readonly lbHostTrafficGauge: Gauge;
  private readonly podCidrInfo: Gauge;
  private readonly outsideBlockGauge: Gauge;
  private readonly unresolvedGauge: Gauge;
  private readonly workloadHealthy: Gauge;
  /** The node's block of the pod CIDR in use; null while unknown; undefined before the loop said. */
  private podCidrBlock: string | null | undefined = undefined;
  /** Desired local addresses outside the block at the last veth sync, null before the first. */
  private outsideBlockCount: number | null = null;
  /** Desired local workload addresses no tc programs guard, at the last veth sync; null before the first. */
  private unresolvedCount: number | null = null;
  /** What /readyz answers; not ready until the loop says. */
  private readiness: () => Readiness = () => ({ ready: false, reasons: ["the agent is starting"] });
  /** What /healthz answers: alive while starting (start-up has its own bounds and exits on failure), then the loop's. */
  private liveness: () => Liveness = () => ({ alive: true, reasons: [] });
  /** The socket LB's setting as written to sock_cfg (1: host traffic balanced too), null until written. */
  private lbHostTraffic: number | null = null;
  private counts = { apiErrors: 0, applyErrors: 0, refused: 0, applies: 0, upserts: 0, deletes: 0 };
  private entryCounts: Partial<Record<ManagedMap, number>> = {};
  /** Entries of the agent's own local_veth map (host routing), null until first written. */
  private localVethCount: number | null = null;
  private verdicts: VerdictCount[] = [];
  private server: Server | null = null;
  /** More GET routes on this port, answering JSON (GET /flows). */
  private readonly routes = new Map<string, LocalRoute>();
  /** Prometheus text of other processes (the transport's), appended to /metrics at each scrape. */
  private readonly appended: (() => Promise<string>)[] = [];

  constructor(private readonly verdictSource: (() => VerdictCount[]) | null = null) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: PROCESS_METRICS_PREFIX });
    this.revision = new Gauge({ name: "weft_agent_applied_revision", help: "Datapath revision last applied to the kernel maps", registers });
    this.applyLatency = new Histogram({
      name: "weft_agent_apply_seconds",
      help: "Encode, read-back, diff and batch writes of one datapath state",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.entries = new Gauge({ name: "weft_agent_map_entries", help: "Entries per kernel map as last applied", labelNames: ["map"], registers });
    // The kernel's counters are monotonic already: each scrape reads the map and exports the sums as read,
    // typed counter (they go back to 0 only when the pinned map is made anew, which Prometheus reads as a reset).
    const owner = this;
    this.verdictPackets = new Counter({
      name: "weft_datapath_packets_total",
      help: "Packets counted by the datapath per hook and reason (metrics map, summed over CPUs)",
      labelNames: ["hook", "reason"],
      registers,
      collect() {
        owner.refreshVerdictsQuietly();
        this.reset();
        for (const v of owner.verdicts) this.inc({ hook: v.hook, reason: v.reason }, v.packets);
      },
    });
    this.verdictBytes = new Counter({
      name: "weft_datapath_bytes_total",
      help: "Bytes counted by the datapath per hook and reason",
      labelNames: ["hook", "reason"],
      registers,
      collect() {
        // The packets' collect() read the map for this scrape; both print the same read.
        this.reset();
        for (const v of owner.verdicts) this.inc({ hook: v.hook, reason: v.reason }, v.bytes);
      },
    });
    this.apiErrors = new Counter({ name: "weft_agent_api_errors_total", help: "API calls that failed (unreachable, 5xx, refused)", registers });
    this.applyErrors = new Counter({ name: "weft_agent_apply_errors_total", help: "Applies that failed in the kernel", registers });
    this.refused = new Counter({ name: "weft_agent_refused_total", help: "Datapath answers refused by validation", registers });
    this.applies = new Counter({ name: "weft_agent_applies_total", help: "Datapath states applied", registers });
    this.upserts = new Counter({ name: "weft_agent_upserts_total", help: "Map entries written", registers });
    this.deletes = new Counter({ name: "weft_agent_deletes_total", help: "Map entries deleted", registers });
    this.lbHostTrafficGauge = new Gauge({
      name: "weft_agent_lb_host_traffic",
      help: "1 when the socket LB also rewrites connections of the host's network namespace (--lb-host-traffic), 0 when it leaves them alone",
      registers,
    });
    this.podCidrInfo = new Gauge({
      name: "weft_agent_pod_cidr_info",
      help: "1 for the node's block of the pod CIDR (host routing names only addresses inside it); absent while the block is unknown",
      labelNames: ["cidr"],
      registers,
    });
    this.outsideBlockGauge = new Gauge({
      name: "weft_agent_local_veth_outside_block",
      help: "Desired local workload addresses outside the node's pod CIDR block, given no host routing (a wrong desired state)",
      registers,
    });
    this.unresolvedGauge = new Gauge({
      name: "weft_agent_unresolved_workloads",
      help: "Desired local workload addresses whose veth was not found in the agent's network namespace, is not a veth, or could not be attached (the agent is not ready)",
      registers,
    });
    // Bounded by the node's workloads: a series per probed workload, removed when it leaves.
    this.workloadHealthy = new Gauge({
      name: "weft_agent_workload_healthy",
      help: "1 when the workload's health check passes (healthy), 0 when it fails (unhealthy); absent while unknown or not probed",
      labelNames: ["tenant", "workload"],
      registers,
    });
  }

  /**
   * The API endpoints' failovers and which endpoint is in use, read from the
   * set at each scrape: the index (its position among --api's URLs and their
   * addresses, bounded) rather than the URL as a label.
   */
  watchEndpoints(set: Pick<EndpointSet, "switches" | "active">): void {
    const registers = [this.registry];
    new Counter({
      name: "weft_agent_api_endpoint_switches_total",
      help: "Times the agent moved to the next API endpoint after a refused or reset connection, a timeout or a 5xx",
      registers,
      collect() {
        this.reset();
        this.inc(set.switches);
      },
    });
    new Gauge({
      name: "weft_agent_api_endpoint_info",
      help: "1 for the API endpoint in use, by its index in --api's list (a host name's addresses each count, in resolved order); absent before the first call",
      labelNames: ["index"],
      registers,
      collect() {
        this.reset();
        const active = set.active;
        if (active) this.set({ index: String(active.index) }, 1);
      },
    });
  }

  /** The node's block of the pod CIDR in use, or null while it is unknown (an API that assigns none). */
  podCidr(cidr: string | null): void {
    this.podCidrBlock = cidr;
    this.podCidrInfo.reset();
    if (cidr !== null) this.podCidrInfo.set({ cidr }, 1);
  }

  /** `n` desired local addresses were outside the block at the last veth sync. */
  outsideBlock(n: number): void {
    this.outsideBlockCount = n;
    this.outsideBlockGauge.set(n);
  }

  /** `n` desired local addresses were unresolved at the last veth sync. */
  unresolved(n: number): void {
    this.unresolvedCount = n;
    this.unresolvedGauge.set(n);
  }

  /** A probed workload's state; null: unknown or no longer probed (the series goes). */
  workloadHealth(tenant: string, workload: string, state: "healthy" | "unhealthy" | null): void {
    if (state === null) this.workloadHealthy.remove({ tenant, workload });
    else this.workloadHealthy.set({ tenant, workload }, state === "healthy" ? 1 : 0);
  }

  /** What GET /readyz answers from now on. */
  readyWhen(readiness: () => Readiness): void {
    this.readiness = readiness;
  }

  /** What GET /healthz answers from now on. */
  aliveWhen(liveness: () => Liveness): void {
    this.liveness = liveness;
  }

  /** The socket LB's configuration was written (sock_cfg). */
  sockConfig(lbHostTraffic: boolean): void {
    this.lbHostTraffic = lbHostTraffic ? 1 : 0;
    this.lbHostTrafficGauge.set(this.lbHostTraffic);
  }

  applied(revision: number, seconds: number, counts: Partial<Record<ManagedMap, number>>, upserts: number, deletes: number): void {
    this.revision.set(revision);
    this.applyLatency.observe(seconds);
    this.applies.inc();
    this.counts.applies++;
    this.upserts.inc(upserts);
    this.counts.upserts += upserts;
    this.deletes.inc(deletes);
    this.counts.deletes += deletes;
    this.entryCounts = { ...counts };
    for (const [map, n] of Object.entries(counts)) this.entries.set({ map }, n);
  }

  /** The local_veth map holds `n` entries (it follows the veths, not the API's state). */
  localVeths(n: number): void {
    this.localVethCount = n;
    this.entries.set({ map: "local_veth" }, n);
  }

  apiError(): void {
    this.apiErrors.inc();
    this.counts.apiErrors++;
  }

  applyError(): void {
    this.applyErrors.inc();
    this.counts.applyErrors++;
  }

  refusedAnswer(): void {
    this.refused.inc();
    this.counts.refused++;
  }

  /** Reads the kernel's verdict counters now (for /metrics and the status report). */
  refreshVerdicts(): void {
    if (!this.verdictSource) return;
    this.verdicts = this.verdictSource();
  }

  /** A scrape's read: a failed map read leaves the last numbers; the agent's status report carries the error. */
  private refreshVerdictsQuietly(): void {
    try {
      this.refreshVerdicts();
    } catch {
      // kept: the last numbers
    }
  }

  /** The status report's counters: the same numbers as /metrics, flat. */
  statusCounters(): Record<string, number> {
    const out: Record<string, number> = {
      "agent.applies": this.counts.applies,
      "agent.upserts": this.counts.upserts,
      "agent.deletes": this.counts.deletes,
      "agent.api_errors": this.counts.apiErrors,
      "agent.apply_errors": this.counts.applyErrors,
      "agent.refused": this.counts.refused,
    };
    for (const id of MANAGED_MAPS) if (this.entryCounts[id] !== undefined) out[`entries.${id}`] = this.entryCounts[id]!;
    if (this.localVethCount !== null) out["entries.local_veth"] = this.localVethCount;
    if (this.lbHostTraffic !== null) out["agent.lb_host_traffic"] = this.lbHostTraffic;
    // Status counters are numbers: whether the block is known (the block itself is on /metrics and in the log).
    if (this.podCidrBlock !== undefined) out["agent.pod_cidr_known"] = this.podCidrBlock === null ? 0 : 1;
    if (this.outsideBlockCount !== null) out["agent.local_veth_outside_block"] = this.outsideBlockCount;
    if (this.unresolvedCount !== null) out["agent.unresolved"] = this.unresolvedCount;
    for (const v of this.verdicts) out[`packets.${v.hook}.${v.reason}`] = v.packets;
    return out;
  }

  /**
   * Appends another process's metrics to every /metrics answer (the
   * transport's, over its control channel): one scrape shows the node. The
   * source answers "" when it has nothing, and must not throw.
   */
  append(source: () => Promise<string>): void {
    this.appended.push(source);
  }

  /** The registry's text and every appended source's. */
  async text(): Promise<string> {
    const parts = await Promise.all([this.registry.metrics(), ...this.appended.map((source) => source().catch(() => ""))]);
    return parts.filter((p) => p !== "").map((p) => (p.endsWith("\n") ? p : `${p}\n`)).join("");
  }

  /** Serves another GET route on this port from now on. */
  serve(path: string, route: LocalRoute): void {
    this.routes.set(path, route);
  }

  /** Serves /metrics, /healthz, /readyz and the routes given to serve() on 127.0.0.1:port (0: any free port); answers the port. */
  async listen(port: number): Promise<number> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "").split("?")[0];
      const get = req.method === "GET" || req.method === "HEAD";
      if (get && path === "/readyz") {
        const r = probe(this.readiness, (reasons) => ({ ready: false, reasons: [`failed to tell readiness: ${reasons}`] }));
        answerProbe(res, r.ready, r.ready ? { ready: true } : { ready: false, reasons: r.reasons });
        return;
      }
      if (get && path === "/healthz") {
        const l = probe(this.liveness, (reasons) => ({ alive: false, reasons: [`failed to tell liveness: ${reasons}`] }));
        answerProbe(res, l.alive, l.alive ? { alive: true } : { alive: false, reasons: l.reasons });
        return;
      }
      const route = req.method === "GET" ? this.routes.get(path ?? "") : undefined;
      if (route) {
        const a = route(new URL(req.url ?? "/", "http://localhost").searchParams);
        res.writeHead(a.status, { "content-type": a.type ?? "application/json" }).end(JSON.stringify(a.body));
        return;
      }
      if (!get || path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      this.text().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`failed to render metrics: ${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(new Error(`failed to listen for metrics on 127.0.0.1:${port}: ${err.message}`)));
      server.listen(port, "127.0.0.1", resolve);
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** A probe's answer; a probe that throws reads as failing, with why. */
function probe<T>(ask: () => T, failed: (why: string) => T): T {
  try {
    return ask();
  } catch (err) {
    return failed((err as Error).message);
  }
}

/** 200 or 503 with a small JSON body; never cached (a probe reads the state now). */
function answerProbe(res: ServerResponse, ok: boolean, body: unknown): void {
  res.writeHead(ok ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(body));
}
