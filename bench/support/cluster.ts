/** Every agent's extra arguments: the caller's, and the uplink unless the caller named one. */
function agentArgs(opts: ClusterOptions, hostAddress: string): string[] {
  const given = typeof opts.agentArgs === "function" ? opts.agentArgs({ hostAddress }) : (opts.agentArgs ?? []);
  const named = given.some((a) => a === "--uplink" || a.startsWith("--uplink="));
  return opts.uplink === false || named ? given : ["--uplink", NODE_UPLINK, ...given];
}

/**
 * A simulated cluster on one machine, for tests and benchmarks alike: the
 * real API as its own process and one real agent process per node, each node
 * a network namespace, joined by a bridge.
 *
 *   host ── wc<pid>x<n> ┐                  (198.18.F.254: the API listens here)
 *                    │  fabric namespace: bridge br0, 198.18.F.0/24 (F: the first free of 244-255)
 *   node-a ── fab0 ──┤  198.18.F.1   pod block 198.19.0.0/24 (from the API)
 *   node-b ── fab0 ──┤  198.18.F.2   pod block 198.19.1.0/24
 *   node-c ── fab0 ──┘  198.18.F.3   pod block 198.19.2.0/24
 *
 * Each node namespace forwards (ip_forward, in that namespace only), routes
 * every other node's pod block via that node's fabric address, and has no
 * other route: nothing leaves the simulation. A workload is a namespace whose
 * eth0 is a veth into its node's namespace (the node end named w-<workload>),
 * with its /32 address from the node's block, a /32 route to it in the node,
 * and inside it a default route via the node's fabric address (on-link: the
 * node end has no address of its own, the node answers ARP for its address).
 *
 * Each agent runs under `ip netns exec <node>`, which remounts /sys: so its
 * pins live on a bpffs mounted at <root>/bpf, and its cgroup under a bind
 * mount of this cluster's own cgroup subtree at <root>/cgroup (never the
 * cgroup root: a recursive removal through that mount could only reach this
 * cluster's cgroups). <root> is /run/wcluster-<pid>-<n>, n counting clusters in this process. Processes in a
 * workload (exec, start) run in its namespace and in its node's cgroup, where
 * the agent's socket load balancer sees their connect().
 *
 * Addresses only from 198.18.0.0/15. Every object is made on a BenchCleanup,
 * tracked for its janitor (so a killed run is cleaned up as well), and
 * removed by cleanup() even when a step failed half-way.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { formatIPv4, parseIPv4 } from "@weft/codec";
import { cleanup as uninstallPins } from "../../nodeagent/src/loader/index.ts";
import { CGROUP2_ROOT, cgroupUnavailableReason, removeCgroup } from "../../test/support/kernel.ts";
import { BenchCleanup } from "./cleanup.ts";
import { inNetns, ipBatch, makeNetns, startDaemon, type Daemon } from "./netns.ts";
import { benchTenant, revisionOf, startAgentProcess, startWeftApi, waitConverged, type Answer, type AgentProcess, type WeftApi } from "./weft.ts";

export interface ClusterNodeSpec {
  name: string;
  zone: string;
}

/** The cluster: two nodes in zone z1 and one in z2 (the suites and benches that need three). */
export const THREE_NODES: readonly ClusterNodeSpec[] = [
  { name: "node-a", zone: "z1" },
  { name: "node-b", zone: "z1" },
  { name: "node-c", zone: "z2" },
];

