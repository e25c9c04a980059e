/**
 * Per-node L7 proxy benchmark (issue 21's figures), one command (as root,
 * under the kernel lock):
 *   flock /tmp/weft-kernel.lock npm run bench:l7
 *
 * A simulated cluster of two nodes (bench/support/cluster.ts: the real API,
 * one real agent per node), the client pod on node-a, nginx (one worker) in
 * the server pod on node-b, wrk in the client pod and in node-a's cgroup (as
 * the pod's own processes are). Three modes, on the same two pods:
 *   direct   client -> VIP of service "plain" (no route): the socket LB
 *            connects straight to server:8080;
 *   sidecar  the Istio-sidecar topology: client -> its pod's HAProxy on
 *            127.0.0.1:15001 -> server pod's HAProxy on server:15006 ->
 *            nginx on 127.0.0.1:8080, both in http mode (http-sidecar.ts:
 *            plain HTTP, the L7 work only);
 *   weft     client -> VIP of service "routed", which an httpRoute names:
 *            node-a's kernel steers the connection into node-a's HAProxy,
 *            run by the agent, which forwards it to server:8080. Measured
 *            only when the API takes the route, node-a's agent reports
 *            `l7.state` running and the warm-up was counted as l7-steered;
 *            otherwise "mode weft: not available (why)" and the other two.
 *
 * Part 1, saturation: each mode with keep-alive and with a new connection per
 * request (Connection: close), BENCH_CONNECTIONS connections, BENCH_REPS reps
 * in alternating order. Per run: req/s, p50, p99 (wrk), and CPU per request
 * (utime+stime, /proc/PID/stat) of the proxies on the path (the two sidecars;
 * node-a's HAProxy master and workers), of nginx, of node-a's agent (it reads
 * the proxy's request records: weft only) and of the whole machine
 * (/proc/stat). Ratios are paired within a rep, then the median over reps.
 *
 * With BENCH_L7_MTLS=1, two more modes in the same run and rounds, to a
 * second server pod on node-b (mserver, nginx, identity mserver) whose port
 * 8080 an `mtls` policy rule governs:
 *   sidecar-mtls  the sidecar topology with mutual TLS 1.3 between the two
 *            HAProxies (client pod 127.0.0.1:15002 -> mserver:15007,
 *            certificates from a CA minted for the run, throwaway-ca.ts);
 *   weft-mtls  client -> VIP of service "mrouted" (an httpRoute): node-a's
 *            HAProxy reaches mserver through node-a's transport, which
 *            carries it over HBONE (TLS 1.3, X25519MLKEM768) to node-b's
 *            transport, which delivers it. Its proxies' CPU is node-a's
 *            HAProxy and both nodes' transports; its agents' both agents.
 *            Measured only when the warm-up answered 200s only, was
 *            counted l7-steered and node-a's transport carried its bytes.
 *
 * Part 2, latency at half the direct saturation rate: each mode paced by
 * wrk's delay() hook (paced.ts; wrk2 is not installed) at half of direct's
 * median req/s from part 1, per connection mode, BENCH_PACED_CONNECTIONS
 * connections; p99 added over direct is paired within a rep.
 *
 * Goals (issue 21): weft/sidecar req/s >= 1.5, weft/sidecar proxy CPU per
 * request <= 0.5, p99 added over direct <= 1 ms at half the direct
 * saturation rate.
 *
 * Every wrk is killed BENCH_SECONDS + 15 s after it started (a connect the
 * path never answers would hold it for a minute of SYN retries): that run
 * counts as failed, is left out of the figures and counted beside them.
 *
 * Env: BENCH_SECONDS (3), BENCH_REPS (8), BENCH_CONNECTIONS (16) (measure.ts),
 * BENCH_PACED_CONNECTIONS (64), BENCH_L7_MTLS (1: the two mtls modes). Addresses from 198.18.0.0/15 only (the
 * cluster module's); everything made is removed on exit, failure or signal,
 * and by the janitor if killed; the last cleanup step checks that no
 * HAProxy the run saw is left.
 */
