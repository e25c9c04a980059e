/**
 * Propagation benchmark, one command (as root):
 *   npm run bench:propagation                 one node: the API and one agent, on this host
 *   npm run bench:propagation -- --nodes 3    a simulated cluster of 3 nodes (bench/support/cluster.ts)
 *
 * REST write -> kernel maps changed. The real API in its own process
 * (one node: Postgres when DATABASE_URL is set, else embedded PGlite; a
 * cluster: embedded PGlite always), the real agent process
 * (`nodeagent/src/main.ts`) on each node. The writes alternate between a
 * policy flip (allow <-> deny: the policy map) and a service weight change
 * (3:1 <-> 1:3: the lb_slot map). Each write reaches every node: the policy's
 * subject, identity b, has a workload on every node (a node holds the policy
 * entries of its own workloads' identities), and every node holds the
 * service tables of the tenants it hosts.
 *
 *   one node:  the agent with a cgroup, pin directory and state directory of
 *              the bench's own; workloads a-1, b-1, b-2 behind veths in
 *              wbench-* namespaces (the agent puts its tc programs on them).
 *   --nodes N: node-a … on a fabric, each its agent under `ip netns exec`;
 *              a-1 on node-a, b-K on the K-th node. The pins are on a bpffs
 *              at /run/wcluster-<pid>-0/bpf/<node>, read from the host.
 * No traffic is sent.
 *
 * Each write is timed from its REST response to the moment the pinned kernel
 * map holds the new entries, on each node, read by this process through the
 * agent's own libbpf binding (nodeagent/src/kernel) every millisecond, 3 s at
 * most per write; the write's figure is the last node's (max over nodes). The
 * expected bytes of each node's map are the ones its agent wrote for the same
 * configuration during warm-up.
 *
 * Two pacings: 100 writes "at rest" (each after every agent has reported the
 * previous one, so each is parked in its long poll: nodes where writes come
 * seconds apart; the goal's figure), then 50 "back to back" (the next write
 * as soon as every kernel changed, while the agents still do their
 * post-apply work: workload list, tc attachments, SVIDs, status report).
 *
 * Baselines in the same run: the API's own write latency (the PUT's round
 * trip) and the long-poll wake-up latency: per node, a bare HTTP client
 * holding GET /v1/nodes/{node}/datapath?since=REV&wait=30 with that node's
 * credential, exactly as its agent polls, timed to its answer. What the
 * agents add is the kernel time minus the wake-up time. Goal (issues 6 and
 * 15): p99 < 250 ms.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { ChildProcess } from "node:child_process";
import { maps as mapSpecs } from "@weft/codec";
import { closeFd, openPinnedMap, type BpfMap } from "../../nodeagent/src/kernel/index.ts";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { clusterUnavailableReason, startCluster } from "../support/cluster.ts";
import { withCleanup, type BenchCleanup } from "../support/cleanup.ts";
import { addRoute, makeCgroup, makeNetns, makePinDir, makeVeth, type Veth } from "../support/netns.ts";
import { ascending, benchTenant, http, percentile, revisionOf, startAgentProcess, startWeftApi, waitConverged, type Answer, type WeftApi } from "../support/weft.ts";

const WRITES = Number(process.env.BENCH_WRITES ?? 100);
const BACK_TO_BACK = Number(process.env.BENCH_BACK_TO_BACK ?? 50);
const BOUND_MS = 3_000;
const POLL_MS = 1;
const GOAL_P99_MS = 250;
const MAX_NODES = 8;
/** BENCH_TRACE=1: the agent's HTTP calls, timed, kept in the results (bench/support/trace-fetch.mjs, or a preload of your own by path); one node only. */
const TRACE = process.env.BENCH_TRACE === "1" ? new URL("../support/trace-fetch.mjs", import.meta.url).pathname : process.env.BENCH_TRACE;
/** Pause (at rest) after the agents have reported a write, so they and the bare clients are back in their long polls; random against lock-step. */
const GAP_MS = [20, 60] as const;

const { values: argv } = parseArgs({ options: { nodes: { type: "string", default: "1" } }, strict: true });
const NODES = Number(argv.nodes);
if (!Number.isInteger(NODES) || NODES < 1 || NODES > MAX_NODES) {
  console.error(`bench:propagation: --nodes takes 1 to ${MAX_NODES}, not ${argv.nodes}`);
  process.exit(2);
}