export interface ClusterOptions {
  /** At least one; names are DNS labels of at most 13 characters (they name veths). */
  nodes: readonly ClusterNodeSpec[];
  api?: {
    /** Default true: embedded PGlite in a temporary directory, even when DATABASE_URL is set. */
    embedded?: boolean;
    /** Default 198.18.128.0/24 (VIPs are never routed: the socket LB translates them in connect()). */
    serviceCidr?: string;
    /** Default 198.19.0.0/16, cut into /24 blocks, one per node in order of registration. */
    podCidr?: string;
    podCidrNodePrefix?: number;
    /** More of the API process's environment (WEFT_NODE_GRACE_SECONDS, say). */
    env?: Record<string, string>;
  };
  /**
   * More arguments for every agent, on each start (`--status-interval 1`, say);
   * a function is given the host's address on the fabric, which agents reach
   * (an OTLP receiver of the test listens there, say).
   */
  agentArgs?: string[] | ((fabric: { hostAddress: string }) => string[]);
  /**
   * Default true: each agent gets `--uplink fab0`, its node's end of the
   * fabric (inside the node's namespace, never the machine's own), so packets
   * for a node's workloads skip its forwarding (bpf/README [R12]); false: no
   * uplink program, every packet forwarded by the nodes. Ignored when
   * agentArgs name an --uplink themselves.
   */
  uplink?: boolean;
  /** The fabric's /24; default: the first of 198.18.244.0/24 … 198.18.255.0/24 that no host route or address touches. */
  fabric?: string;
  /** The agents' /metrics port inside each node's namespace (default 9469: free in a fresh namespace). */
  metricsPort?: number;
  /** A bench's own stack (withCleanup); default: the cluster's own, undone by cleanup(). */
  cleanup?: BenchCleanup;
}

export interface ClusterNode {
  name: string;
  zone: string;
  netns: string;
  /** The node's address on the fabric. */
  address: string;
  /** Its block of the pod CIDR, as the API assigned it at registration. */
  podCidr: string;
  /** The cgroup as this process sees it (under the cgroup v2 mount) and as the agent does (under the bind mount). */
  cgroup: string;
  agentCgroup: string;
  pinDir: string;
  stateDir: string;
  metricsPort: number;
  /** The running agent process; null between stopAgent and startAgent. */
  agent: AgentProcess | null;
}

export interface Workload {
  name: string;
  node: string;
  netns: string;
  address: string;
  /** The node-side end of its veth, in the node's namespace. */
  hostIf: string;
}

/** A tenant with an admin token, and REST calls under it that must answer 2xx. */
export interface ClusterTenant {
  tenant: string;
  auth: Record<string, string>;
  /** PUT /v1/tenants/{tenant}{path}; answers the revision the write committed at (its ETag). */
  put(path: string, body: unknown): Promise<number>;
  call(method: string, path: string, body?: unknown): Promise<Answer>;
}

/** One probe's tally (bench/support/cluster-tcp.mjs). */
export interface ProbeResult {
  servers: Record<string, number>;
  peers: Record<string, number>;
  failures: Record<string, number>;
  ms: number;
}

export interface Cluster {
  id: string;
  /** <root>: the mounts and the agents' state directories. */
  root: string;
  api: WeftApi;
  fabric: { netns: string; cidr: string; hostAddress: string; hostIf: string };
  nodes: Record<string, ClusterNode>;
  workloads: Record<string, Workload>;
  /** A tenant (named wbench-<label>-<hex>) with an admin token. */
  tenant(label: string): Promise<ClusterTenant>;
  /** A workload namespace behind a veth in `node`; its address defaults to the next free one of the node's block from .10. */
  addWorkload(node: string, spec: { name: string; address?: string }): Workload;
  /** Runs argv to its end inside the workload's namespace and its node's cgroup; rejects on a non-zero exit or after timeoutMs (60 s). */
  exec(workload: string, argv: string[], opts?: { timeoutMs?: number }): Promise<{ stdout: string; stderr: string }>;
  /** A long-running process there, stopped on cleanup; resolves once `ready(output)` holds. */
  start(workload: string, what: string, argv: string[], opts?: { ready?: (output: string) => boolean }): Promise<Daemon>;
  /** A TCP server in the workload answering {"server": name, "peer": address} to every connection (cluster-tcp.mjs serve). */
  serve(workload: string, port: number, name?: string): Promise<Daemon>;
  /** `count` new TCP connections from the workload to host:port (cluster-tcp.mjs probe). */
  probe(workload: string, host: string, port: number, count: number, opts?: { concurrency?: number; timeoutMs?: number }): Promise<ProbeResult>;
  /** Signals the node's agent and waits for it to exit (SIGTERM: a clean stop; SIGKILL: a crash). Pins and links stay. */
  stopAgent(node: string, signal?: NodeJS.Signals): Promise<void>;
  /** Starts the node's agent again on the same state directory, pins and cgroup: no join token, no flush. */
  startAgent(node: string): Promise<void>;
  /** The agent's /metrics text (served on 127.0.0.1 of the node's namespace). */
  agentMetrics(node: string): Promise<string>;
  /**
   * Waits until every node (or those named) shows converged in GET /v1/nodes/{node}
   * (60 s bound). The API computes a node's desired state after every write committed
   * before the read, so this holds only once each node applied every earlier write;
   * a node the writes did not touch keeps its older desired revision and is converged as it is.
   */
  converged(opts?: { nodes?: string[]; boundMs?: number }): Promise<void>;
  /** Removes everything: processes, pins and links, namespaces, veths, cgroups, mounts, directories. Throws with every failed step. */
  cleanup(): Promise<void>;
}

