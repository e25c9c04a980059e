/**
 * bench/svid: X.509-SVID issuance through the HTTP API (authenticate, verify
 * the CSR, sign, record and audit in the database) against its peer, cfssl
 * (`cfssl serve`, no auth, no database: bench/svid/cfssl.ts), in the same
 * run: alternating rounds, the same CSRs, the same client (wrk, C, one
 * thread), the same connections. Each server's CPU time over a round is read
 * from /proc, so both figures are given: certificates per wall second and
 * per server CPU second.
 *   npm run bench:svid     (PGlite in memory; set DATABASE_URL for Postgres: on this machine, its processes count as server CPU)
 *   BENCH_SECONDS=8 BENCH_ROUNDS=3 BENCH_CONNECTIONS=16 BENCH_COUNT=400000 to change the bounds
 *   BENCH_SIGNING_WORKERS=n  the API's signing pool (default: WEFT_SIGNING_WORKERS's, cores - 1; 0 signs in-thread)
 *   BENCH_CPU_PROF=dir     writes a CPU profile of the API process there
 * Also shown, same run, one core: Node's raw P-256 sign and verify, and a
 * verify under a key seen for the first time (import included), which is
 * what each CSR costs. Goal (issue 20, item 4): Weft / cfssl >= 1.0 per wall
 * second and per server CPU second.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultSigningWorkers } from "../../api/src/config.ts";
import { CFSSL_SIGN_PATH, cfsslMissing, startCfssl } from "./cfssl.ts";
import { measureLeafThroughput } from "./throughput.ts";
import { driveScript, startChild, stopChild, table, type LoadResult } from "../support/load.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 8);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
// A safety bound only: well above what either server issues in a round, so it never caps a figure.
const maxCount = Number(process.env.BENCH_COUNT ?? 400_000);
const connections = Number(process.env.BENCH_CONNECTIONS ?? process.env.BENCH_CONCURRENCY ?? 16);
const signingWorkers = Number(process.env.BENCH_SIGNING_WORKERS ?? defaultSigningWorkers());
const POOL = 64;

const missing = cfsslMissing();
if (missing) {
  console.error(`bench/svid needs ${missing}`);
  process.exit(2);
}

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
 * wrk's Lua: POST each connection's next body from the pool; stop the
 * thread once `limit` responses came back (the count bound; -d is the time bound).
 */
