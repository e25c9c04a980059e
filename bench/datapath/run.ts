/**
 * Datapath benchmark, one command (as root): npm run bench:datapath
 *
 * HTTP through network namespaces, driven by wrk from a client namespace,
 * against one backend (nginx, one worker) in a server namespace. Paths:
 *   direct   client -> backend address, over veths that carry no program;
 *   weft     client process in a cgroup with Weft's socket LB attached,
 *            connecting to a service VIP (rewritten at connect() to the
 *            backend), over the workloads' veths with Weft's tc policy on
 *            both; every map filled by the real agent process from the real
 *            API (tenant, identities, workloads, service, policy via REST).
 *            Both workloads sit on this node, so with the agent's default
 *            host routing their packets skip the root namespace's IP
 *            forwarding (bpf/README); WEFT_HOST_ROUTING=off (inherited by the
 *            agent) measures the routed path instead;
 *   sidecar  the client talks to a per-client TCP proxy on 127.0.0.1 in its
 *            own namespace (haproxy in tcp mode, and nginx with the stream
 *            module, one thread each), which connects to the backend.
 *   control  the direct path a second time, placed after weft: its ratio
 *            to direct is what this run's noise alone makes of two equal paths.
 * Each path with keep-alive connections and with a new connection per
 * request (Connection: close). Reported: req/s, p50 and p99, as ratios to
 * direct. Goal (issue 6): weft >= 0.95x direct.
 *
 * Topology, all from 198.18.0.0/15, no default route in any namespace:
 *   client ns: 198.18.110.2 (weft veth, a workload) and 198.18.112.2 (plain veth)
 *   server ns: 198.18.111.2 (weft veth, a workload) and 198.18.113.2 (plain veth)
 * The two pairs of veths are alike (root namespace forwards between them);
 * only the weft pair carries programs. The agent's pins, links, cgroup,
 * namespaces, veths and processes are removed on exit, on failure and on
 * SIGINT.
 *
 * Within a rep the paths run back to back, in reverse order every other
 * rep, so load from other processes on this shared machine hits them alike;
 * each ratio pairs a run with the direct run of the same rep and mode, and
 * every figure is the median over the reps (the mean of two).
 *
 * Env: BENCH_SECONDS (3 per run), BENCH_REPS (8, order reversed each rep:
 * keep it even so every path averages the same position),
 * BENCH_CONNECTIONS (16), BENCH_SIDECARS (haproxy,nginx-stream; "none" for none),
 * BENCH_BPF_STATS=1 (also report the ns per request spent in Weft's programs, per program),
 * BENCH_BREAKDOWN=1 (also run the weft veths without the socket LB, and the
 * direct path from inside the socket-LB cgroup).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { withCleanup } from "../support/cleanup.ts";
import { drive, type LoadResult } from "../support/load.ts";
import { addRoute, inNetns, makeCgroup, makeNetns, makePinDir, makeVeth, type Veth } from "../support/netns.ts";
import { availability, httpBackend, sidecar, type Backend, type SidecarKind } from "../support/proxies.ts";
import { benchTenant, median, revisionOf, startAgentProcess, startWeftApi, waitConverged } from "../support/weft.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const REPS = Number(process.env.BENCH_REPS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const GOAL = 0.95;
const PORT = 8080;
const SIDECAR_PORTS: Record<SidecarKind, number> = { haproxy: 15001, "nginx-stream": 15002 };
const NET = {
  clientWeft: { host: "198.18.110.1", ns: "198.18.110.2" },
  serverWeft: { host: "198.18.111.1", ns: "198.18.111.2" },
  clientPlain: { host: "198.18.112.1", ns: "198.18.112.2" },
  serverPlain: { host: "198.18.113.1", ns: "198.18.113.2" },
} as const;

const reason = cgroupUnavailableReason();
const tools = availability();
if (reason !== null || !tools.wrk) {
  console.error(`bench:datapath cannot run: ${reason ?? tools.missing.join("; ")}`);
  process.exit(1);
}
for (const m of tools.missing) console.error(`bench:datapath: missing ${m}`);
const wanted = (process.env.BENCH_SIDECARS ?? "haproxy,nginx-stream").split(",");
const sidecars = (["haproxy", "nginx-stream"] as const).filter((k) => wanted.includes(k) && (k === "haproxy" ? tools.haproxy : tools.nginxStream));
if (sidecars.length === 0) console.error("bench:datapath: no sidecar proxy (installed and in BENCH_SIDECARS): the sidecar baseline is left out (apt-get install haproxy)");

type Mode = "keep-alive" | "new connection";
/**
 * A run with the machine's CPU time per request (every process, kernel and
 * softirq included, from /proc/stat): on this shared VM req/s swings with
 * what neighbours and stolen time leave over, while the CPU a request costs
 * does not, so its ratio to direct is the steadier measure of Weft's cost.
 */