import { loadavg } from "node:os";
import { MODES, REPS, SECONDS, CONNECTIONS, run, type Mode, type Run } from "../datapath/measure.ts";
import { withCleanup } from "../support/cleanup.ts";
import { startCluster } from "../support/cluster.ts";
import { central, cpuOf } from "../support/figures.ts";
import { inNetns } from "../support/netns.ts";
import { httpBackend } from "../support/proxies.ts";
import { prerequisites } from "../transport/prerequisites.ts";
import { transportPid } from "../transport/weft-transport.ts";
import { SIDECAR_INBOUND_PORT, SIDECAR_OUTBOUND_PORT, httpSidecar } from "./http-sidecar.ts";
import { leftoverCheck } from "./leftovers.ts";
import { paced, type PacedRun } from "./paced.ts";
import { writeResults } from "./results.ts";
import { throwawayCa } from "./throwaway-ca.ts";
import { convergeUnavailable, httpRequests, l7Counts, proxyPids, proxyUnavailable, routeAll, steeredToProxy, transportBytes } from "./weft-l7.ts";

const NAME = "bench:l7";
const PORT = 8080;
const PACED_CONNECTIONS = Number(process.env.BENCH_PACED_CONNECTIONS ?? 64);
const GOALS = { rpsOverSidecar: 1.5, proxyCpuOverSidecar: 0.5, p99AddedMs: 1 };
const MTLS = process.env.BENCH_L7_MTLS === "1";
/** The mTLS sidecars' listeners: beside the plaintext pair's in the client pod, so both pairs run in one bench. */
const MTLS_SIDECAR_PORTS = { outbound: 15002, inbound: 15007 };

const tools = prerequisites(NAME);

type PathName = "direct" | "sidecar" | "weft" | "sidecar-mtls" | "weft-mtls";
/** The node proxy's modes and the sidecar baseline each is compared with. */
const PAIRS = [
  ["weft", "sidecar"],
  ["weft-mtls", "sidecar-mtls"],
] as const;
interface BenchPath {
  name: PathName;
  url: string;
  exec: string[];
  /** The proxies a request goes through on this path (none for direct). */
  proxies: () => number[];
  /** Other processes whose CPU a request costs here: nginx, and for the node proxy's modes the agents (kept apart). */
  backend: number;
  agents?: () => number[];
  /** The proxies by part, where a path's proxies are different programs (weft-mtls: HAProxy, each transport): each part's CPU is printed too. */
  parts?: () => Record<string, number[]>;
}
type Sample = Run & {
  proxyCpuUsPerRequest: number;
  backendCpuUsPerRequest: number;
  agentCpuUsPerRequest: number;
  partsCpuUsPerRequest?: Record<string, number>;
  wallSeconds: number;
  failed?: string;
};
type PacedSample = PacedRun & { failed?: string };

/**
 * Every wrk is killed this long after it started: a connect() the path never
 * answers blocks wrk past its duration (SYN retries: about a minute). Such a
 * run counts as failed, with no figures, and the bench goes on.
 */
const RUN_BOUND_SECONDS = SECONDS + 15;
const bounded = (exec: string[]) => [...exec, "timeout", "-s", "KILL", String(RUN_BOUND_SECONDS)];
const failedRun = (err: unknown) => ({ tool: "wrk", requestsPerSecond: Number.NaN, p50Ms: Number.NaN, p99Ms: Number.NaN, non2xx3xx: 0, failed: (err as Error).message.split("\n")[0]! });

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
const fixed = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : "–");