function script(path: string, headers: Record<string, string>, bodies: string[], limit: number): string {
  const lua = (s: string) => JSON.stringify(s); // JSON string escapes are valid Lua escapes for this ASCII
  const h = Object.entries({ ...headers, "content-type": "application/json" }).map(([k, v]) => `[${lua(k)}] = ${lua(v)}`);
  return `
local path = ${lua(path)}
local headers = { ${h.join(", ")} }
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

/** Fields of /proc/<pid>/stat from the state on (stat(5) field 3 is index 0); null once the process is gone. */
function statOf(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/**
 * utime + stime of a process and all its threads, in seconds (Linux /proc);
 * with `reaped`, also the CPU of its children that have exited and were
 * waited for (a Postgres backend that closed during a round).
 */
function cpuSeconds(pid: number, reaped = false): number {
  const fields = statOf(pid);
  if (!fields) return 0;
  let ticks = Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of stat(5)
  if (reaped) ticks += Number(fields[13]) + Number(fields[14]); // cutime, cstime
  return ticks / 100; // USER_HZ is 100 on Linux
}

/**
 * The processes whose CPU counts as the server's: the API, and on Postgres
 * the database server too when it runs on this machine (its postmaster and
 * every backend and worker under it), so that a run on Postgres compares
 * what cfssl's process does alone with the API and its database together.
 */
function serverCpu(pids: { pid: number; postmaster: number | null }): () => Map<number, number> {
  return () => {
    const out = new Map([[pids.pid, cpuSeconds(pids.pid)]]);
    const { postmaster } = pids;
    if (postmaster === null) return out;
    out.set(postmaster, cpuSeconds(postmaster, true));
    for (const name of readdirSync("/proc")) {
      const child = Number(name);
      if (Number.isInteger(child) && statOf(child)?.[1] === String(postmaster)) out.set(child, cpuSeconds(child));
    }
    return out;
  };
}

/** CPU seconds between two readings; a process that started in between counts from zero. */
const cpuBetween = (before: Map<number, number>, after: Map<number, number>) =>
  [...after].reduce((sum, [pid, cpu]) => sum + cpu - (before.get(pid) ?? 0), 0);

interface Round {
  load: LoadResult;
  cpu: number;
}

/** One timed round against a server: wrk's figures and the server's CPU seconds over it. */
async function round(pid: number | (() => Map<number, number>), url: string, lua: string, secs: number): Promise<Round> {
  const read = typeof pid === "number" ? () => new Map([[pid, cpuSeconds(pid)]]) : pid;
  const cpu0 = read();
  const load = await driveScript(url, lua, { connections, seconds: secs, timeoutSeconds: 10 });
  const cpu = cpuBetween(cpu0, read());
  if (load.non2xx3xx > 0 || load.socketErrors) throw new Error(`${url}: ${load.non2xx3xx} error responses, ${load.socketErrors ?? "no socket errors"}: the figures are void`);
  return { load, cpu };
}

const csrs = csrPool(POOL);
const weftBodies = csrs.map((csr) => JSON.stringify({ csr }));
const cfsslBodies = csrs.map((csr) => JSON.stringify({ certificate_request: csr }));
const prof = process.env.BENCH_CPU_PROF;
const server = await startChild<{ port: number; path: string; token: string; postgresBackend: number | null }>(
  ["bench/svid/server.ts"],
  { BENCH_SIGNING_WORKERS: String(signingWorkers) },
  prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [],
);
// A Postgres backend's parent is its postmaster; null when the database is elsewhere (or PGlite).
const postmaster = server.ready.postgresBackend === null ? null : Number(statOf(server.ready.postgresBackend)?.[1] ?? NaN);
const weftCpu = serverCpu({ pid: server.child.pid!, postmaster: Number.isInteger(postmaster) ? postmaster : null });
const weftUrl = `http://127.0.0.1:${server.ready.port}${server.ready.path}`;
const weftLua = (limit: number) => script(server.ready.path, { authorization: `Bearer ${server.ready.token}` }, weftBodies, limit);
let cfssl: Awaited<ReturnType<typeof startCfssl>> | undefined;

// The raw limit before and after the load, on the wall clock and in CPU time;
// the higher of each pair counts.
const rawBefore = { wall: measureLeafThroughput(5000, "wall"), cpu: measureLeafThroughput(5000, "cpu") };

const weftRounds: Round[] = [];
const cfsslRounds: Round[] = [];
const loads: number[] = [];
let warmed = 0;
let committed: { issuances: number; audited: number; transactions?: number; records?: number };
try {
  cfssl = await startCfssl();
  const cfsslUrl = `http://127.0.0.1:${cfssl.port}${CFSSL_SIGN_PATH}`;
  const cfsslLua = (limit: number) => script(CFSSL_SIGN_PATH, {}, cfsslBodies, limit);
  // One request by hand to each: the answer must be a certificate, not an error page.
  const first = await fetch(weftUrl, { method: "POST", headers: { authorization: `Bearer ${server.ready.token}`, "content-type": "application/json" }, body: weftBodies[0] });
  const firstBody = await first.text();
  if (first.status !== 201 || !firstBody.includes("BEGIN CERTIFICATE")) throw new Error(`first Weft issuance: ${first.status} ${firstBody}`);
  const peer = await fetch(cfsslUrl, { method: "POST", headers: { "content-type": "application/json" }, body: cfsslBodies[0] });
  const peerBody = await peer.text();
  if (peer.status !== 200 || !peerBody.includes("BEGIN CERTIFICATE")) throw new Error(`first cfssl issuance: ${peer.status} ${peerBody}`);

  // Warm both (JIT, worker start-up, Go's GC sizing), then alternate, Weft first in odd rounds, cfssl first in even ones.
  warmed = 1 + (await round(weftCpu, weftUrl, weftLua(2000), 3)).load.requests!;
  await round(cfssl.child.pid!, cfsslUrl, cfsslLua(2000), 3);
  for (let i = 0; i < rounds; i++) {
    const weft = () => round(weftCpu, weftUrl, weftLua(maxCount), seconds).then((r) => weftRounds.push(r));
    const other = () => round(cfssl!.child.pid!, cfsslUrl, cfsslLua(maxCount), seconds).then((r) => cfsslRounds.push(r));
    loads.push(loadavg()[0]!);
    if (i % 2 === 0) await weft().then(other);
    else await other().then(weft);
  }
} finally {
  await cfssl?.stop();
  await new Promise((r) => setTimeout(r, 200)); // let requests wrk left in flight finish
  const done = server.nextLine();
  await stopChild(server.child);
  const line = await done;
  committed = line ? (JSON.parse(line) as typeof committed) : { issuances: -1, audited: -1 };
}
// Every certificate a client received must have its record and audit row committed.
const answered = warmed + weftRounds.reduce((n, r) => n + r.load.requests!, 0);
if (committed.issuances < answered || committed.audited < answered) {
  throw new Error(`${answered} certificates answered but ${committed.issuances} issuance records and ${committed.audited} audit rows committed`);
}

const rawAfter = { wall: measureLeafThroughput(5000, "wall"), cpu: measureLeafThroughput(5000, "cpu") };
const best = (a: typeof rawAfter.wall, b: typeof rawAfter.wall) => (a.rawCertLimit >= b.rawCertLimit ? a : b);
const raw = best(rawBefore.wall, rawAfter.wall);
const rawCpu = best(rawBefore.cpu, rawAfter.cpu);
const f = (x: number) => Math.round(x);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const perWall = (r: Round) => r.load.requests! / r.load.seconds!;
const perCpu = (r: Round) => r.load.requests! / r.cpu;
const cores = (r: Round) => r.cpu / r.load.seconds!;
const wallRatios = weftRounds.map((w, i) => perWall(w) / perWall(cfsslRounds[i]!));
const cpuRatios = weftRounds.map((w, i) => perCpu(w) / perCpu(cfsslRounds[i]!));
const range = (xs: number[], d = 0) => `${Math.min(...xs).toFixed(d)} – ${Math.max(...xs).toFixed(d)}`;

console.log(
  `\nbench/svid: ${rounds} alternating rounds of ${seconds} s, ${connections} connections (wrk, 1 thread), ${POOL} distinct P-256 CSRs; ` +
    `Weft on ${process.version} (OpenSSL ${process.versions.openssl}) with ${signingWorkers ? `${signingWorkers} signing workers` : "signing in-thread"}, ` +
    `database ${
      !process.env.DATABASE_URL
        ? "pglite (in memory, in the API process)"
        : Number.isInteger(postmaster)
          ? "postgres on this machine (its postmaster, backends and workers counted in Weft's CPU)"
          : "postgres elsewhere (its CPU time not counted)"
    }; ` +
    `load average at the rounds' starts ${range(loads, 2)} on ${availableParallelism()} cores`,
);
console.log(
  `${committed.issuances} issuance records and ${committed.audited} audit rows committed for ${answered} Weft answers` +
    (committed.transactions ? `, in ${committed.transactions} transactions (${(committed.records! / committed.transactions).toFixed(1)} records each on average)` : "") +
    "\n",
);
const rows: (string | number)[][] = [["round", "Weft /wall s", "Weft /CPU s", "Weft cores", "Weft p50/p99 ms", "cfssl /wall s", "cfssl /CPU s", "cfssl cores", "cfssl p50/p99 ms", "ratio wall", "ratio CPU"]];
weftRounds.forEach((w, i) => {
  const c = cfsslRounds[i]!;
  rows.push([
    i + 1,
    f(perWall(w)), f(perCpu(w)), cores(w).toFixed(2), `${w.load.p50Ms.toFixed(1)}/${w.load.p99Ms.toFixed(1)}`,
    f(perWall(c)), f(perCpu(c)), cores(c).toFixed(2), `${c.load.p50Ms.toFixed(1)}/${c.load.p99Ms.toFixed(1)}`,
    wallRatios[i]!.toFixed(2), cpuRatios[i]!.toFixed(2),
  ]);
});
console.log(table(rows));
const wallMet = median(wallRatios) >= 1;
const cpuMet = median(cpuRatios) >= 1;
console.log(
  `\nWeft / cfssl, median of the rounds: ${median(wallRatios).toFixed(2)} per wall second (goal >= 1.0: ${wallMet ? "met" : "not met"}), ` +
    `${median(cpuRatios).toFixed(2)} per server CPU second (goal >= 1.0: ${cpuMet ? "met" : "not met"})\n`,
);
console.log(
  table([
    ["one core, this process, same run", "per wall second", "per CPU second"],
    ["leaf build + sign alone (no HTTP, no DB)", f(raw.leavesPerSec), f(rawCpu.leavesPerSec)],
    ["raw P-256 sign", f(raw.signPerSec), f(rawCpu.signPerSec)],
    ["raw P-256 verify", f(raw.verifyPerSec), f(rawCpu.verifyPerSec)],
    ["P-256 verify under a key seen for the first time, import included, as each CSR needs", f(raw.freshKeyVerifyPerSec), f(rawCpu.freshKeyVerifyPerSec)],
    ["P-256 public key import, JWK", f(raw.jwkImportPerSec), f(rawCpu.jwkImportPerSec)],
    ["P-256 public key import, DER SubjectPublicKeyInfo", f(raw.derImportPerSec), f(rawCpu.derImportPerSec)],
  ]),
);