type Run = LoadResult & { cpuUsPerRequest: number; stealShare: number };
const TICKS_PER_SECOND = 100; // USER_HZ, what /proc/stat counts in on Linux

function machineCpu(): { busy: number; steal: number } {
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system + irq + softirq, steal };
}
interface Path {
  name: string;
  url: string;
  exec: string[];
}

await withCleanup("bench:datapath", async (cleanup) => {
  let client = "";
  let cgroup = "";
  let pinDir = "";
  let backend: Backend | undefined;
  const weftVeths: Veth[] = [];
  async function buildNetwork(): Promise<void> {
    client = makeNetns(cleanup, "dcli");
    const server = makeNetns(cleanup, "dsrv");
    weftVeths.push(
      makeVeth(cleanup, "dcw", client, `${NET.clientWeft.host}/30`, `${NET.clientWeft.ns}/30`),
      makeVeth(cleanup, "dsw", server, `${NET.serverWeft.host}/30`, `${NET.serverWeft.ns}/30`),
    );
    makeVeth(cleanup, "dcp", client, `${NET.clientPlain.host}/30`, `${NET.clientPlain.ns}/30`);
    makeVeth(cleanup, "dsp", server, `${NET.serverPlain.host}/30`, `${NET.serverPlain.ns}/30`);
    addRoute(client, "198.18.111.0/30", NET.clientWeft.host);
    addRoute(client, "198.18.113.0/30", NET.clientPlain.host);
    addRoute(server, "198.18.110.0/30", NET.serverWeft.host);
    addRoute(server, "198.18.112.0/30", NET.serverPlain.host);
    cgroup = makeCgroup(cleanup, "dcli");
    pinDir = makePinDir(cleanup, "dp");

    backend = await httpBackend(cleanup, server, PORT, tools.nginx ? "nginx" : "node");
    for (const k of sidecars) await sidecar(cleanup, k, client, SIDECAR_PORTS[k], NET.serverPlain.ns, PORT);
  }

  const started = performance.now();
  // The API starts (tens of seconds on a busy machine) while the namespaces are built; waited for before any failure unwinds.
  const apiStarting = startWeftApi(cleanup);
  apiStarting.catch(() => undefined);
  try {
    await buildNetwork();
  } catch (err) {
    await apiStarting.catch(() => undefined);
    throw err;
  }
  const api = await apiStarting;

  // Weft: the real API and agent, everything declared through REST.
  const node = `wbench-dp-${process.pid}`;
  const agent = await startAgentProcess(cleanup, api, { node, cgroup, pinDir });
  const { tenant, auth } = await benchTenant(cleanup, api, "dp");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);
  for (const id of ["client", "server"]) await put(`/identities/${id}`, { path: `/ns/bench/${id}` });
  await put("/workloads/client-1", { identity: "client", node, addresses: [NET.clientWeft.ns] });
  await put("/workloads/server-1", { identity: "server", node, addresses: [NET.serverWeft.ns] });
  const svc = await put("/services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: PORT }], backends: { explicit: [{ workload: "server-1", weight: 1 }] } });
  const vip = (JSON.parse(svc.body) as { vip: string }).vip;
  const last = await put("/policies/server-in", {
    subject: { identity: "server" },
    ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow" }],
  });
  await waitConverged(api, node, revisionOf(last));
  // tc programs on both workload veths, and on nothing else.
  const links = () => readdirSync(join(pinDir, "links")).filter((l) => l.startsWith("tcx-"));
  for (let i = 0; i < 100 && links().length < 4; i++) await new Promise((r) => setTimeout(r, 50));
  const ours = new Set(weftVeths.map((v) => v.hostIfindex));
  const stray = links().filter((l) => !ours.has(Number(l.split("-")[1])));
  if (links().length !== 4 || stray.length) throw new Error(`expected tc links on the two workload veths only, found ${links().join(", ")}`);

  console.log(
    `bench:datapath: backend ${backend!.kind}; API on ${api.database}; agent pid ${agent.pid}; VIP ${vip}:80 -> ${NET.serverWeft.ns}:${PORT}; ` +
      `wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run, ${REPS} reps`,
  );

  const paths: Path[] = [
    { name: "direct", url: `http://${NET.serverPlain.ns}:${PORT}/`, exec: inNetns(client) },
    { name: "weft", url: `http://${vip}:80/`, exec: inNetns(client, cgroup) },
    // The direct path again: how far apart two identical paths measure in this run (the noise floor).
    { name: "direct again (control)", url: `http://${NET.serverPlain.ns}:${PORT}/`, exec: inNetns(client) },
    ...sidecars.map((k) => ({ name: `sidecar ${k}`, url: `http://127.0.0.1:${SIDECAR_PORTS[k]}/`, exec: inNetns(client) })),
    // BENCH_BREAKDOWN=1: where Weft's cost comes from, one part at a time.
    ...(process.env.BENCH_BREAKDOWN === "1"
      ? [
          { name: "weft tc only", url: `http://${NET.serverWeft.ns}:${PORT}/`, exec: inNetns(client) },
          { name: "cgroup only", url: `http://${NET.serverPlain.ns}:${PORT}/`, exec: inNetns(client, cgroup) },
        ]
      : []),
  ];
  const modes: Mode[] = ["keep-alive", "new connection"];
  const run = async (p: Path, mode: Mode, seconds: number): Promise<Run> => {
    const before = machineCpu();
    const r = await drive(p.url, mode === "new connection" ? { connection: "close" } : {}, { connections: CONNECTIONS, seconds, exec: p.exec });
    const after = machineCpu();
    const requests = r.requests ?? r.requestsPerSecond * seconds;
    const ticks = after.busy - before.busy + (after.steal - before.steal);
    return { ...r, cpuUsPerRequest: ((after.busy - before.busy) * 1e6) / TICKS_PER_SECOND / requests, stealShare: ticks ? (after.steal - before.steal) / ticks : 0 };
  };

  // Each path answers, and only with 200s, before anything is timed.
  for (const p of paths) {
    const r = await run(p, "keep-alive", 1);
    if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${p.name}: warm-up got ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
  }

  // Optional: what Weft's own programs cost per request, from the kernel's BPF run-time statistics.
  const programCost = process.env.BENCH_BPF_STATS === "1" ? await measureProgramCost(paths[1]!, run, pinDir) : null;

  const setupSeconds = (performance.now() - started) / 1000;
  const results: Record<string, Record<Mode, Run[]>> = {};
  for (const p of paths) results[p.name] = { "keep-alive": [], "new connection": [] };
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of modes) {
      for (const p of rep % 2 === 0 ? paths : [...paths].reverse()) {
        const r = await run(p, mode, SECONDS);
        if (r.non2xx3xx > 0 || r.socketErrors) console.error(`${p.name} ${mode}: ${r.non2xx3xx} non-2xx; ${r.socketErrors ?? ""}`);
        results[p.name]![mode].push(r);
      }
    }
  }

  const central = (xs: number[]) => (xs.length === 2 ? (xs[0]! + xs[1]!) / 2 : median(xs));
  // Ratios pair each run with the direct run of the same rep (close in time), then take the central value.
  const paired = (rs: Run[], d: Run[], f: (r: Run) => number) => central(rs.map((r, k) => f(r) / f(d[k]!)));
  const summary = paths.flatMap((p) =>
    modes.map((mode) => {
      const rs = results[p.name]![mode];
      const d = results.direct![mode];
      return {
        path: p.name,
        mode,
        rps: central(rs.map((r) => r.requestsPerSecond)),
        p50Ms: central(rs.map((r) => r.p50Ms)),
        p99Ms: central(rs.map((r) => r.p99Ms)),
        rpsRatio: paired(rs, d, (r) => r.requestsPerSecond),
        rpsRatioRange: [Math.min(...rs.map((r, k) => r.requestsPerSecond / d[k]!.requestsPerSecond)), Math.max(...rs.map((r, k) => r.requestsPerSecond / d[k]!.requestsPerSecond))],
        p50Ratio: paired(rs, d, (r) => r.p50Ms),
        p99Ratio: paired(rs, d, (r) => r.p99Ms),
        cpuUsPerRequest: central(rs.map((r) => r.cpuUsPerRequest)),
        cpuRatio: paired(rs, d, (r) => r.cpuUsPerRequest),
        stealShare: central(rs.map((r) => r.stealShare)),
        runs: rs.map((r) => ({ rps: r.requestsPerSecond, p50Ms: r.p50Ms, p99Ms: r.p99Ms, cpuUsPerRequest: r.cpuUsPerRequest, stealShare: r.stealShare, socketErrors: r.socketErrors ?? null })),
      };
    }),
  );
  console.log(`| path | mode | req/s | x direct | reps' range | p50 ms | x direct | p99 ms | x direct | CPU µs/req | x direct | steal |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|---|`);
  for (const s of summary) {
    console.log(
      `| ${s.path} | ${s.mode} | ${Math.round(s.rps)} | ${s.rpsRatio.toFixed(2)} | ${s.rpsRatioRange.map((x) => x.toFixed(2)).join("–")} | ${s.p50Ms.toFixed(2)} | ${s.p50Ratio.toFixed(2)} | ${s.p99Ms.toFixed(2)} | ${s.p99Ratio.toFixed(2)} | ${s.cpuUsPerRequest.toFixed(1)} | ${s.cpuRatio.toFixed(2)} | ${(s.stealShare * 100).toFixed(0)}% |`,
    );
  }
  const weft = summary.filter((s) => s.path === "weft");
  const met = weft.every((s) => s.rpsRatio >= GOAL);
  const control = summary.filter((s) => s.path.startsWith("direct again"));
  console.log(
    `goal weft >= ${GOAL}x direct req/s: ${met ? "met" : "NOT met"} (${weft.map((s) => `${s.mode} ${s.rpsRatio.toFixed(2)}`).join(", ")}); ` +
      `the control (direct twice) measured ${control.map((s) => `${s.mode} ${s.rpsRatio.toFixed(2)}`).join(", ")}; ` +
      `machine CPU per request, direct / weft (the req/s ratio on a machine with nothing else to do): ${weft.map((s) => `${s.mode} ${(1 / s.cpuRatio).toFixed(2)}`).join(", ")}; run took ${((performance.now() - started) / 1000).toFixed(1)} s (setup ${setupSeconds.toFixed(1)} s)`,
  );

  if (programCost) {
    for (const c of programCost) {
      console.log(`weft programs, ${c.mode}: ${c.nsPerRequest.toFixed(0)} ns of program time per request (${c.runsPerRequest.toFixed(1)} program runs, ${c.nsPerRun.toFixed(0)} ns each) at ${Math.round(c.rps)} req/s`);
      for (const [name, p] of Object.entries(c.programs)) {
        if (p.runsPerRequest > 0) console.log(`  ${name}: ${p.nsPerRequest.toFixed(0)} ns per request, ${p.runsPerRequest.toFixed(1)} runs of ${(p.nsPerRequest / p.runsPerRequest).toFixed(0)} ns`);
      }
    }
  }
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(
    new URL("./results/latest.json", import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), backend: backend!.kind, database: api.database, seconds: SECONDS, reps: REPS, connections: CONNECTIONS, goal: GOAL, met, summary, programCost }, null, 2)}\n`,
  );
});

/**
 * BENCH_BPF_STATS=1: turns on kernel.bpf_stats_enabled (global: every BPF
 * program on the host pays a few ns per run while it is on) for one weft run
 * per mode, and reads run_cnt and run_time_ns of the programs behind the
 * agent's pinned links (bpftool). Restored in a finally.
 */
async function measureProgramCost(weft: Path, run: (p: Path, mode: Mode, seconds: number) => Promise<Run>, pinDir: string) {
  const linksDir = join(pinDir, "links");
  const progIds = [...new Set(readdirSync(linksDir).map((l) => (JSON.parse(execFileSync("bpftool", ["-j", "link", "show", "pinned", join(linksDir, l)], { encoding: "utf8" })) as { prog_id: number }).prog_id))];
  const stats = () =>
    progIds.map((id) => {
      const p = JSON.parse(execFileSync("bpftool", ["-j", "prog", "show", "id", String(id)], { encoding: "utf8" })) as { name: string; run_time_ns?: number; run_cnt?: number };
      return { name: p.name, ns: p.run_time_ns ?? 0, runs: p.run_cnt ?? 0 };
    });
  const previous = readFileSync("/proc/sys/kernel/bpf_stats_enabled", "utf8").trim();
  const out: { mode: Mode; rps: number; nsPerRequest: number; runsPerRequest: number; nsPerRun: number; programs: Record<string, { nsPerRequest: number; runsPerRequest: number }> }[] = [];
  try {
    writeFileSync("/proc/sys/kernel/bpf_stats_enabled", "1");
    for (const mode of ["keep-alive", "new connection"] as const) {
      const before = stats();
      const r = await run(weft, mode, SECONDS);
      const after = stats();
      const requests = r.requests ?? r.requestsPerSecond * SECONDS;
      // Per program name (weft_from_wl, weft_to_wl, weft_connect4, ...), each program counted once however many links run it.
      const programs: Record<string, { nsPerRequest: number; runsPerRequest: number }> = {};
      after.forEach((a, i) => {
        const p = (programs[a.name] ??= { nsPerRequest: 0, runsPerRequest: 0 });
        p.nsPerRequest += (a.ns - before[i]!.ns) / requests;
        p.runsPerRequest += (a.runs - before[i]!.runs) / requests;
      });
      const ns = Object.values(programs).reduce((t, p) => t + p.nsPerRequest, 0);
      const runs = Object.values(programs).reduce((t, p) => t + p.runsPerRequest, 0);
      out.push({ mode, rps: r.requestsPerSecond, nsPerRequest: ns, runsPerRequest: runs, nsPerRun: runs ? ns / runs : 0, programs });
    }
  } finally {
    writeFileSync("/proc/sys/kernel/bpf_stats_enabled", previous);
  }
  return out;
}
