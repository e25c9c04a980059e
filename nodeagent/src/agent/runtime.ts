// SPDX-License-Identifier: Apache-2.0
/**
 * Puts the agent together: registration (once, saved in the state
 * directory), the kernel side (load, pin, attach to the cgroup), /metrics,
 * SVIDs, and the loop. main.ts calls it; tests call it in-process.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { cleanup, KernelDatapath, type CleanupResult } from "../loader/index.ts";
import { AgentLoop, jsonLog, type Log } from "./agent.ts";
import type { BackoffOptions } from "./backoff.ts";
import { ApiClient } from "./client.ts";
import { joinTokenOf, type AgentConfig } from "./config.ts";
import { resolveApiCa } from "./api-trust.ts";
import { EndpointSet, type Resolver } from "./endpoints.ts";
import { AgentMetrics, readVerdicts } from "./metrics.ts";
import { ensureStateDir, loadRegistration, saveRegistration, type SavedRegistration } from "./state.ts";
import { SvidManager } from "./svid.ts";
import { TransportDriver } from "./transport-driver.ts";
import { VethReconciler } from "./veths.ts";
import { installTransportRouting } from "../kernel/transport-routing.ts";
import { WorkloadApiServer } from "../workload-api/server.ts";
import { DEFAULT_FLOW_CONFIG, identitiesOf, outcomeEvents, startFlows, type RunningFlows } from "../flows/index.ts";
import type { OutcomeDrain } from "../transport/control-schema.ts";
import { PROXY_TARGETS_DIR } from "../transport/proxy-targets.ts";
import { accessEvents, findHaproxy, handOverListener, installProxyAddress, L7Driver, L7Off, ProxyTraces } from "../l7/index.ts";
import type { AccessRecord } from "../l7/access-log.ts";

export interface RuntimeOptions {
  objectDir?: string;
  waitSeconds?: number;
  backoff?: BackoffOptions;
  log?: Log;
  /** How often the SVID manager reads the tenants' bundles again (ms; its default otherwise). */
  bundleRefreshMs?: number;
  /** How API host names resolve to addresses (tests: names of their own); the system's resolver otherwise. */
  resolve?: Resolver;
  /** Base URL flow batches are POSTed to, with the node credential, instead of cfg.api (tests: a recording server). */
  flowsApi?: string;
}

export interface RunningAgent {
  registration: SavedRegistration;
  loop: AgentLoop;
  datapath: KernelDatapath;
  svids: SvidManager;
  /** The Workload API, when served (cfg.workloadApiSocket). */
  workloadApi: WorkloadApiServer | null;
  /** Flow events: collector and uploader null when off (--flows off) or when they failed to start. */
  flows: RunningFlows;
  /** The node's transport, when run (cfg.transport). */
  transport: TransportDriver | null;
  /** The node's L7 proxy, when run (cfg.l7 and an haproxy binary). */
  l7: L7Driver | null;
  metricsPort: number;
  /** Resolves when the loop ended (after stop()). */
  done: Promise<void>;
  /** Stops the loop and drops handles; pinned maps and links stay, the state serving traffic. */
  stop(): Promise<void>;
}

/** The saved registration, or a new one bought with the join token. */
export async function ensureRegistered(cfg: AgentConfig, client: ApiClient, log: Log = jsonLog): Promise<SavedRegistration> {
  ensureStateDir(cfg.stateDir);
  const saved = loadRegistration(cfg.stateDir);
  if (saved) {
    // A replica added to or removed from --api is the same API: any URL of the list will do.
    const apis = cfg.apis?.length ? cfg.apis : [cfg.api];
    if (saved.node !== cfg.name || !apis.includes(saved.api)) {
      throw new Error(
        `failed to start node ${cfg.name}: ${join(cfg.stateDir, "node.json")} holds node ${saved.node} of ${saved.api}; use that name and API, or another --state-dir`,
      );
    }
    return saved;
  }
  let joinToken: string | undefined;
  try {
    joinToken = joinTokenOf(cfg);
  } catch (err) {
    throw new Error(`failed to register node ${cfg.name}: ${(err as Error).message}`);
  }
  if (!joinToken) throw new Error(`failed to register node ${cfg.name}: no registration in ${cfg.stateDir} and no --join-token-file (WEFT_JOIN_TOKEN_FILE) or WEFT_JOIN_TOKEN`);
  if (!cfg.zone) throw new Error(`failed to register node ${cfg.name}: --zone (WEFT_ZONE) is required to register`);
  const r = await client.register({ joinToken, name: cfg.name, zone: cfg.zone });
  const registration: SavedRegistration = {
    api: cfg.api,
    node: r.node.name,
    credential: r.credential,
    registeredAt: new Date().toISOString(),
    ...(r.node.podCidr ? { podCidr: r.node.podCidr } : {}),
  };
  saveRegistration(cfg.stateDir, registration);
  log("info", "registered node", { node: registration.node, podCidr: registration.podCidr ?? null, stateDir: cfg.stateDir });
  return registration;
}