/** Why a cluster cannot start here (root, bpf, cgroup v2, iproute2, curl), or null. */
export function clusterUnavailableReason(): string | null {
  const reason = cgroupUnavailableReason();
  if (reason !== null) return reason;
  for (const [cmd, arg] of [["ip", "-V"], ["curl", "--version"], ["mount", "--version"]] as const) {
    try {
      execFileSync(cmd, [arg], { stdio: "ignore" });
    } catch {
      return `${cmd} is not installed (iproute2, curl, mount)`;
    }
  }
  return null;
}

const ip = (...args: string[]): string => execFileSync("ip", args, { encoding: "utf8" });
const inNs = (ns: string, ...argv: string[]): string => execFileSync("ip", ["netns", "exec", ns, ...argv], { encoding: "utf8" });

interface Prefix {
  addr: number;
  len: number;
}
const prefixOf = (cidr: string): Prefix => {
  const [a, l] = cidr.split("/") as [string, string?];
  return { addr: parseIPv4(a), len: l === undefined ? 32 : Number(l) };
};
const overlaps = (a: Prefix, b: Prefix): boolean => {
  const len = Math.min(a.len, b.len);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return ((a.addr & mask) >>> 0) === ((b.addr & mask) >>> 0);
};
const hostAt = (p: Prefix, n: number): string => formatIPv4(p.addr + n);
const SIMULATION = prefixOf("198.18.0.0/15");
const inSimulation = (cidr: string): boolean => {
  const p = prefixOf(cidr);
  return p.len >= SIMULATION.len && overlaps(p, SIMULATION);
};

