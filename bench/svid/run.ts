/**
 * bench/svid: X.509-SVID issuance through the HTTP API (authenticate, verify
 * the CSR, sign, record and audit in the database) against the raw limit of
 * the same machine in the same run: Node crypto's P-256 sign and verify, one
 * of each per certificate, on one core.
 *   npm run bench:svid     (PGlite in memory; set DATABASE_URL for Postgres)
 *   BENCH_SECONDS=10 BENCH_COUNT=40000 BENCH_CONNECTIONS=32 to change the bounds
 *   BENCH_CPU_PROF=dir     writes a CPU profile of the API process there
 * The API runs in its own process (bench/svid/server.ts), the load comes from
 * wrk (C, one thread) cycling through a pool of distinct CSRs, and the raw
 * limit is measured while the API sits idle. The server's CPU time over the
 * run is read from /proc, so the table says how many cores the API really
 * used against the one-core raw figure. Also shown, outside the limit: a
 * verify under a key seen for the first time (import included), which is
 * what each CSR costs, and how many records each group commit carried.
 * Goal: issuance / raw limit >= 0.3.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measureLeafThroughput } from "./throughput.ts";
import { driveScript, startChild, stopChild, table, type LoadResult } from "../support/load.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const maxCount = Number(process.env.BENCH_COUNT ?? 40_000);
const connections = Number(process.env.BENCH_CONNECTIONS ?? process.env.BENCH_CONCURRENCY ?? 32);
const POOL = 64;

/** Distinct P-256 CSRs made by openssl, as workloads would make them; requests cycle through them. */
function csrPool(n: number): string[] {
  const dir = mkdtempSync(join(tmpdir(), "weft-bench-svid-"));
  try {
    return Array.from({ length: n }, (_, i) => {
      const key = join(dir, `${i}.key`);
      const csr = join(dir, `${i}.csr`);
      execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
      execFileSync("openssl", ["req", "-new", "-key", key, "-subj", "/O=bench", "-out", csr]);
      return readFileSync(csr, "utf8");
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * wrk's Lua: POST each connection's next CSR body from the pool; stop the
 * thread once `limit` responses came back (the count bound; -d is the time bound).
 */
function script(path: string, token: string, bodies: string[], limit: number): string {
  const lua = (s: string) => JSON.stringify(s); // JSON string escapes are valid Lua escapes for this ASCII
  return `
local path = ${lua(path)}
local headers = { ["authorization"] = ${lua(`Bearer ${token}`)}, ["content-type"] = "application/json" }
local bodies = { ${bodies.map(lua).join(",\n")} }
local requests = {}
-- In init, not at load: wrk.format takes the Host header from wrk.host, set by then.
init = function(args)
  for i, b in ipairs(bodies) do requests[i] = wrk.format("POST", path, headers, b) end
end
local n, done, limit = 0, 0, ${limit}
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end
response = function(status, headers, body)
  done = done + 1
  if done >= limit then wrk.thread:stop() end
end
`;
}

/** utime + stime of a process, in seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of stat(5)
  return ticks / 100; // USER_HZ is 100 on Linux
}

const csrs = csrPool(POOL);
const bodies = csrs.map((csr) => JSON.stringify({ csr }));
const prof = process.env.BENCH_CPU_PROF;
const server = await startChild<{ port: number; path: string; token: string }>(
  ["bench/svid/server.ts"],
  {},
  prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [],
);
const url = `http://127.0.0.1:${server.ready.port}${server.ready.path}`;

// The raw limit before and after the load, on the wall clock and in CPU time;
// the higher of each pair counts (a higher limit only lowers the ratio).
const rawBefore = { wall: measureLeafThroughput(5000, "wall"), cpu: measureLeafThroughput(5000, "cpu") };

let warm: LoadResult, run: LoadResult, cpuUsed: number, serverCpuSeconds: number;
let committed: { issuances: number; audited: number; transactions?: number; records?: number };
try {
  // One request by hand: the answer must be a certificate, not an error page.
  const first = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${server.ready.token}`, "content-type": "application/json" },
    body: bodies[0],
  });
  const firstBody = await first.text();
  if (first.status !== 201 || !firstBody.includes("BEGIN CERTIFICATE")) throw new Error(`first issuance: ${first.status} ${firstBody}`);

  warm = await driveScript(url, script(server.ready.path, server.ready.token, bodies, 2000), { connections, seconds: 3, timeoutSeconds: 10 });
  const cpu0 = cpuSeconds(server.child.pid!);
  run = await driveScript(url, script(server.ready.path, server.ready.token, bodies, maxCount), { connections, seconds, timeoutSeconds: 10 });
  serverCpuSeconds = cpuSeconds(server.child.pid!) - cpu0;
  cpuUsed = serverCpuSeconds / run.seconds!;
} finally {
  await new Promise((r) => setTimeout(r, 200)); // let requests wrk left in flight finish
  const done = server.nextLine();
  await stopChild(server.child);
  const line = await done;
  committed = line ? (JSON.parse(line) as typeof committed) : { issuances: -1, audited: -1 };
}
for (const [name, r] of Object.entries({ warm, run })) {
  if (r.non2xx3xx > 0 || r.socketErrors) throw new Error(`${name}: ${r.non2xx3xx} error responses, ${r.socketErrors ?? "no socket errors"}: the figures are void`);
}
// Every certificate a client received must have its record and audit row committed.
const answered = 1 + warm.requests! + run.requests!;
if (committed.issuances < answered || committed.audited < answered) {
  throw new Error(`${answered} certificates answered but ${committed.issuances} issuance records and ${committed.audited} audit rows committed`);
}

const rawAfter = { wall: measureLeafThroughput(5000, "wall"), cpu: measureLeafThroughput(5000, "cpu") };
const best = (a: typeof rawAfter.wall, b: typeof rawAfter.wall) => (a.rawCertLimit >= b.rawCertLimit ? a : b);
const raw = best(rawBefore.wall, rawAfter.wall);
const rawCpu = best(rawBefore.cpu, rawAfter.cpu);
const perSec = run.requests! / run.seconds!;
const perCpuSec = run.requests! / serverCpuSeconds;
const f = (x: number) => Math.round(x);
const cores = Math.max(1, cpuUsed);
console.log(
  `\nbench/svid: ${run.requests} X.509-SVIDs in ${run.seconds!.toFixed(1)} s, ${connections} connections (wrk, 1 thread), ` +
    `database ${process.env.DATABASE_URL ? "postgres" : "pglite (in memory)"}; ${committed.issuances} issuance records and ${committed.audited} audit rows committed for ${answered} answers` +
    (committed.transactions ? `, in ${committed.transactions} transactions (${(committed.records! / committed.transactions).toFixed(1)} records each on average)` : ""),
);
console.log(
  `The API is one process with one JS thread; it used ${cpuUsed.toFixed(2)} cores over the run (its CPU time / wall time). ` +
    `Raw figures are one core, measured before and after the load (the higher counts).` +
    // PGlite runs inside the API, so its work is in the API's CPU time; a
    // Postgres server's is not, and may be on another machine.
    (process.env.DATABASE_URL ? " The Postgres server's CPU time is not counted: both ratios leave the database out." : "") +
    "\n",
);
console.log(
  table([
    ["measure", "per wall second", "per CPU second"],
    [`X.509-SVID issuance via HTTP API (p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(1)} ms)`, f(perSec), f(perCpuSec)],
    ["leaf build + sign alone (no HTTP, no DB)", f(raw.leavesPerSec), f(rawCpu.leavesPerSec)],
    ["raw P-256 sign", f(raw.signPerSec), f(rawCpu.signPerSec)],
    ["raw P-256 verify", f(raw.verifyPerSec), f(rawCpu.verifyPerSec)],
    ["raw limit: 1 sign + 1 verify per cert", f(raw.rawCertLimit), f(rawCpu.rawCertLimit)],
    ["(not in the limit) P-256 verify under a key seen for the first time, import included, as each CSR needs", f(raw.freshKeyVerifyPerSec), f(rawCpu.freshKeyVerifyPerSec)],
    [
      `ratio issuance / raw limit, wall: / (limit x ${cores.toFixed(2)} cores used); CPU: per CPU second each (goal >= 0.3)`,
      (perSec / (raw.rawCertLimit * cores)).toFixed(2),
      (perCpuSec / rawCpu.rawCertLimit).toFixed(2),
    ],
  ]),
);