export async function startAgent(cfg: AgentConfig, options: RuntimeOptions = {}): Promise<RunningAgent> {
  const log = options.log ?? jsonLog;
  ensureStateDir(cfg.stateDir);
  const trust = await resolveApiCa(cfg);
  if (cfg.api.startsWith("https:")) log("info", "trusting the API's certificate", { ca: trust.source });
  const endpoints = apiEndpoints(cfg, trust.pem, log, options.resolve);
  const client = new ApiClient(endpoints, null);
  let registration: SavedRegistration;
  let datapath: KernelDatapath;
  try {
    registration = await ensureRegistered(cfg, client, log);
    client.setCredential(registration.credential);
    datapath = KernelDatapath.load({ pinDir: cfg.pinDir, ...(options.objectDir ? { objectDir: options.objectDir } : {}) });
    if (datapath.replacedCounterMaps.length > 0) log("warn", "replaced counter maps an agent of another ABI pinned: their counts restart", { maps: datapath.replacedCounterMaps });
  } catch (err) {
    await endpoints.close();
    throw err;
  }
  const metrics = new AgentMetrics(() => readVerdicts(datapath.maps.metrics));
  metrics.watchEndpoints(endpoints);
  let svids: SvidManager | null = null;
  let workloadApi: WorkloadApiServer | null = null;
  let flows: RunningFlows | null = null;
  let transport: TransportDriver | null = null;
  let l7: L7Driver | null = null;
  let traces: ProxyTraces | null = null;
  try {
    // The configuration first: programs swapped in by attachCgroup rewrite nothing until it exists.
    const sockCfg = datapath.configureSockLb(cfg.lbHostTraffic);
    metrics.sockConfig(sockCfg.lbHostTraffic);
    datapath.attachCgroup(cfg.cgroup);
    // Before the veths get this agent's tc programs: they leave an L7 frontend's new connections to this lookup.
    datapath.attachNetns();
    const uplink = configureUplink(datapath, cfg);
    const metricsPort = await metrics.listen(cfg.metricsPort);
    flows = startFlowsOrLog(cfg, options, datapath, registration, client, metrics, log);
    svids = new SvidManager({
      stateDir: cfg.stateDir,
      client,
      files: cfg.svidFiles ?? false,
      ...(options.bundleRefreshMs !== undefined ? { bundleRefreshMs: options.bundleRefreshMs } : {}),
      onError: (e) => log("error", e),
    });
    if (cfg.workloadApiSocket) {
      workloadApi = new WorkloadApiServer({ socketPath: cfg.workloadApiSocket, svids, client, log });
      await workloadApi.listen();
    }
    // Flows the agent makes itself (the transport's, the proxy's) take identities from the ipcache the loop applied.
    const identify = identitiesOf(() => loop.applied?.maps.ipcache ?? null);
    const l7Binary = cfg.l7 ? findHaproxy(cfg.haproxy) : null;
    // The transport's and the proxy's steered packets both reach the local stack by it; installed by whichever runs, never removed.
    if (cfg.transport || (l7Binary && "binary" in l7Binary)) installTransportRouting();
    if (cfg.transport) {
      const address = cfg.transportAddress ?? firstIpv4(uplink ?? (cfg.uplink === "auto" ? defaultRouteDevice() : cfg.uplink));
      const node = registration.node;
      const collector = flows.collector;
      // The transport's stream outcomes as flows (hook "transport").
      const outcomes = collector ? (d: OutcomeDrain) => void collector.handleEvents(outcomeEvents(d.events, identify), d.lost) : undefined;
      transport = new TransportDriver({
        address,
        document: (etag) => client.nodeTransport(node, etag),
        svids,
        registry: metrics.registry,
        // The same directory the proxy's renderer names its transport servers in (l7/render.ts).
        proxy: { dir: join(cfg.stateDir, PROXY_TARGETS_DIR), client },
        log,
        ...(outcomes ? { outcomes } : {}),
      });
      metrics.append(() => transport!.metricsText());
      transport.start();
    }
    let l7Off: L7Off | null = null;
    if (l7Binary && "binary" in l7Binary) {
      const node = registration.node;
      const collector = flows.collector;
      // The proxy's access records as flows (hook "l7") and as spans (--otlp-endpoint).
      const flowRecords = collector ? (batch: AccessRecord[], lost: number) => void collector.handleEvents(accessEvents(batch, identify), lost) : undefined;
      traces = cfg.otlpEndpoint ? new ProxyTraces({ endpoint: cfg.otlpEndpoint, node, registry: metrics.registry, onError: (error) => log("warn", "failed to export the L7 proxy's spans", { error }) }) : null;
      const spanRecords = traces?.records;
      const records =
        flowRecords || spanRecords
          ? (batch: AccessRecord[], lost: number) => {
              flowRecords?.(batch, lost);
              spanRecords?.(batch, lost);
            }
          : undefined;
      l7 = new L7Driver({
        binary: l7Binary.binary,
        stateDir: cfg.stateDir,
        document: (etag) => client.nodeL7(node, etag),
        registry: metrics.registry,
        proxyAddress: (address) => {
          const { removed } = installProxyAddress(address, cfg.stateDir);
          if (removed) log("info", "the proxy address moved", { from: removed, to: address });
        },
        ...(records ? { records } : {}),
        listener: (pid) => {
          if (handOverListener(datapath, pid) === "replaced") log("info", "the L7 proxy's listener is in the kernel's socket lookup", { worker: pid });
        },
        ...(cfg.l7Threads !== undefined ? { threads: cfg.l7Threads } : {}),
        log,
      });
      l7.start();
      // bpf/README [R17]: the steering checks the caller's veth in local_veth, which host routing off keeps empty.
      if (!cfg.hostRouting) log("warn", "the L7 proxy runs with --host-routing off: the kernel refuses every connection to an L7 service (unknown-endpoint)");
    } else {
      l7Off = new L7Off(l7Binary ? `${l7Binary.missing}: connections to L7 services drop as proxy-down` : "--l7 off: connections to L7 services drop as proxy-down");
      if (cfg.l7) log("warn", "the L7 proxy is off", { reason: l7Off.status().detail });
    }
    const loop = new AgentLoop({
      node: registration.node,
      client,
      maps: datapath.maps,
      metrics,
      veths: new VethReconciler(datapath),
      localVeths: datapath.maps.local_veth,
      hostRouting: cfg.hostRouting,
      podCidr: registration.podCidr ?? null,
      onPodCidr: (podCidr) => {
        registration.podCidr = podCidr;
        saveRegistration(cfg.stateDir, registration);
      },
      svids,
      ...(transport ? { transport } : {}),
      l7: l7 ?? l7Off!,
      statusIntervalMs: cfg.statusInterval * 1000,
      ...(options.waitSeconds !== undefined ? { waitSeconds: options.waitSeconds } : {}),
      ...(options.backoff ? { backoff: options.backoff } : {}),
      log,
    });
    metrics.serve("/revisions", () => ({ status: 200, body: { revisions: loop.revisions } }));
    metrics.readyWhen(() => loop.readiness());
    metrics.aliveWhen(() => loop.liveness());
    const abort = new AbortController();
    const done = loop.run(abort.signal);
    log("info", "agent started", { node: registration.node, podCidr: registration.podCidr ?? "unknown (checked against GET /v1/nodes/{node})", pinDir: cfg.pinDir, cgroup: cfg.cgroup, lbHostTraffic: cfg.lbHostTraffic, uplink, transport: transport?.status().endpoint ?? "off", l7: l7 ? "on" : "off", otlpEndpoint: traces ? cfg.otlpEndpoint : "off", statusInterval: cfg.statusInterval, workloadApiSocket: cfg.workloadApiSocket ?? null, svidFiles: cfg.svidFiles ?? false, hostNetnsCookie: String(sockCfg.hostNetnsCookie), metrics: `127.0.0.1:${metricsPort}`, flows: flows.collector ? (cfg.flows ?? DEFAULT_FLOW_CONFIG) : "off" });
    const s = svids;
    const wapi = workloadApi;
    const f = flows;
    const t = transport;
    const p = l7;
    const spans = traces;
    let stopped: Promise<void> | null = null;
    return {
      registration,
      loop,
      datapath,
      svids: s,
      workloadApi: wapi,
      flows: f,
      transport: t,
      l7: p,
      metricsPort,
      done,
      stop: () =>
        (stopped ??= (async () => {
          abort.abort();
          await done;
          await wapi?.close();
          // The transport and the proxy first: their last outcomes and records reach flows before the final batch is sealed.
          // The proxy ends with the agent, as the transport does: L7 services drop as proxy-down until an agent runs it again.
          await t?.stop();
          await p?.stop();
          await spans?.close();
          await f.stop();
          s.close();
          await metrics.close();
          datapath.close();
          await endpoints.close();
        })()),
    };
  } catch (err) {
    await flows?.stop();
    await transport?.stop();
    await l7?.stop();
    await traces?.close();
    await workloadApi?.close().catch(() => undefined);
    svids?.close();
    await metrics.close();
    datapath.close();
    await endpoints.close();
    throw err;
  }
}