/** One node: the three veths of the bench's own workloads, from 198.18.0.0/15. */
const W = {
  a: { label: "pa", host: "198.18.101.1", addr: "198.18.101.2" },
  b1: { label: "pb1", host: "198.18.102.1", addr: "198.18.102.2" },
  b2: { label: "pb2", host: "198.18.103.1", addr: "198.18.103.2" },
} as const;
type WName = keyof typeof W;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const policyB = (action: "allow" | "deny") => ({
  subject: { identity: "b" },
  ingress: [{ peers: [{ identity: "a" }], ports: [{ port: 8080, protocol: "tcp" }], action }],
});
const service = (w1: number, w2: number) => ({
  ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
  backends: { explicit: [{ workload: "b-1", weight: w1 }, { workload: "b-2", weight: w2 }] },
});

/** A map's whole content as one comparable string (entries as key=value hex, sorted). */
function contentOf(map: BpfMap): string {
  const { keys, values, count } = map.dump();
  const { keySize } = map.shape;
  const { valueBytes } = map;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    lines.push(`${Buffer.from(keys.subarray(i * keySize, (i + 1) * keySize)).toString("hex")}=${Buffer.from(values.subarray(i * valueBytes, (i + 1) * valueBytes)).toString("hex")}`);
  }
  return lines.sort().join("\n");
}

type Kind = "policy" | "weights";
type Config = { policy: "allow" | "deny"; weights: "3:1" | "1:3" };

/** What the measurement needs of each node: where its agent pins, its credential, and its agent's applies as they are logged. */
interface WatchedNode {
  name: string;
  pinDir: string;
  credential(): string;
  /** The agent's "applied datapath" log lines: revision and engine time of each apply. */
  applies: { revision: number; elapsedMs: number; at: number }[];
}

interface Topology {
  api: WeftApi;
  /** Every workload declared, each on its node; the service and the policy are the bench's to write. */
  put(path: string, body: unknown): Promise<Answer>;
  nodes: WatchedNode[];
  traces: unknown[];
  /** After the first convergence: checks the agents attached where they should. */
  check(): Promise<void>;
}

/** Parses an agent's log line into its node's applies (and traces, when loaded). */
function agentLine(node: WatchedNode, traces: unknown[]) {
  return (line: string, at: number): void => {
    if (line.startsWith('{"trace"')) traces.push(JSON.parse(line));
    if (!line.includes('"applied datapath"')) return;
    const f = JSON.parse(line) as { revision: number; elapsedMs: number };
    node.applies.push({ revision: f.revision, elapsedMs: f.elapsedMs, at });
  };
}

/** Every line a running child writes, with the time it was read (for agents started by the cluster module). */
function followLines(child: ChildProcess, onLine: (line: string, at: number) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream?.on("data", (d: Buffer) => {
      const at = performance.now();
      const lines = (partial + String(d)).split("\n");
      partial = lines.pop()!;
      for (const line of lines) onLine(line, at);
    });
  }
}

/** The API and one agent on this host, workloads behind wbench veths (the single-node figure). */
async function oneNode(cleanup: BenchCleanup): Promise<Topology> {
  const api = await startWeftApi(cleanup);
  const { tenant, auth } = await benchTenant(cleanup, api, "prop");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);
  const pinDir = makePinDir(cleanup, "prop");
  const cgroup = makeCgroup(cleanup, "prop");
  const veths = {} as Record<WName, Veth>;
  for (const [name, w] of Object.entries(W) as [WName, (typeof W)[WName]][]) {
    const ns = makeNetns(cleanup, w.label);
    veths[name] = makeVeth(cleanup, w.label, ns, `${w.host}/30`, `${w.addr}/30`);
    addRoute(ns, "198.18.0.0/15", w.host);
  }
  const name = `wbench-prop-${process.pid}`;
  const traces: unknown[] = [];
  const node: WatchedNode = { name, pinDir, credential: () => agent.credential(), applies: [] };
  const agent = await startAgentProcess(cleanup, api, { node: name, cgroup, pinDir, ...(TRACE ? { nodeArgs: ["--import", TRACE] } : {}), onLine: agentLine(node, traces) });
  for (const id of ["a", "b"]) await put(`/identities/${id}`, { path: `/ns/bench/${id}` });
  await put("/workloads/a-1", { identity: "a", node: name, addresses: [W.a.addr] });
  await put("/workloads/b-1", { identity: "b", node: name, addresses: [W.b1.addr] });
  await put("/workloads/b-2", { identity: "b", node: name, addresses: [W.b2.addr] });
  // The agent must have put tc programs on our veths and nowhere else.
  const check = async () => {
    const ours = new Set(Object.values(veths).map((v) => v.hostIfindex));
    const tcLinks = () => readdirSync(join(pinDir, "links")).filter((l) => l.startsWith("tcx-"));
    for (let i = 0; i < 100 && tcLinks().length < 2 * ours.size; i++) await sleep(50);
    const stray = tcLinks().filter((l) => !ours.has(Number(l.split("-")[1])));
    if (stray.length) throw new Error(`the agent attached tc programs outside the bench's veths: ${stray.join(", ")}`);
  };
  return { api, put, nodes: [node], traces, check };
}

