/**
 * Cross-node transport benchmark, one command (as root, under the kernel lock):
 *   flock /tmp/weft-kernel.lock npm run bench:transport
 *
 * A simulated cluster of two nodes (bench/support/cluster.ts: the real API,
 * one real agent per node, each with --svid-files), client pods on node-a,
 * HTTP servers (nginx, one worker) on node-b, wrk in the client pods (in
 * node-a's cgroup, as the pod's own processes are). Three modes:
 *   plaintext  client -> server:8080, a policy allowing it (the tenant's
 *              default transport, plaintext);
 *   sidecar    the Istio-sidecar topology on the same pods: client ->
 *              its pod's HAProxy on 127.0.0.1:15001, which originates TLS
 *              1.3 with the client's SVID -> the fabric -> the server pod's
 *              HAProxy on server:15006, which requires and verifies the
 *              client certificate -> nginx on 127.0.0.1:8080 (tls-sidecar.ts;
 *              the SVIDs are the ones the agents issued);
 *   weft       a second pair, mclient -> mserver:8080, whose policy rule
 *              says transport "mtls": node-a's datapath steers the
 *              connection into its transport, which carries it over mutual
 *              TLS to node-b's transport, which delivers it from mclient's
 *              address. Measured only when every check of weft-transport.ts
 *              passes and the warm-up was counted as steered; otherwise the
 *              bench prints "mode weft: not available (why)" and measures
 *              the other two.
 * Each mode with keep-alive and with a new connection per request
 * (Connection: close). Reps alternate the order of the modes. Per run:
 * req/s, p50, p99; CPU per request two ways: utime+stime of the processes
 * on the path (/proc/PID/stat: the server, the two haproxies or the two
 * transports; wrk is left out), and the whole machine's busy time
 * (/proc/stat: kernel, softirq and every process, wrk included). Ratios are
 * paired within a rep, then the median over reps.
 *
 * Env: BENCH_SECONDS (3), BENCH_REPS (8), BENCH_CONNECTIONS (16) (measure.ts).
 * Addresses from 198.18.0.0/15 only (the cluster module's); everything made
 * is removed on exit, failure or signal, and by the janitor if killed.
 */
import { loadavg } from "node:os";
import { cpuSeconds } from "../api/cpu.ts";
import { MODES, REPS, SECONDS, CONNECTIONS, run, type Mode, type Run } from "../datapath/measure.ts";
import { withCleanup } from "../support/cleanup.ts";
import { startCluster } from "../support/cluster.ts";
import { inNetns } from "../support/netns.ts";
import { httpBackend } from "../support/proxies.ts";
import { http, median } from "../support/weft.ts";
import { prerequisites } from "./prerequisites.ts";
import { svidFiles } from "./svid-files.ts";
import { SIDECAR_OUTBOUND_PORT, SIDECAR_INBOUND_PORT, tlsSidecar } from "./tls-sidecar.ts";
import { problemText, steeredPackets, transportCounts, transportPid, transportUnavailable } from "./weft-transport.ts";
import { writeResults } from "./results.ts";

const NAME = "bench:transport";
const PORT = 8080;

const tools = prerequisites(NAME);

interface BenchPath {
  name: "plaintext" | "sidecar" | "weft";
  url: string;
  exec: string[];
  /** The processes whose CPU a request costs on this path (wrk's own is left out). */
  pids: () => number[];
}
type Sample = Run & { pathCpuUsPerRequest: number };

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
/** utime+stime of `pids` so far; NaN when one is gone (a transport restarted mid-run: that run's figure is void, not wrong). */
const pathCpu = (pids: number[]) => {
  try {
    return pids.reduce((s, p) => s + cpuSeconds(p), 0);
  } catch {
    return Number.NaN;
  }
};

