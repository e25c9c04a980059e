/**
 * What both datapath benchmarks share (run.ts on one node, cross-node.ts on
 * a simulated cluster of two): the wrk runs with the machine's CPU per
 * request, the reps in alternating order, the ratios paired with the direct
 * run of the same rep, the table, the goal line, the optional BPF program
 * cost and the results file. A topology only says which paths there are.
 *
 * Env: BENCH_SECONDS (3 per run), BENCH_REPS (8, order reversed each rep:
 * keep it even so every path averages the same position),
 * BENCH_CONNECTIONS (16), BENCH_SIDECARS (haproxy,nginx-stream; "none" for none).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { drive, type LoadResult } from "../support/load.ts";
import { availability, type Availability, type SidecarKind } from "../support/proxies.ts";
import { median } from "../support/weft.ts";

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
export const REPS = Number(process.env.BENCH_REPS ?? 8);
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
export const GOAL = 0.95;

export type Mode = "keep-alive" | "new connection";
export const MODES: Mode[] = ["keep-alive", "new connection"];

/** A path: a URL and the argv prefix wrk runs under (namespace, cgroup). The first path is the baseline, "direct". */
export interface Path {
  name: string;
  url: string;
  exec: string[];
}

/**
 * Checks what the bench needs (`unavailable`: root, bpf, cgroups, or null),
 * exits when it cannot run, and answers the tools and the sidecars wanted
 * (BENCH_SIDECARS) that are installed.
 */
export function prerequisites(name: string, unavailable: string | null): { tools: Availability; sidecars: SidecarKind[] } {
  const tools = availability();
  if (unavailable !== null || !tools.wrk) {
    console.error(`${name} cannot run: ${unavailable ?? tools.missing.join("; ")}`);
    process.exit(1);
  }
  for (const m of tools.missing) console.error(`${name}: missing ${m}`);
  const wanted = (process.env.BENCH_SIDECARS ?? "haproxy,nginx-stream").split(",");
  const sidecars = (["haproxy", "nginx-stream"] as const).filter((k) => wanted.includes(k) && (k === "haproxy" ? tools.haproxy : tools.nginxStream));
  if (sidecars.length === 0) console.error(`${name}: no sidecar proxy (installed and in BENCH_SIDECARS): the sidecar baseline is left out (apt-get install haproxy)`);
  return { tools, sidecars };
}

/**
 * A run with the machine's CPU time per request (every process, kernel and
 * softirq included, from /proc/stat): on this shared VM req/s swings with
 * what neighbours and stolen time leave over, while the CPU a request costs
 * does not, so its ratio to direct is the steadier measure of Weft's cost.
 */
export type Run = LoadResult & { cpuUsPerRequest: number; stealShare: number };
const TICKS_PER_SECOND = 100; // USER_HZ, what /proc/stat counts in on Linux

function machineCpu(): { busy: number; steal: number } {
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system + irq + softirq, steal };
}

export async function run(p: Path, mode: Mode, seconds: number): Promise<Run> {
  const before = machineCpu();
  const r = await drive(p.url, mode === "new connection" ? { connection: "close" } : {}, { connections: CONNECTIONS, seconds, exec: p.exec });
  const after = machineCpu();
  const requests = r.requests ?? r.requestsPerSecond * seconds;
  const ticks = after.busy - before.busy + (after.steal - before.steal);
  return { ...r, cpuUsPerRequest: ((after.busy - before.busy) * 1e6) / TICKS_PER_SECOND / requests, stealShare: ticks ? (after.steal - before.steal) / ticks : 0 };
}

/** Each path answers, and only with 200s, before anything is timed. */
export async function warmUp(paths: Path[]): Promise<void> {
  for (const p of paths) {
    const r = await run(p, "keep-alive", 1);
    if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${p.name}: warm-up got ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
  }
}

/**
 * REPS reps; within a rep every path runs back to back, in reverse order
 * every other rep, so load from other processes on this shared machine hits
 * them alike. Ratios pair each run with the direct run (paths[0]) of the
 * same rep and mode; every figure is the central value over the reps (the
 * median; the mean of two).
 */