/**
 * Flows start after the datapath and /metrics; a failure to start them (no
 * ring buffer, a bad write) is logged and leaves flows off: the datapath
 * loop never depends on them.
 */
function startFlowsOrLog(cfg: AgentConfig, options: RuntimeOptions, datapath: KernelDatapath, registration: SavedRegistration, api: ApiClient, metrics: AgentMetrics, log: Log): RunningFlows {
  const config = cfg.flows ?? DEFAULT_FLOW_CONFIG;
  const client = options.flowsApi ? new ApiClient(options.flowsApi, registration.credential) : api;
  try {
    return startFlows({ config, datapath, node: registration.node, client, metrics, log, ...(options.backoff ? { backoff: options.backoff } : {}) });
  } catch (err) {
    log("error", "failed to start flows; the agent runs without them", { error: (err as Error).message });
    return { collector: null, uploader: null, stop: async () => undefined };
  }
}

/** The API endpoints of --api, trusting the API's CA, their switches logged (and counted on /metrics by the set). */
function apiEndpoints(cfg: AgentConfig, caPem: string | null, log: Log, resolve?: Resolver): EndpointSet {
  return new EndpointSet(cfg.apis?.length ? cfg.apis : [cfg.api], {
    caPem,
    ...(resolve ? { resolve } : {}),
    onSwitch: (from, to, reason) => log("warn", "API endpoint failed; moving to the next", { from: from.label, to: to.label, reason }),
  });
}