/** The first 198.18.N.0/24 (N from 244) that no route or address of the host touches: clusters and tests side by side. */
function freeFabric(): string {
  const routes = (JSON.parse(ip("-4", "-j", "route", "show", "table", "all")) as { dst?: string }[])
    .map((r) => r.dst)
    .filter((d): d is string => d !== undefined && d !== "default" && /^\d/.test(d));
  const addrs = (JSON.parse(ip("-4", "-j", "addr", "show")) as { addr_info?: { local: string; prefixlen: number }[] }[]).flatMap((l) =>
    (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`),
  );
  const taken = [...routes, ...addrs].map(prefixOf);
  for (let n = 244; n <= 255; n++) {
    const candidate = `198.18.${n}.0/24`;
    if (!taken.some((t) => overlaps(t, prefixOf(candidate)))) return candidate;
  }
  throw new Error("failed to pick a fabric: every 198.18.244-255.0/24 is in use on this host");
}

/** Mount points as this process sees them (field 5 of /proc/self/mountinfo). */
const mountPoints = (): string[] =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ")[4]!);

const PREFIX = "wcluster";
/** Each node's end of the fabric, in its namespace: the agents' --uplink unless ClusterOptions.uplink is false. */
export const NODE_UPLINK = "fab0";
let clusters = 0;

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  if (opts.nodes.length === 0) throw new Error("startCluster: at least one node");
  const seq = clusters++;
  const owned = opts.cleanup === undefined;
  const cleanup = opts.cleanup ?? new BenchCleanup(`${PREFIX}-manifest-${process.pid}-${seq}`);
  try {
    return await build(cleanup, seq, opts, owned);
  } catch (err) {
    if (owned) {
      const errors = await cleanup.run();
      if (errors.length) (err as Error).message += `\ncleanup after the failure: ${errors.join("; ")}`;
    }
    throw err;
  }
}

/** Names: <root> /run/wcluster-<pid>-<seq>, namespaces wcluster-<pid>-<seq>-<what>, cgroups <cgroup v2>/wcluster-<pid>-<seq>/<node>. */
async function build(cleanup: BenchCleanup, seq: number, opts: ClusterOptions, owned: boolean): Promise<Cluster> {
  const id = `${process.pid}-${seq}`;
  for (const n of opts.nodes) {
    if (!/^[a-z0-9]([-a-z0-9]{0,11}[a-z0-9])?$/.test(n.name)) throw new Error(`startCluster: node name "${n.name}" must be a DNS label of at most 13 characters`);
  }
  if (new Set(opts.nodes.map((n) => n.name)).size !== opts.nodes.length) throw new Error("startCluster: node names must differ");
  const fabricCidr = opts.fabric ?? freeFabric();
  const fabric = prefixOf(fabricCidr);
  if (fabric.len !== 24 || !inSimulation(fabricCidr)) throw new Error(`startCluster: the fabric ${fabricCidr} must be a /24 inside 198.18.0.0/15`);
  if (opts.nodes.length > 250) throw new Error("startCluster: at most 250 nodes on one fabric");
  const podCidr = opts.api?.podCidr ?? "198.19.0.0/16";
  const serviceCidr = opts.api?.serviceCidr ?? "198.18.128.0/24";
  for (const [what, cidr] of [["pod CIDR", podCidr], ["service CIDR", serviceCidr]] as const) {
    if (!inSimulation(cidr)) throw new Error(`startCluster: the ${what} ${cidr} must lie inside 198.18.0.0/15`);
    if (overlaps(prefixOf(cidr), fabric)) throw new Error(`startCluster: the ${what} ${cidr} overlaps the fabric ${fabricCidr}`);
  }
  const metricsPort = opts.metricsPort ?? 9469;

  // <root>, then the mounts in it: bpffs for the pins, this cluster's cgroup subtree for the agents' cgroups.
  const root = `/run/${PREFIX}-${id}`;
  mkdirSync(root, { mode: 0o700 });
  cleanup.track("dirs", root);
  cleanup.add(`remove ${root}`, () => {
    if (!existsSync(root)) return;
    const mounted = mountPoints().filter((p) => p === root || p.startsWith(`${root}/`));
    if (mounted.length) throw new Error(`left ${root} in place: still mounted ${mounted.join(", ")}`);
    rmSync(root, { recursive: true, force: true });
  });
  const bpffs = join(root, "bpf");
  mount(cleanup, bpffs, ["-t", "bpf", "bpf", bpffs]);
  const cgroupTree = join(CGROUP2_ROOT, `${PREFIX}-${id}`);
  mkdirSync(cgroupTree);
  cleanup.track("cgroups", cgroupTree);
  cleanup.add(`remove cgroup ${cgroupTree}`, () => removeCgroup(cgroupTree));
  const cgroupMount = join(root, "cgroup");
  mount(cleanup, cgroupMount, ["--bind", cgroupTree, cgroupMount]);

  // The fabric: a bridge in its own namespace, and a veth from the host onto it for the API.
  const fabricNs = makeNetns(cleanup, `${seq}-fabric`, PREFIX);
  const hostIf = `wc${process.pid}x${seq}`.slice(0, 15);
  const hostAddress = hostAt(fabric, 254);
  ipBatch(["link add br0 type bridge", "link set br0 up"], fabricNs);
  ip("link", "add", hostIf, "type", "veth", "peer", "name", "host0", "netns", fabricNs);
  cleanup.track("veths", hostIf);
  cleanup.add(`delete veth ${hostIf}`, () => void (existsSync(`/sys/class/net/${hostIf}`) && ip("link", "del", hostIf)));
  ipBatch([`addr add ${hostAddress}/24 dev ${hostIf}`, `link set ${hostIf} up`]);
  ipBatch(["link set host0 master br0", "link set host0 up"], fabricNs);

  const api = await startWeftApi(cleanup, {
    serviceCidr,
    podCidr,
    podCidrNodePrefix: opts.api?.podCidrNodePrefix ?? 24,
    host: hostAddress,
    embedded: opts.api?.embedded ?? true,
    ...(opts.api?.env ? { env: opts.api.env } : {}),
  });

  // Node namespaces on the fabric, then one agent each: it registers, and the API assigns its pod block.
  const nodes: Record<string, ClusterNode> = {};
  for (const [i, spec] of opts.nodes.entries()) {
    const ns = makeNetns(cleanup, `${seq}-${spec.name}`, PREFIX);
    const address = hostAt(fabric, i + 1);
    ip("-n", ns, "link", "add", NODE_UPLINK, "type", "veth", "peer", "name", `n-${spec.name}`, "netns", fabricNs);
    ipBatch([`addr add ${address}/24 dev ${NODE_UPLINK}`, `link set ${NODE_UPLINK} up`], ns);
    ipBatch([`link set n-${spec.name} master br0`, `link set n-${spec.name} up`], fabricNs);
    inNs(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
    const cgroup = join(cgroupTree, spec.name);
    mkdirSync(cgroup);
    cleanup.track("cgroups", cgroup);
    cleanup.add(`remove cgroup ${cgroup}`, () => removeCgroup(cgroup));
    const pinDir = join(bpffs, spec.name);
    cleanup.track("pinDirs", pinDir);
    cleanup.add(`remove pins in ${pinDir}`, () => {
      if (!existsSync(pinDir)) return;
      uninstallPins(pinDir);
      rmSync(pinDir, { recursive: true, force: true });
    });
    const stateDir = join(root, "state", spec.name);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    nodes[spec.name] = { name: spec.name, zone: spec.zone, netns: ns, address, podCidr: "", cgroup, agentCgroup: join(cgroupMount, spec.name), pinDir, stateDir, metricsPort, agent: null };
  }
  const nodeOf = (name: string): ClusterNode => {
    const n = nodes[name];
    if (!n) throw new Error(`no node ${name} in this cluster`);
    return n;
  };
  // The first start registers with a join token fixing name and zone; later ones find node.json in the state dir.
  const startAgent = async (name: string): Promise<void> => {
    const n = nodeOf(name);
    if (n.agent && n.agent.child.exitCode === null && n.agent.child.signalCode === null) throw new Error(`startAgent: the agent of ${name} is running`);
    n.agent = await startAgentProcess(cleanup, api, { node: n.name, zone: n.zone, netns: n.netns, cgroup: n.agentCgroup, pinDir: n.pinDir, stateDir: n.stateDir, metricsPort: n.metricsPort, agentArgs: agentArgs(opts, hostAddress) });
  };
  for (const spec of opts.nodes) await startAgent(spec.name);
  for (const n of Object.values(nodes)) {
    const shown = JSON.parse((await api.call("GET", `/v1/nodes/${n.name}`, api.operator)).body) as { podCidr: string | null };
    if (!shown.podCidr || !inSimulation(shown.podCidr)) throw new Error(`node ${n.name} got pod block ${shown.podCidr}, not one inside 198.18.0.0/15`);
    n.podCidr = shown.podCidr;
  }
  // Each node reaches every other node's pod block through that node, and nothing else.
  for (const n of Object.values(nodes)) {
    ipBatch(Object.values(nodes).filter((o) => o !== n).map((o) => `route add ${o.podCidr} via ${o.address} dev ${NODE_UPLINK}`), n.netns);
  }

  const workloads: Record<string, Workload> = {};
  const nextHost = new Map<string, number>();
  const workloadOf = (name: string): Workload => {
    const w = workloads[name];
    if (!w) throw new Error(`no workload ${name} in this cluster`);
    return w;
  };
  const addWorkload = (node: string, spec: { name: string; address?: string }): Workload => {
    const n = nodeOf(node);
    if (workloads[spec.name]) throw new Error(`addWorkload: ${spec.name} exists`);
    const hostIf = `w-${spec.name}`;
    if (hostIf.length > 15 || !/^[a-z0-9-]+$/.test(spec.name)) throw new Error(`addWorkload: "${spec.name}" must be at most 13 characters of a-z 0-9 -`);
    const block = prefixOf(n.podCidr);
    let address = spec.address;
    if (address === undefined) {
      const k = nextHost.get(node) ?? 10;
      nextHost.set(node, k + 1);
      address = hostAt(block, k);
    }
    if (!overlaps(prefixOf(address), block)) throw new Error(`addWorkload: ${address} is outside ${node}'s block ${n.podCidr}`);
    const ns = makeNetns(cleanup, `${seq}-w-${spec.name}`, PREFIX);
    ip("-n", n.netns, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns);
    ipBatch([`link set ${hostIf} up`, `route add ${address}/32 dev ${hostIf}`], n.netns);
    ipBatch([`addr add ${address}/32 dev eth0`, "link set eth0 up", `route add ${n.address} dev eth0 scope link`, `route add default via ${n.address} dev eth0`], ns);
    const w = { name: spec.name, node, netns: ns, address, hostIf };
    workloads[spec.name] = w;
    return w;
  };

  const argvIn = (workload: string, argv: string[]): string[] => {
    const w = workloadOf(workload);
    return [...inNetns(w.netns, nodeOf(w.node).cgroup), ...argv];
  };
  const exec = (workload: string, argv: string[], o: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> => {
    const full = argvIn(workload, argv);
    return new Promise((resolve, reject) =>
      execFile(full[0]!, full.slice(1), { timeout: o.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
        err ? reject(new Error(`failed to run ${argv.join(" ")} in ${workload}: ${stderr || err.message}`)) : resolve({ stdout, stderr }),
      ),
    );
  };
  const start = (workload: string, what: string, argv: string[], o: { ready?: (output: string) => boolean } = {}) =>
    startDaemon(cleanup, `${what} in ${workload}`, argvIn(workload, argv), o.ready ? { ready: o.ready } : {});
  const TCP = new URL("./cluster-tcp.mjs", import.meta.url).pathname;

  const stopAgent = async (name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> => {
    const n = nodeOf(name);
    const agent = n.agent;
    if (!agent) return;
    n.agent = null;
    const { child } = agent;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };

  return {
    id,
    root,
    api,
    fabric: { netns: fabricNs, cidr: fabricCidr, hostAddress, hostIf },
    nodes,
    workloads,
    tenant: async (label) => {
      const { tenant, auth } = await benchTenant(cleanup, api, label);
      const call = (method: string, path: string, body?: unknown) => api.call(method, `/v1/tenants/${tenant}${path}`, auth, body);
      return { tenant, auth, call, put: async (path, body) => revisionOf(await call("PUT", path, body)) };
    },
    addWorkload,
    exec,
    start,
    serve: (workload, port, name = workload) =>
      start(workload, `TCP server ${name}:${port}`, [process.execPath, TCP, "serve", name, String(port)], { ready: (out) => out.includes("listening") }),
    probe: async (workload, host, port, count, o = {}) => {
      const concurrency = o.concurrency ?? 1;
      const timeoutMs = o.timeoutMs ?? 1_000;
      const bound = 30_000 + Math.ceil(count / concurrency) * (timeoutMs + 200);
      const { stdout } = await exec(workload, [process.execPath, TCP, "probe", host, String(port), String(count), String(concurrency), String(timeoutMs)], { timeoutMs: bound });
      return JSON.parse(stdout) as ProbeResult;
    },
    stopAgent,
    startAgent,
    agentMetrics: async (name) => {
      const n = nodeOf(name);
      return inNs(n.netns, "curl", "-sSf", "--max-time", "10", `http://127.0.0.1:${n.metricsPort}/metrics`);
    },
    converged: async (o = {}) => {
      const deadline = performance.now() + (o.boundMs ?? 60_000);
      for (const name of o.nodes ?? Object.keys(nodes)) await waitConverged(api, nodeOf(name).name, 0, Math.max(0, deadline - performance.now()));
    },
    cleanup: async () => {
      if (!owned) throw new Error("cleanup: this cluster is on the caller's cleanup stack; run that instead");
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cluster cleanup failed: ${errors.join("; ")}`);
    },
  };
}

/** Mounts (mount argv) at `target`, made for it; unmounted and its directory removed on cleanup. */
function mount(cleanup: BenchCleanup, target: string, args: string[]): void {
  mkdirSync(target, { mode: 0o700 });
  cleanup.track("mounts", target);
  cleanup.add(`unmount ${target}`, () => {
    if (mountPoints().includes(target)) execFileSync("umount", [target]);
    if (existsSync(target)) rmdirSync(target);
  });
  execFileSync("mount", args);
}

/** weft_datapath_packets_total from an agent's /metrics text, as "hook/reason" -> packets. */
export function datapathPackets(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metrics.matchAll(/^weft_datapath_packets_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out[`${labels.hook}/${labels.reason}`] = Number(m[2]);
  }
  return out;
}