await withCleanup(NAME, async (cleanup) => {
  const started = performance.now();
  console.log(`${NAME}: load average at start ${load()}`);
  const c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], cleanup, agentArgs: ["--svid-files"] });
  const a = c.nodes["node-a"]!;
  const client = c.addWorkload("node-a", { name: "client" });
  const server = c.addWorkload("node-b", { name: "server" });
  const mclient = c.addWorkload("node-a", { name: "mclient" });
  const mserver = c.addWorkload("node-b", { name: "mserver" });

  const t = await c.tenant("tx");
  for (const w of [client, server, mclient, mserver]) {
    await t.put(`/identities/${w.name}`, { path: `/ns/bench/${w.name}` });
    await t.put(`/workloads/${w.name}`, { identity: w.name, node: w.node, addresses: [w.address] });
  }
  await t.put("/policies/server-in", {
    subject: { identity: "server" },
    ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }, { port: SIDECAR_INBOUND_PORT, protocol: "tcp" }], action: "allow" }],
  });
  // Not t.call: a refusal is an answer here (the API without issue 18's field), not a failure of the bench.
  const mtls = await http(`${c.api.base}/v1/tenants/${t.tenant}/policies/mserver-in`, "PUT", t.auth, {
    subject: { identity: "mserver" },
    ingress: [{ peers: [{ identity: "mclient" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow", transport: "mtls" }],
  });
  let weftReason: string | null = mtls.status >= 300 ? `the API refuses transport "mtls" on a policy rule: ${problemText(mtls.status, mtls.body)}` : null;
  await c.converged();

  const backend = await httpBackend(cleanup, server.netns, PORT, tools.nginx ? "nginx" : "node");
  const mbackend = await httpBackend(cleanup, mserver.netns, PORT, backend.kind);
  const [clientSvid, serverSvid] = await Promise.all([svidFiles(cleanup, a.stateDir, t.tenant, "client"), svidFiles(cleanup, c.nodes["node-b"]!.stateDir, t.tenant, "server")]);
  const clientSidecar = await tlsSidecar(cleanup, { netns: client.netns, podAddress: client.address, svid: clientSvid, appPort: PORT, peerAddress: server.address });
  const serverSidecar = await tlsSidecar(cleanup, { netns: server.netns, podAddress: server.address, svid: serverSvid, appPort: PORT, peerAddress: client.address });

  const paths: BenchPath[] = [
    { name: "plaintext", url: `http://${server.address}:${PORT}/`, exec: inNetns(client.netns, a.cgroup), pids: () => [backend.pid] },
    { name: "sidecar", url: `http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/`, exec: inNetns(client.netns, a.cgroup), pids: () => [clientSidecar.pid, serverSidecar.pid, backend.pid] },
  ];
  const warm = async (p: BenchPath) => {
    const r = await run(p, "keep-alive", 1);
    if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${p.name}: warm-up got ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
  };
  for (const p of paths) await warm(p);

  weftReason ??= await transportUnavailable(c, "mclient", "mserver");
  if (weftReason === null) {
    // Looked up for every run: an agent restarts its transport when it must, and the new one's CPU counts from then on.
    const transports = () => ["node-a", "node-b"].map((n) => transportPid(c, n) ?? Number.NaN);
    const weft: BenchPath = { name: "weft", url: `http://${mserver.address}:${PORT}/`, exec: inNetns(mclient.netns, a.cgroup), pids: () => [...transports(), mbackend.pid] };
    try {
      const before = await steeredPackets(c, "node-a");
      await warm(weft);
      const steered = (await steeredPackets(c, "node-a")) - before;
      if (steered === 0) weftReason = "node-a counted no packet as steered during the warm-up: the connections did not go through the transport";
      else paths.push(weft);
    } catch (err) {
      weftReason = `the warm-up through the transports failed: ${(err as Error).message} (datapath: ${await transportCounts(c)})`;
    }
  }
  console.log(
    `${NAME}: backend ${backend.kind}; API on ${c.api.database}; fabric ${c.fabric.cidr}; ` +
      `plaintext/sidecar: client ${client.address} (node-a) -> server ${server.address} (node-b); weft: mclient ${mclient.address} -> mserver ${mserver.address}; ` +
      `wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run, ${REPS} reps, order reversed every other rep`,
  );
  if (weftReason !== null) console.log(`mode weft: not available (${weftReason})`);

  const samples: Record<string, Record<Mode, Sample[]>> = {};
  const resumed: Record<string, string>[] = [];
  for (const p of paths) samples[p.name] = { "keep-alive": [], "new connection": [] };
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      for (const p of rep % 2 === 0 ? paths : [...paths].reverse()) {
        const pids = p.pids();
        const cpuBefore = pathCpu(pids);
        const running = run(p, mode, SECONDS);
        // Halfway through (haproxy's SSL rates cover the last second): did the server pod's sidecar resume sessions?
        if (p.name === "sidecar" && mode === "new connection") {
          await new Promise((r) => setTimeout(r, (SECONDS * 1000) / 2));
          resumed.push(await serverSidecar.info());
        }
        const r = await running;
        const requests = r.requests ?? r.requestsPerSecond * SECONDS;
        const pathCpuUsPerRequest = ((pathCpu(pids) - cpuBefore) * 1e6) / requests;
        if (r.non2xx3xx > 0 || r.socketErrors) console.error(`${p.name} ${mode} rep ${rep}: ${r.non2xx3xx} non-2xx; ${r.socketErrors ?? ""}`);
        if (Number.isNaN(pathCpuUsPerRequest)) console.error(`${p.name} ${mode} rep ${rep}: a process of the path (${pids.join(", ")}) was gone; no path CPU for this run`);
        samples[p.name]![mode].push({ ...r, pathCpuUsPerRequest });
      }
    }
  }

  const figures = {
    rps: (s: Sample) => s.requestsPerSecond,
    p50Ms: (s: Sample) => s.p50Ms,
    p99Ms: (s: Sample) => s.p99Ms,
    pathCpuUsPerRequest: (s: Sample) => s.pathCpuUsPerRequest,
    machineCpuUsPerRequest: (s: Sample) => s.cpuUsPerRequest,
  };
  type Figure = keyof typeof figures;
  /** The median (the mean of two) of the runs that have the figure. */
  const central = (all: number[]) => {
    const xs = all.filter(Number.isFinite);
    return xs.length === 0 ? Number.NaN : xs.length === 2 ? (xs[0]! + xs[1]!) / 2 : median(xs);
  };
  const value = (path: string, mode: Mode, f: Figure) => central(samples[path]![mode].map(figures[f]));
  /** The median over reps of path's figure over base's figure in the same rep and mode. */
  const ratio = (path: string, base: string, mode: Mode, f: Figure) => central(samples[path]![mode].map((s, k) => figures[f](s) / figures[f](samples[base]![mode][k]!)));

  console.log(`| mode | connections | req/s | p50 ms | p99 ms | path CPU µs/req | machine CPU µs/req | req/s x plaintext | path CPU x plaintext |`);
  console.log(`|---|---|---|---|---|---|---|---|---|`);
  for (const mode of MODES) {
    for (const p of paths) {
      console.log(
        `| ${p.name} | ${mode} | ${Math.round(value(p.name, mode, "rps"))} | ${value(p.name, mode, "p50Ms").toFixed(2)} | ${value(p.name, mode, "p99Ms").toFixed(2)} | ` +
          `${value(p.name, mode, "pathCpuUsPerRequest").toFixed(1)} | ${value(p.name, mode, "machineCpuUsPerRequest").toFixed(1)} | ` +
          `${ratio(p.name, "plaintext", mode, "rps").toFixed(2)} | ${ratio(p.name, "plaintext", mode, "pathCpuUsPerRequest").toFixed(2)} |`,
      );
    }
  }
  const ratioLine = (path: string, base: string) =>
    MODES.map(
      (mode) =>
        `${mode}: req/s ${ratio(path, base, mode, "rps").toFixed(2)}, p50 ${ratio(path, base, mode, "p50Ms").toFixed(2)}, p99 ${ratio(path, base, mode, "p99Ms").toFixed(2)}, ` +
        `path CPU/req ${ratio(path, base, mode, "pathCpuUsPerRequest").toFixed(2)}, machine CPU/req ${ratio(path, base, mode, "machineCpuUsPerRequest").toFixed(2)}`,
    ).join("; ");
  const ratios: Record<string, string> = { "sidecar/plaintext": ratioLine("sidecar", "plaintext") };
  if (weftReason === null) {
    ratios["weft/sidecar"] = ratioLine("weft", "sidecar");
    ratios["weft/plaintext"] = ratioLine("weft", "plaintext");
  }
  console.log(
    `sidecar, new connection: the server pod's haproxy resumed ${resumed.map((i) => `${i.SslFrontendSessionReuse_pct ?? "?"}%`).join(", ")} of its TLS sessions ` +
      `(SslFrontendSessionReuse_pct halfway through each run; full handshakes/s: ${resumed.map((i) => i.SslFrontendKeyRate ?? "?").join(", ")})`,
  );
  for (const [name, line] of Object.entries(ratios)) console.log(`${name} (median of paired reps): ${line}`);
  if (weftReason === null) {
    const ahead = MODES.every((m) => ratio("weft", "sidecar", m, "rps") > 1 && ratio("weft", "sidecar", m, "pathCpuUsPerRequest") < 1);
    console.log(`goal (issue 18) weft ahead of the sidecar pair on req/s and CPU per request in both connection modes: ${ahead ? "met" : "NOT met"}`);
  } else {
    console.log(`mode weft: not available (${weftReason}); no weft ratios in this run`);
  }
  console.log(`${NAME}: load average at end ${load()}; run took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  writeResults("latest.json", { seconds: SECONDS, reps: REPS, connections: CONNECTIONS, backend: backend.kind, database: c.api.database, fabric: c.fabric.cidr, weft: weftReason ?? "measured", ratios, samples });
});