/**
 * The cross-node fast path's receiving side (bpf/README [R12]): the uplink
 * program on the device --uplink names (or, with "auto", the default
 * route's), only with host routing on; otherwise any uplink link an earlier
 * agent pinned is detached. Returns the interface it is on, or null.
 */
export function configureUplink(datapath: Pick<KernelDatapath, "attachUplink" | "detachUplinks">, cfg: Pick<AgentConfig, "uplink" | "hostRouting">): string | null {
  if (!cfg.uplink || !cfg.hostRouting) {
    datapath.detachUplinks();
    return null;
  }
  const ifname = cfg.uplink === "auto" ? defaultRouteDevice() : cfg.uplink;
  datapath.attachUplink(ifname);
  return ifname;
}

/** The device of the default IPv4 route in this network namespace (over netlink, as the veths are found). */
function defaultRouteDevice(): string {
  const routes = JSON.parse(execFileSync("ip", ["-j", "-4", "route", "show", "default"], { encoding: "utf8" }) || "[]") as { dev?: string }[];
  const devs = [...new Set(routes.map((r) => r.dev).filter((d): d is string => !!d))];
  if (devs.length !== 1) throw new Error(`failed to find the uplink: --uplink auto needs exactly one device with a default route, found ${devs.length ? devs.join(", ") : "none"}; name it with --uplink DEV`);
  return devs[0]!;
}

/** The first IPv4 address of `device` (the transport's default address: the uplink's). */
function firstIpv4(device: string | null | undefined): string {
  if (!device) throw new Error("failed to start the transport: no --transport-address and no --uplink to take the address from");
  const links = JSON.parse(execFileSync("ip", ["-j", "-4", "addr", "show", "dev", device], { encoding: "utf8" }) || "[]") as { addr_info?: { local?: string }[] }[];
  const address = links.flatMap((l) => l.addr_info ?? []).find((a) => a.local)?.local;
  if (!address) throw new Error(`failed to find the transport's address: device ${device} has no IPv4 address; name one with --transport-address`);
  return address;
}

/** `agent cleanup`: every link detached, every pin removed; the state directory stays (it holds the credential). */
export function uninstall(cfg: AgentConfig): CleanupResult {
  return cleanup(cfg.pinDir);
}