/** A simulated cluster of `count` nodes: a-1 on the first, b-K on the K-th, so identity b is on every node. */
async function cluster(cleanup: BenchCleanup, count: number): Promise<Topology> {
  const names = Array.from({ length: count }, (_, i) => `node-${String.fromCharCode(97 + i)}`);
  const c = await startCluster({ nodes: names.map((name) => ({ name, zone: "z1" })), cleanup });
  const t = await c.tenant("prop");
  const traces: unknown[] = [];
  const nodes = names.map((name): WatchedNode => {
    const n = c.nodes[name]!;
    const node: WatchedNode = { name, pinDir: n.pinDir, credential: () => n.agent!.credential(), applies: [] };
    followLines(n.agent!.child, agentLine(node, traces));
    return node;
  });
  for (const id of ["a", "b"]) await t.put(`/identities/${id}`, { path: `/ns/bench/${id}` });
  const a = c.addWorkload(names[0]!, { name: "a-1" });
  await t.put("/workloads/a-1", { identity: "a", node: a.node, addresses: [a.address] });
  for (const [k, name] of names.entries()) {
    const b = c.addWorkload(name, { name: `b-${k + 1}` });
    await t.put(`/workloads/${b.name}`, { identity: "b", node: name, addresses: [b.address] });
  }
  const put = (path: string, body: unknown) => t.call("PUT", path, body);
  return { api: c.api, put, nodes, traces, check: async () => undefined };
}

interface NodeSample {
  /** from the PUT's response; null when not seen within the bound */
  kernelMs: number | null;
  wakeMs: number | null;
  /** the agent's engine time for the apply that carried this revision (its own log) */
  applyMs: number | null;
  /** epoch ms of the kernel change and the bare client's wake */
  epoch: { kernel: number | null; wake: number | null };
}

interface Sample {
  kind: Kind;
  revision: number;
  writeMs: number;
  /** The last node's figures (max over nodes); kernel null when any node did not change within the bound. */
  kernelMs: number | null;
  kernelFromSendMs: number | null;
  wakeMs: number | null;
  applyMs: number | null;
  /** epoch ms of the write's send and answer (to line up with agent traces) */
  epoch: { sent: number; answered: number };
  nodes: Record<string, NodeSample>;
}

const reason = NODES > 1 ? clusterUnavailableReason() : cgroupUnavailableReason();
if (reason !== null) {
  console.error(`bench:propagation needs the kernel: ${reason}`);
  process.exit(1);
}
if (NODES > 1 && TRACE) console.error("bench:propagation: BENCH_TRACE traces the single-node agent only; ignored with --nodes");