export async function measurePaths(paths: Path[]) {
  const results: Record<string, Record<Mode, Run[]>> = {};
  for (const p of paths) results[p.name] = { "keep-alive": [], "new connection": [] };
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      for (const p of rep % 2 === 0 ? paths : [...paths].reverse()) {
        const r = await run(p, mode, SECONDS);
        if (r.non2xx3xx > 0 || r.socketErrors) console.error(`${p.name} ${mode}: ${r.non2xx3xx} non-2xx; ${r.socketErrors ?? ""}`);
        results[p.name]![mode].push(r);
      }
    }
  }
  const central = (xs: number[]) => (xs.length === 2 ? (xs[0]! + xs[1]!) / 2 : median(xs));
  const paired = (rs: Run[], d: Run[], f: (r: Run) => number) => central(rs.map((r, k) => f(r) / f(d[k]!)));
  const direct = results[paths[0]!.name]!;
  return paths.flatMap((p) =>
    MODES.map((mode) => {
      const rs = results[p.name]![mode];
      const d = direct[mode];
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
}
export type Summary = Awaited<ReturnType<typeof measurePaths>>;

/** Prints the table and the goal line (weft against direct, with the control); answers whether the goal was met. */
export function report(summary: Summary, started: number, setupSeconds: number): boolean {
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
  return met;
}

/** results/<file>: what the run measured, with its settings. */
export function writeResults(file: string, fields: Record<string, unknown>): void {
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/${file}`, import.meta.url), `${JSON.stringify({ at: new Date().toISOString(), seconds: SECONDS, reps: REPS, connections: CONNECTIONS, goal: GOAL, ...fields }, null, 2)}\n`);
}

/** The tc links the agent pinned (tcx-<ifindex>-<hook>) in a pin directory, waited for until `count` are there (5 s at most). */
export async function tcLinks(pinDir: string, count: number): Promise<string[]> {
  const links = () => readdirSync(join(pinDir, "links")).filter((l) => l.startsWith("tcx-"));
  for (let i = 0; i < 100 && links().length < count; i++) await new Promise((r) => setTimeout(r, 50));
  return links();
}

export type ProgramCost = Awaited<ReturnType<typeof measureProgramCost>>;

/**
 * BENCH_BPF_STATS=1: turns on kernel.bpf_stats_enabled (global: every BPF
 * program on the host pays a few ns per run while it is on) for one weft run
 * per mode, and reads run_cnt and run_time_ns of the programs behind the
 * agents' pinned links (bpftool; every pin directory given: one per node).
 * Restored in a finally.
 */
export async function measureProgramCost(weft: Path, pinDirs: string[]) {
  const progIds = [
    ...new Set(
      pinDirs.flatMap((pinDir) => {
        const linksDir = join(pinDir, "links");
        return readdirSync(linksDir).map((l) => (JSON.parse(execFileSync("bpftool", ["-j", "link", "show", "pinned", join(linksDir, l)], { encoding: "utf8" })) as { prog_id: number }).prog_id);
      }),
    ),
  ];
  const stats = () =>
    progIds.map((id) => {
      const p = JSON.parse(execFileSync("bpftool", ["-j", "prog", "show", "id", String(id)], { encoding: "utf8" })) as { name: string; run_time_ns?: number; run_cnt?: number };
      return { name: p.name, ns: p.run_time_ns ?? 0, runs: p.run_cnt ?? 0 };
    });
  const previous = readFileSync("/proc/sys/kernel/bpf_stats_enabled", "utf8").trim();
  const out: { mode: Mode; rps: number; nsPerRequest: number; runsPerRequest: number; nsPerRun: number; programs: Record<string, { nsPerRequest: number; runsPerRequest: number }> }[] = [];
  try {
    writeFileSync("/proc/sys/kernel/bpf_stats_enabled", "1");
    for (const mode of MODES) {
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

export function reportProgramCost(programCost: ProgramCost): void {
  for (const c of programCost) {
    console.log(`weft programs, ${c.mode}: ${c.nsPerRequest.toFixed(0)} ns of program time per request (${c.runsPerRequest.toFixed(1)} program runs, ${c.nsPerRun.toFixed(0)} ns each) at ${Math.round(c.rps)} req/s`);
    for (const [name, p] of Object.entries(c.programs)) {
      if (p.runsPerRequest > 0) console.log(`  ${name}: ${p.nsPerRequest.toFixed(0)} ns per request, ${p.runsPerRequest.toFixed(1)} runs of ${(p.nsPerRequest / p.runsPerRequest).toFixed(0)} ns`);
    }
  }
}