await withCleanup(NAME, async (cleanup) => {
  const started = performance.now();
  const seen = leftoverCheck(cleanup);
  console.log(`${NAME}: load average at start ${load()}`);
  const c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], cleanup });
  const a = c.nodes["node-a"]!;
  const client = c.addWorkload("node-a", { name: "client" });
  const server = c.addWorkload("node-b", { name: "server" });
  const mserver = MTLS ? c.addWorkload("node-b", { name: "mserver" }) : null;

  const t = await c.tenant("l7");
  for (const w of [client, server]) {
    await t.put(`/identities/${w.name}`, { path: `/ns/bench/${w.name}` });
    await t.put(`/workloads/${w.name}`, { identity: w.name, node: w.node, addresses: [w.address] });
  }
  await t.put("/policies/server-in", {
    subject: { identity: "server" },
    ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }, { port: SIDECAR_INBOUND_PORT, protocol: "tcp" }], action: "allow" }],
  });
  const vipOf = async (service: string, workload = "server") => {
    const res = await t.call("PUT", `/services/${service}`, { ports: [{ port: 80, protocol: "tcp", targetPort: PORT }], backends: { explicit: [{ workload, weight: 1 }] } });
    return (JSON.parse(res.body) as { vip: string }).vip;
  };
  const plainVip = await vipOf("plain");
  const routedVip = await vipOf("routed");
  let mroutedVip = "";
  if (mserver) {
    await t.put(`/identities/${mserver.name}`, { path: `/ns/bench/${mserver.name}` });
    await t.put(`/workloads/${mserver.name}`, { identity: mserver.name, node: mserver.node, addresses: [mserver.address] });
    // The app's port over the transports only; the mTLS sidecars' inbound port is plaintext to Weft (the sidecars do their own TLS on it).
    await t.put("/policies/mserver-in", {
      subject: { identity: "mserver" },
      ingress: [
        { peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow", transport: "mtls" },
        { peers: [{ identity: "client" }], ports: [{ port: MTLS_SIDECAR_PORTS.inbound, protocol: "tcp" }], action: "allow" },
      ],
    });
    mroutedVip = await vipOf("mrouted", "mserver");
  }
  await c.converged();

  const backend = await httpBackend(cleanup, server.netns, PORT, tools.nginx ? "nginx" : "node");
  const clientSidecar = await httpSidecar(cleanup, { netns: client.netns, podAddress: client.address, appPort: PORT, peerAddress: server.address, allowedSources: [server.address] });
  const serverSidecar = await httpSidecar(cleanup, { netns: server.netns, podAddress: server.address, appPort: PORT, peerAddress: client.address, allowedSources: [client.address] });
  seen(clientSidecar.pid, serverSidecar.pid);
  let mtlsPods: { sidecars: number[]; backend: number } | null = null;
  if (mserver) {
    const ca = throwawayCa(cleanup);
    const mtls = (crt: string) => ({ ports: MTLS_SIDECAR_PORTS, tls: { crt, caFile: ca.caFile }, appPort: PORT });
    const mbackend = await httpBackend(cleanup, mserver.netns, PORT, tools.nginx ? "nginx" : "node");
    const out = await httpSidecar(cleanup, { netns: client.netns, podAddress: client.address, peerAddress: mserver.address, allowedSources: [mserver.address], ...mtls(ca.leaf("client")) });
    const inb = await httpSidecar(cleanup, { netns: mserver.netns, podAddress: mserver.address, peerAddress: client.address, allowedSources: [client.address], ...mtls(ca.leaf("mserver")) });
    seen(out.pid, inb.pid);
    mtlsPods = { sidecars: [out.pid, inb.pid], backend: mbackend.pid };
  }

  const fromClient = bounded(inNetns(client.netns, a.cgroup));
  const paths: BenchPath[] = [
    { name: "direct", url: `http://${plainVip}:80/`, exec: fromClient, proxies: () => [], backend: backend.pid },
    { name: "sidecar", url: `http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/`, exec: fromClient, proxies: () => [clientSidecar.pid, serverSidecar.pid], backend: backend.pid },
  ];
  if (mtlsPods) {
    const { sidecars, backend: mbackend } = mtlsPods;
    paths.push({ name: "sidecar-mtls", url: `http://127.0.0.1:${MTLS_SIDECAR_PORTS.outbound}/`, exec: fromClient, proxies: () => sidecars, backend: mbackend });
  }
  /** Answers wrk got through each path, every run counted (warm-ups too): what node-a's agent should have counted as requests for weft. */
  const answered: Record<string, number> = {};
  const count = (p: BenchPath, r: { requests?: number }) => void (answered[p.name] = (answered[p.name] ?? 0) + (r.requests ?? 0));
  const warm = async (p: BenchPath) => {
    const r = await run(p, "keep-alive", 1);
    count(p, r);
    if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${p.name}: warm-up got ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
  };
  for (const p of paths) await warm(p);

  // The route last, once the baselines answer: a node that cannot apply it keeps serving the state before it.
  const recordsBefore = httpRequests(await c.agentMetrics("node-a"));
  let weftReason = (await routeAll(c, t, "routed", "routed")) ?? (await convergeUnavailable(c));
  weftReason ??= await proxyUnavailable(c, "node-a");
  // Looked up for every run: a hitless reload replaces the workers, and the new ones' CPU counts from then on.
  const proxies = () => {
    const pids = proxyPids(c, "node-a");
    seen(...pids);
    return pids;
  };
  if (weftReason === null) {
    const weft: BenchPath = { name: "weft", url: `http://${routedVip}:80/`, exec: fromClient, proxies, backend: backend.pid, agents: () => [a.agent?.pid ?? Number.NaN] };
    try {
      const before = await steeredToProxy(c, "node-a");
      await warm(weft);
      if ((await steeredToProxy(c, "node-a")) === before) weftReason = "node-a counted no packet as l7-steered during the warm-up: the connections did not go through the node's proxy";
      else paths.push(weft);
    } catch (err) {
      weftReason = `the warm-up through node-a's proxy failed: ${(err as Error).message} (datapath: ${await l7Counts(c)})`;
    }
  }
  /**
   * Why the node proxy's hop through the transports cannot be measured, or null
   * once a 1 s warm-up answered 200s only (tried for up to 30 s: node-a's
   * transport gets the node proxy's SVID after the documents), node-a counted
   * its packets as l7-steered and its transport sent at least a request line's
   * bytes per answer to node-b's.
   */
  async function hopUnavailable(p: BenchPath): Promise<string | null> {
    const deadline = Date.now() + 30_000;
    const refused: string[] = [];
    for (;;) {
      const metrics = await c.agentMetrics("node-a");
      const [steered, sent] = [await steeredToProxy(c, "node-a"), transportBytes(metrics, "outbound", "to_peer")];
      let r: Run;
      try {
        r = await run(p, "keep-alive", 1);
      } catch (err) {
        r = { ...failedRun(err), requests: 0, cpuUsPerRequest: Number.NaN, stealShare: Number.NaN };
      }
      count(p, r);
      if (r.requests && r.non2xx3xx === 0) {
        const after = await c.agentMetrics("node-a");
        if ((await steeredToProxy(c, "node-a")) === steered) return "node-a counted no packet as l7-steered during the warm-up";
        const carried = transportBytes(after, "outbound", "to_peer") - sent;
        if (carried < r.requests * "GET / HTTP/1.1".length) return `node-a's transport sent ${carried} bytes to its peers for ${r.requests} answers: the requests did not go through it`;
        if (refused.length) console.error(`weft-mtls warm-up: answered 200s only after ${refused.length} tries (${refused.join("; ")})`);
        return null;
      }
      refused.push(`${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx${r.socketErrors ? `, ${r.socketErrors}` : ""}${"failed" in r ? `, ${String(r.failed)}` : ""}`);
      if (Date.now() > deadline) return `the warm-up through node-a's proxy and the transports did not answer 200s only in 30 s (${refused.slice(-3).join("; ")}; datapath: ${await l7Counts(c)})`;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  let mtlsReason: string | null = null;
  if (mserver && mtlsPods) {
    mtlsReason = (await routeAll(c, t, "mrouted", "mrouted")) ?? (await convergeUnavailable(c));
    mtlsReason ??= await proxyUnavailable(c, "node-a");
    // The transports too are looked up for every run: the agent restarts one that exited, and a run across that has no CPU figure.
    const transports = () => ["node-a", "node-b"].map((n) => transportPid(c, n) ?? Number.NaN);
    const parts = () => {
      const [ta, tb] = transports();
      return { "node-a HAProxy": proxies(), "node-a transport": [ta!], "node-b transport": [tb!] };
    };
    if (mtlsReason === null && transports().some(Number.isNaN)) mtlsReason = `no transport process below the agents (node-a, node-b: ${transports().join(", ")})`;
    if (mtlsReason === null) {
      const b = c.nodes["node-b"]!;
      const weftMtls: BenchPath = {
        name: "weft-mtls",
        url: `http://${mroutedVip}:80/`,
        exec: fromClient,
        proxies: () => Object.values(parts()).flat(),
        parts,
        backend: mtlsPods.backend,
        agents: () => [a.agent?.pid ?? Number.NaN, b.agent?.pid ?? Number.NaN],
      };
      mtlsReason = await hopUnavailable(weftMtls);
      if (mtlsReason === null) paths.push(weftMtls);
    }
  }
  console.log(
    `${NAME}: backend ${backend.kind}; API on ${c.api.database}; fabric ${c.fabric.cidr}; client ${client.address} (node-a) -> server ${server.address}:${PORT} (node-b); ` +
      `direct: VIP ${plainVip}:80 (no route); weft: VIP ${routedVip}:80 (httpRoute routed); ` +
      (mserver ? `sidecar-mtls: 127.0.0.1:${MTLS_SIDECAR_PORTS.outbound} -> ${mserver.address}:${MTLS_SIDECAR_PORTS.inbound}; weft-mtls: VIP ${mroutedVip}:80 (httpRoute mrouted) -> ${mserver.address}:${PORT} (mtls rule); ` : "") +
      `wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run, ${REPS} reps, order reversed every other rep`,
  );
  if (weftReason !== null) console.log(`mode weft: not available (${weftReason})`);
  if (mtlsReason !== null) console.log(`mode weft-mtls: not available (${mtlsReason})`);

  // Part 1: saturation.
  const samples: Record<string, Record<Mode, Sample[]>> = {};
  for (const p of paths) samples[p.name] = { "keep-alive": [], "new connection": [] };
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      for (const p of rep % 2 === 0 ? paths : [...paths].reverse()) {
        const proxies = p.proxies();
        const agent = p.agents ? p.agents() : [];
        const parts = p.parts ? Object.entries(p.parts()) : [];
        const before = [cpuOf(proxies), cpuOf([p.backend]), cpuOf(agent)] as const;
        const partsBefore = parts.map(([, pids]) => cpuOf(pids));
        const startedAt = performance.now();
        let r: Run;
        try {
          r = await run(p, mode, SECONDS);
        } catch (err) {
          const failed = { ...failedRun(err), cpuUsPerRequest: Number.NaN, stealShare: Number.NaN };
          console.error(`${p.name} ${mode} rep ${rep}: failed after ${((performance.now() - startedAt) / 1000).toFixed(1)} s (${failed.failed}); no figures from this run`);
          samples[p.name]![mode].push({ ...failed, proxyCpuUsPerRequest: Number.NaN, backendCpuUsPerRequest: Number.NaN, agentCpuUsPerRequest: Number.NaN, wallSeconds: (performance.now() - startedAt) / 1000 });
          continue;
        }
        const wallSeconds = (performance.now() - startedAt) / 1000;
        const requests = r.requests ?? r.requestsPerSecond * SECONDS;
        const perRequest = (pids: number[], from: number) => ((cpuOf(pids) - from) * 1e6) / requests;
        const sample: Sample = {
          ...r,
          proxyCpuUsPerRequest: perRequest(proxies, before[0]),
          backendCpuUsPerRequest: perRequest([p.backend], before[1]),
          agentCpuUsPerRequest: p.agents ? perRequest(agent, before[2]) : Number.NaN,
          ...(p.parts ? { partsCpuUsPerRequest: Object.fromEntries(parts.map(([part, pids], k) => [part, perRequest(pids, partsBefore[k]!)])) } : {}),
          wallSeconds,
        };
        // The machine's CPU per request counts every second the run took: a run far longer than asked says why that figure is off.
        if (wallSeconds > SECONDS + 5) console.error(`${p.name} ${mode} rep ${rep}: the run took ${wallSeconds.toFixed(1)} s for ${SECONDS} s of load`);
        if (r.non2xx3xx > 0 || r.socketErrors) console.error(`${p.name} ${mode} rep ${rep}: ${r.non2xx3xx} non-2xx; ${r.socketErrors ?? ""}`);
        if (Number.isNaN(sample.proxyCpuUsPerRequest)) console.error(`${p.name} ${mode} rep ${rep}: a proxy of the path (${proxies.join(", ")}) was gone; no proxy CPU for this run`);
        samples[p.name]![mode].push(sample);
        count(p, r);
      }
    }
  }

  const figures = {
    rps: (s: Sample) => s.requestsPerSecond,
    p50Ms: (s: Sample) => s.p50Ms,
    p99Ms: (s: Sample) => s.p99Ms,
    proxyCpu: (s: Sample) => s.proxyCpuUsPerRequest,
    backendCpu: (s: Sample) => s.backendCpuUsPerRequest,
    agentCpu: (s: Sample) => s.agentCpuUsPerRequest,
    machineCpu: (s: Sample) => s.cpuUsPerRequest,
  };
  type Figure = keyof typeof figures;
  const failedNote = (rs: { failed?: string }[]) => {
    const n = rs.filter((r) => r.failed !== undefined).length;
    return n ? ` (${n} of ${rs.length} runs failed)` : "";
  };
  const value = (path: string, mode: Mode, f: Figure) => central(samples[path]![mode].map(figures[f]));
  /** The median over reps of path's figure over base's figure in the same rep and mode. */
  const ratio = (path: string, base: string, mode: Mode, f: Figure) => central(samples[path]![mode].map((s, k) => figures[f](s) / figures[f](samples[base]![mode][k]!)));

  console.log(`| mode | connections | req/s | p50 ms | p99 ms | proxies CPU µs/req | nginx CPU µs/req | agents CPU µs/req | machine CPU µs/req | req/s x direct |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|`);
  for (const mode of MODES) {
    for (const p of paths) {
      console.log(
        `| ${p.name} | ${mode} | ${Math.round(value(p.name, mode, "rps"))}${failedNote(samples[p.name]![mode])} | ${fixed(value(p.name, mode, "p50Ms"), 2)} | ${fixed(value(p.name, mode, "p99Ms"), 2)} | ` +
          `${p.name === "direct" ? "–" : fixed(value(p.name, mode, "proxyCpu"), 1)} | ${fixed(value(p.name, mode, "backendCpu"), 1)} | ${fixed(value(p.name, mode, "agentCpu"), 1)} | ` +
          `${fixed(value(p.name, mode, "machineCpu"), 1)} | ${fixed(ratio(p.name, "direct", mode, "rps"), 2)} |`,
      );
    }
  }

  for (const p of paths.filter((q) => q.parts)) {
    for (const mode of MODES) {
      const split = Object.keys(p.parts!()).map((part) => `${part} ${fixed(central(samples[p.name]![mode].map((s) => s.partsCpuUsPerRequest?.[part] ?? Number.NaN)), 1)}`);
      console.log(`${p.name} ${mode}: proxies CPU µs/req by part (medians): ${split.join(", ")}`);
    }
  }

  // Part 2: p99 at half of direct's saturation rate, per connection mode.
  const targets = Object.fromEntries(MODES.map((m) => [m, Math.round(value("direct", m, "rps") / 2)])) as Record<Mode, number>;
  const pacedRuns: Record<string, Record<Mode, PacedSample[]>> = {};
  for (const p of paths) pacedRuns[p.name] = { "keep-alive": [], "new connection": [] };
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      for (const p of rep % 2 === 0 ? paths : [...paths].reverse()) {
        let r: PacedSample;
        try {
          r = await paced(p.url, mode === "new connection" ? { connection: "close" } : {}, { perSecond: targets[mode], connections: PACED_CONNECTIONS, seconds: SECONDS, exec: p.exec });
        } catch (err) {
          r = { ...failedRun(err), targetPerSecond: targets[mode], fellShort: true };
          console.error(`${p.name} ${mode} paced rep ${rep}: failed (${r.failed}); no figures from this run`);
        }
        if (r.non2xx3xx > 0 || r.socketErrors) console.error(`${p.name} ${mode} paced rep ${rep}: ${r.non2xx3xx} non-2xx; ${r.socketErrors ?? ""}`);
        pacedRuns[p.name]![mode].push(r);
        count(p, r);
      }
    }
  }
  const p99Added = (path: string, mode: Mode) => central(pacedRuns[path]![mode].map((r, k) => r.p99Ms - pacedRuns.direct![mode][k]!.p99Ms));
  console.log(`paced at half of direct's median req/s (wrk delay(), ${PACED_CONNECTIONS} connections, 1 thread):`);
  console.log(`| mode | connections | target req/s | achieved req/s | runs short of target | p50 ms | p99 ms | p99 added over direct ms |`);
  console.log(`|---|---|---|---|---|---|---|---|`);
  for (const mode of MODES) {
    for (const p of paths) {
      const rs = pacedRuns[p.name]![mode];
      console.log(
        `| ${p.name} | ${mode} | ${targets[mode]} | ${Math.round(central(rs.map((r) => r.requestsPerSecond)))} | ${rs.filter((r) => r.fellShort).length}/${rs.length}${failedNote(rs)} | ` +
          `${fixed(central(rs.map((r) => r.p50Ms)), 2)} | ${fixed(central(rs.map((r) => r.p99Ms)), 2)} | ${p.name === "direct" ? "–" : `${fixed(p99Added(p.name, mode), 2)}${rs.some((r) => r.fellShort) ? " (pace not held: wrk's p99 leaves out the queueing)" : ""}`} |`,
      );
    }
  }

  const ratioLine = (path: string, base: string) =>
    MODES.map(
      (mode) =>
        `${mode}: req/s ${fixed(ratio(path, base, mode, "rps"), 2)}, p50 ${fixed(ratio(path, base, mode, "p50Ms"), 2)}, p99 ${fixed(ratio(path, base, mode, "p99Ms"), 2)}, ` +
        `machine CPU/req ${fixed(ratio(path, base, mode, "machineCpu"), 2)}` +
        (base === "direct" ? "" : `, proxies CPU/req ${fixed(ratio(path, base, mode, "proxyCpu"), 2)}`),
    ).join("; ");
  const ratios: Record<string, string> = { "sidecar/direct": ratioLine("sidecar", "direct") };
  const goals: Record<string, string> = {};
  const measured = new Set(paths.map((p) => p.name));
  if (measured.has("sidecar-mtls")) ratios["sidecar-mtls/sidecar"] = ratioLine("sidecar-mtls", "sidecar");
  const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
  for (const [path, base] of PAIRS) {
    if (!measured.has(path)) continue;
    ratios[`${path}/${base}`] = ratioLine(path, base);
    ratios[`${path}/direct`] = ratioLine(path, "direct");
    for (const mode of MODES) {
      const rps = ratio(path, base, mode, "rps");
      const cpu = ratio(path, base, mode, "proxyCpu");
      const added = p99Added(path, mode);
      const short = pacedRuns[path]![mode].filter((r) => r.fellShort).length;
      goals[path === "weft" ? mode : `${path} ${mode}`] =
        `${path}/${base} req/s ${fixed(rps, 2)} (goal >= ${GOALS.rpsOverSidecar}: ${verdict(rps >= GOALS.rpsOverSidecar)}); ` +
        `${path}/${base} proxies CPU/req ${fixed(cpu, 2)} (goal <= ${GOALS.proxyCpuOverSidecar}: ${verdict(cpu <= GOALS.proxyCpuOverSidecar)}); ` +
        `p99 added over direct at ${targets[mode]} req/s ${fixed(added, 2)} ms (goal <= ${GOALS.p99AddedMs} ms: ${verdict(added <= GOALS.p99AddedMs && short === 0)}${short ? `; ${path} fell short of the pace in ${short} runs` : ""})`;
    }
  }
  if (measured.has("weft-mtls") && measured.has("weft")) ratios["weft-mtls/weft"] = ratioLine("weft-mtls", "weft");
  for (const [name, line] of Object.entries(ratios)) console.log(`${name} (median of paired reps): ${line}`);
  for (const [mode, line] of Object.entries(goals)) console.log(`goals (issue 21), ${mode}: ${line}`);
  if (weftReason !== null) console.log(`mode weft: not available (${weftReason}); no weft ratios in this run`);
  if (mtlsReason !== null) console.log(`mode weft-mtls: not available (${mtlsReason}); no weft-mtls ratios in this run`);
  let records: string | null = null;
  const throughProxy = (answered.weft ?? 0) + (answered["weft-mtls"] ?? 0);
  if (throughProxy > 0) {
    // The agent drains the proxy's records in the background: the last run's get a moment to arrive.
    await new Promise((r) => setTimeout(r, 2_000));
    const counted = httpRequests(await c.agentMetrics("node-a")) - recordsBefore;
    records = `node-a's agent counted ${counted} requests (weft_http_requests_total) for the ${throughProxy} answers wrk got through the node proxy (${(((throughProxy - counted) / throughProxy) * 100).toFixed(1)}% not counted)`;
    console.log(records);
  }
  console.log(`${NAME}: load average at end ${load()}; run took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  writeResults("latest.json", {
    seconds: SECONDS,
    reps: REPS,
    connections: CONNECTIONS,
    pacedConnections: PACED_CONNECTIONS,
    backend: backend.kind,
    database: c.api.database,
    fabric: c.fabric.cidr,
    weft: weftReason ?? "measured",
    weftMtls: MTLS ? (mtlsReason ?? "measured") : "not asked (BENCH_L7_MTLS)",
    ratios,
    goals,
    records,
    pacedTargets: targets,
    samples,
    paced: pacedRuns,
  });
});