await withCleanup("bench:propagation", async (cleanup) => {
  const started = performance.now();
  const topo = NODES > 1 ? await cluster(cleanup, NODES) : await oneNode(cleanup);
  const { api, put, nodes } = topo;
  const where = NODES > 1 ? `a cluster of ${NODES} nodes (${nodes.map((n) => n.name).join(", ")}), one agent each` : "one node";
  console.log(`bench:propagation: API process on ${api.database}; ${where}; ${WRITES} writes`);
  const converged = async (revision: number) => {
    for (const n of nodes) await waitConverged(api, n.name, revision);
  };

  await put("/services/web", service(3, 1));
  await converged(revisionOf(await put("/policies/b-in", policyB("allow"))));
  await topo.check();

  const open = (pinDir: string, id: "policy" | "lb_slot") => {
    const spec = mapSpecs[id];
    const m = openPinnedMap(join(pinDir, spec.name), { name: spec.name, keySize: spec.keySize, valueSize: spec.valueSize });
    cleanup.add(`close ${spec.name} of ${pinDir}`, () => closeFd(m.fd));
    return m;
  };
  const maps = new Map(nodes.map((n) => [n.name, { policy: open(n.pinDir, "policy"), weights: open(n.pinDir, "lb_slot") }]));

  // Warm-up: the bytes each agent writes for each configuration are that node's targets.
  const targets = new Map(nodes.map((n) => [n.name, { policy: {} as Record<string, string>, weights: {} as Record<string, string> }]));
  const record = (kind: Kind, config: string) => {
    for (const n of nodes) targets.get(n.name)![kind][config] = contentOf(maps.get(n.name)![kind]);
  };
  record("policy", "allow");
  record("weights", "3:1");
  await converged(revisionOf(await put("/policies/b-in", policyB("deny"))));
  record("policy", "deny");
  await converged(revisionOf(await put("/services/web", service(1, 3))));
  record("weights", "1:3");
  for (const n of nodes) {
    const t = targets.get(n.name)!;
    if (t.policy.allow === t.policy.deny) throw new Error(`allow and deny left the same policy map on ${n.name}: nothing to observe`);
    if (t.weights["3:1"] === t.weights["1:3"]) throw new Error(`3:1 and 1:3 left the same lb_slot map on ${n.name}: nothing to observe`);
  }

  // One bare long-poll client per node, with that node's credential, asking as its agent does (?since=REV&wait=30).
  const wakes = new Map<string, { revision: number; at: number }[]>(nodes.map((n) => [n.name, []]));
  const stopPolling = new AbortController();
  const pollers = nodes.map(async (n) => {
    const pollAuth = { authorization: `Bearer ${n.credential()}` };
    const first = await http(`${api.base}/v1/nodes/${n.name}/datapath`, "GET", pollAuth);
    let pollRevision = Number(first.headers["x-weft-revision"]);
    while (!stopPolling.signal.aborted) {
      let res: Answer;
      try {
        res = await http(`${api.base}/v1/nodes/${n.name}/datapath?since=${pollRevision}&wait=30`, "GET", pollAuth, undefined, stopPolling.signal);
      } catch (err) {
        if (stopPolling.signal.aborted) return;
        throw err;
      }
      if (res.status !== 200) throw new Error(`bare long poll of ${n.name}: ${res.status} ${res.body.slice(0, 300)}`);
      const revision = (JSON.parse(res.body) as { revision: number }).revision;
      if (revision > pollRevision) wakes.get(n.name)!.push({ revision, at: res.at });
      pollRevision = revision;
    }
  });
  cleanup.add("stop the bare long polls", async () => {
    stopPolling.abort();
    await Promise.allSettled(pollers);
  });
  await sleep(200);

  const state: Config = { policy: "deny", weights: "1:3" };
  /**
   * `count` writes, alternating policy flips and weight changes. "at rest":
   * after each write has reached every kernel, wait until every agent has
   * reported it (its status PUT is the last thing it does before polling
   * again) and every bare client has its answer, then a short random pause:
   * the agents are parked in their long polls when the next write comes, as
   * on nodes where writes are seconds apart. "back to back": the next write
   * goes out as soon as every kernel changed, while the agents still report.
   */
  async function measure(count: number, pacing: "at rest" | "back to back"): Promise<Sample[]> {
    const samples: Sample[] = [];
    for (let i = 0; i < count; i++) {
      const kind: Kind = i % 2 === 0 ? "policy" : "weights";
      let res: Answer;
      if (kind === "policy") {
        state.policy = state.policy === "allow" ? "deny" : "allow";
        res = await put("/policies/b-in", policyB(state.policy));
      } else {
        state.weights = state.weights === "3:1" ? "1:3" : "3:1";
        res = await put("/services/web", state.weights === "3:1" ? service(3, 1) : service(1, 3));
      }
      const revision = revisionOf(res);
      const kernelAt = new Map<string, number>();
      for (let pending = nodes; pending.length && performance.now() < res.at + BOUND_MS; ) {
        for (const n of pending) if (contentOf(maps.get(n.name)![kind]) === targets.get(n.name)![kind][state[kind]]) kernelAt.set(n.name, performance.now());
        pending = pending.filter((n) => !kernelAt.has(n.name));
        if (pending.length) await sleep(POLL_MS);
      }
      // Each bare client's answer for this revision (it may come after the kernel changed).
      const wakeOf = (n: WatchedNode) => wakes.get(n.name)!.find((w) => w.revision >= revision);
      for (let t = 0; t < BOUND_MS / 5 && !nodes.every(wakeOf); t++) await sleep(5);
      const perNode: Record<string, NodeSample> = {};
      for (const n of nodes) {
        const k = kernelAt.get(n.name) ?? null;
        const w = wakeOf(n)?.at ?? null;
        perNode[n.name] = {
          kernelMs: k === null ? null : k - res.at,
          wakeMs: w === null ? null : w - res.at,
          applyMs: null,
          epoch: { kernel: k === null ? null : performance.timeOrigin + k, wake: w === null ? null : performance.timeOrigin + w },
        };
      }
      const last = (f: (s: NodeSample) => number | null) => {
        const xs = Object.values(perNode).map(f);
        return xs.includes(null) ? null : Math.max(...(xs as number[]));
      };
      const kernelMs = last((s) => s.kernelMs);
      samples.push({
        kind,
        revision,
        writeMs: res.at - res.sentAt,
        kernelMs,
        kernelFromSendMs: kernelMs === null ? null : kernelMs + res.at - res.sentAt,
        wakeMs: last((s) => s.wakeMs),
        applyMs: null,
        epoch: { sent: performance.timeOrigin + res.sentAt, answered: performance.timeOrigin + res.at },
        nodes: perNode,
      });
      const missed = nodes.filter((n) => !kernelAt.has(n.name)).map((n) => n.name);
      if (missed.length) console.error(`write ${i} (${kind}, revision ${revision}): the kernel map of ${missed.join(", ")} did not change within ${BOUND_MS} ms`);
      if (pacing === "at rest" || missed.length) {
        await converged(revision);
        await sleep(GAP_MS[0] + Math.random() * (GAP_MS[1] - GAP_MS[0]));
      }
    }
    return samples;
  }

  const phases = { atRest: await measure(WRITES, "at rest"), backToBack: await measure(BACK_TO_BACK, "back to back") };

  // The agents' log lines may arrive after the kernel changed: matched once every write is done.
  await sleep(200);
  const all = [...phases.atRest, ...phases.backToBack];
  for (const s of all) {
    for (const n of nodes) s.nodes[n.name]!.applyMs = n.applies.find((a) => a.revision >= s.revision)?.elapsedMs ?? null;
    const applies = Object.values(s.nodes).map((x) => x.applyMs);
    s.applyMs = applies.includes(null) ? null : Math.max(...(applies as number[]));
  }
  const stat = (xs: (number | null)[]) => {
    const v = ascending(xs.filter((x): x is number => x !== null));
    return v.length ? { n: v.length, p50: percentile(v, 50), p99: percentile(v, 99), max: v[v.length - 1]! } : null;
  };
  const share = (k: number | null, w: number | null) => (k !== null && w !== null ? k - w : null);
  const summarize = (samples: Sample[]) => ({
    missed: samples.filter((s) => s.kernelMs === null).length,
    write: stat(samples.map((s) => s.writeMs)),
    wake: stat(samples.map((s) => s.wakeMs)),
    kernel: stat(samples.map((s) => s.kernelMs)),
    kernelPolicy: stat(samples.filter((s) => s.kind === "policy").map((s) => s.kernelMs)),
    kernelWeights: stat(samples.filter((s) => s.kind === "weights").map((s) => s.kernelMs)),
    kernelFromSend: stat(samples.map((s) => s.kernelFromSendMs)),
    agentShare: stat(samples.map((s) => share(s.kernelMs, s.wakeMs))),
    apply: stat(samples.map((s) => s.applyMs)),
    // The spread between the first and the last node to change, per write.
    spread: stat(samples.map((s) => (s.kernelMs === null ? null : s.kernelMs - Math.min(...Object.values(s.nodes).map((x) => x.kernelMs!))))),
    perNode: Object.fromEntries(
      nodes.map((n) => {
        const of = (f: (x: NodeSample) => number | null) => stat(samples.map((s) => f(s.nodes[n.name]!)));
        return [n.name, { kernel: of((x) => x.kernelMs), wake: of((x) => x.wakeMs), agentShare: of((x) => share(x.kernelMs, x.wakeMs)), apply: of((x) => x.applyMs) }];
      }),
    ),
  });
  const results = { atRest: summarize(phases.atRest), backToBack: summarize(phases.backToBack) };
  type Stat = ReturnType<typeof stat>;
  const f = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(1));
  const cells = (s: Stat) => `${s?.n ?? 0} | ${f(s?.p50)} | ${f(s?.p99)} | ${f(s?.max)}`;
  const r = results;
  console.log(`| measure (ms) | at rest: n | p50 | p99 | max | back to back: n | p50 | p99 | max |`);
  console.log(`|---|---|---|---|---|---|---|---|---|`);
  const line = (what: string, pick: (x: (typeof results)["atRest"]) => Stat) => console.log(`| ${what} | ${cells(pick(r.atRest))} | ${cells(pick(r.backToBack))} |`);
  const many = nodes.length > 1;
  const lastNode = many ? ", the last node (max over nodes)" : "";
  line("API write, PUT round trip (baseline)", (x) => x.write);
  line(`long-poll wake, bare client${many ? " per node" : ""}, from the PUT's response${lastNode} (baseline)`, (x) => x.wake);
  line(`**kernel map${many ? "s of every node" : ""} changed, from the PUT's response** (goal p99 < ${GOAL_P99_MS})`, (x) => x.kernel);
  line("  policy flips", (x) => x.kernelPolicy);
  line("  weight changes", (x) => x.kernelWeights);
  line(`kernel map${many ? "s of every node" : ""} changed, from the PUT's send`, (x) => x.kernelFromSend);
  line(`agent's share: kernel - wake, per write${lastNode}`, (x) => x.agentShare);
  line(`agent engine apply (encode, read back, diff, write; its log)${lastNode}`, (x) => x.apply);
  if (many) {
    line("first to last node's kernel change, per write", (x) => x.spread);
    for (const n of nodes) {
      line(`${n.name}: kernel map changed`, (x) => x.perNode[n.name]!.kernel);
      line(`${n.name}: long-poll wake (baseline)`, (x) => x.perNode[n.name]!.wake);
      line(`${n.name}: agent's share`, (x) => x.perNode[n.name]!.agentShare);
    }
  }
  const ratio = (kernel: Stat, wake: Stat) => (kernel && wake ? { p50: kernel.p50 / Math.max(wake.p50, 0.1), p99: kernel.p99 / Math.max(wake.p99, 0.1) } : null);
  const ratios = {
    atRest: ratio(r.atRest.kernel, r.atRest.wake),
    backToBack: ratio(r.backToBack.kernel, r.backToBack.wake),
    perNode: Object.fromEntries(nodes.map((n) => [n.name, ratio(r.atRest.perNode[n.name]!.kernel, r.atRest.perNode[n.name]!.wake)])),
  };
  const x = (v: { p50: number; p99: number } | null) => (v ? `p50 ${v.p50.toFixed(2)}x, p99 ${v.p99.toFixed(2)}x` : "-");
  console.log(`kernel / long-poll wake${lastNode}: at rest ${x(ratios.atRest)}; back to back ${x(ratios.backToBack)}`);
  if (many) console.log(`kernel / long-poll wake per node, at rest: ${nodes.map((n) => `${n.name} ${x(ratios.perNode[n.name]!)}`).join("; ")}`);
  const met = r.atRest.kernel !== null && r.atRest.missed === 0 && r.atRest.kernel.p99 < GOAL_P99_MS;
  const missed = r.atRest.missed + r.backToBack.missed;
  console.log(
    `goal p99 < ${GOAL_P99_MS} ms (at rest${many ? `, all ${nodes.length} nodes` : ""}): ${met ? "met" : "NOT met"}${missed ? ` (${missed} writes never reached every kernel within ${BOUND_MS} ms)` : ""}; ` +
      `run took ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(
    new URL(`./results/propagation${many ? `-${nodes.length}-nodes` : ""}.json`, import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), database: api.database, nodes: nodes.map((n) => n.name), goalP99Ms: GOAL_P99_MS, met, results, ratios, samples: phases, ...(topo.traces.length ? { traces: topo.traces } : {}) }, null, 2)}\n`,
  );
});
