/**
 * bench/api: the authenticated hot read path against a bare Fastify route
 * answering the same payload, measured in the same run with the same tool.
 *   npm run bench:api   (BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=50 by default)
 * Goal: Weft / bare >= 0.6 for both the 200 and the 304 read.
 *
 * Both servers run for the whole bench and are driven in alternation, round
 * after round: on a shared machine the load drifts within seconds, so a
 * ratio is taken within each round (Weft and bare a few seconds apart) and
 * the median round is reported, with the spread. Each server's CPU time per
 * request (/proc, all its threads) is reported too: it is what a change to
 * the server moves, though on a shared machine it drifts as well.
 *
 *   BENCH_READS=304        drive only these reads (200, 304; default both)
 *   BENCH_CPU_PROF=dir     both servers run under --cpu-prof, alike; their
 *                          profiles land in dir and are summarized per read
 *                          over the measured rounds only, with where Weft
 *                          spends more than bare. Figures taken under a
 *                          profiler are not the bench's figures.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { drive, startChild, stopChild, table, type LoadResult } from "../support/load.ts";
import { cpuSeconds } from "./cpu.ts";
import { formatDifference, formatSummary, summarize, type ProfileSummary, type Window } from "./profile.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const opts = { seconds, connections };
type Read = "200" | "304";
const reads = (process.env.BENCH_READS ?? "200,304").split(",").map((r) => r.trim()) as Read[];
if (reads.length === 0 || reads.some((r) => r !== "200" && r !== "304")) throw new Error("BENCH_READS lists 200 and/or 304");
const profDir = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
if (profDir) mkdirSync(profDir, { recursive: true });
// The same flags for both servers: a profiler slows each about alike.
const nodeArgs = profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : [];

const servers = ["weft", "bare"] as const;
type Server = (typeof servers)[number];
interface Measured extends LoadResult {
  /** Server CPU (user + system) per response, µs. */
  cpuUsPerRequest: number;
  window: Window;
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

const weft = await startChild<{ port: number; path: string; token: string }>(["bench/api/server.ts", "weft"], {}, nodeArgs);
let bare: Awaited<ReturnType<typeof startChild<{ port: number }>>> | undefined;
const results: Record<Server, Record<Read, Measured[]>> = { weft: { 200: [], 304: [] }, bare: { 200: [], 304: [] } };
let payloadBytes = 0;
try {
  const auth = { authorization: `Bearer ${weft.ready.token}` };
  const weftUrl = `http://127.0.0.1:${weft.ready.port}${weft.ready.path}`;
  const first = await fetch(weftUrl, { headers: auth });
  if (first.status !== 200) throw new Error(`weft answered ${first.status}: ${await first.text()}`);
  const payload = await first.text();
  payloadBytes = Buffer.byteLength(payload);
  const etag = first.headers.get("etag")!;
  bare = await startChild<{ port: number }>(["bench/api/server.ts", "bare"], { BENCH_PAYLOAD: payload, BENCH_ETAG: etag }, nodeArgs);
  const children = { weft: weft.child, bare: bare.child };
  const urls = { weft: weftUrl, bare: `http://127.0.0.1:${bare.ready.port}${weft.ready.path}` };
  const headers: Record<Read, Record<string, string>> = { 200: auth, 304: { ...auth, "if-none-match": etag } };
  await sameAnswers(urls, headers);
  // Warm-up: JIT, and the verified-token and tenant caches.
  for (const server of servers) for (const read of reads) await drive(urls[server], headers[read], { seconds: 2, connections });
  for (let round = 0; round < rounds; round++) {
    // Alternate which server goes first, so neither always gets the quieter slot.
    const order = round % 2 === 0 ? (["weft", "bare"] as const) : (["bare", "weft"] as const);
    for (const read of reads) {
      for (const server of order) {
        const pid = children[server].pid!;
        const cpu0 = cpuSeconds(pid);
        const fromUs = nowUs();
        const r = await drive(urls[server], headers[read], opts);
        const window = { fromUs, toUs: nowUs() };
        results[server][read].push({ ...r, window, cpuUsPerRequest: ((cpuSeconds(pid) - cpu0) * 1e6) / r.requests! });
      }
    }
  }
} finally {
  await stopChild(weft.child);
  if (bare) await stopChild(bare.child);
}

/**
 * The bare route must answer what Weft answers, byte for byte in the body
 * and alike in the headers that cost work (ETag, type, length), or the
 * ratio compares different work.
 */
async function sameAnswers(urls: Record<Server, string>, headers: Record<Read, Record<string, string>>): Promise<void> {
  const compared = ["etag", "content-type", "content-length"];
  for (const read of reads) {
    const [w, b] = await Promise.all(servers.map((s) => fetch(urls[s], { headers: headers[read] })));
    const [wb, bb] = await Promise.all([w!.text(), b!.text()]);
    if (w!.status !== Number(read) || b!.status !== Number(read)) throw new Error(`GET ${read}: weft ${w!.status}, bare ${b!.status}`);
    if (wb !== bb) throw new Error(`GET ${read}: the bare body differs from weft's`);
    for (const h of compared) {
      if (w!.headers.get(h) !== b!.headers.get(h)) throw new Error(`GET ${read}: ${h} weft ${w!.headers.get(h)}, bare ${b!.headers.get(h)}`);
    }
  }
}

for (const server of servers) {
  for (const read of reads) {
    for (const r of results[server][read]) {
      if (r.non2xx3xx > 0) throw new Error(`${server} ${read}: ${r.non2xx3xx} responses were errors; the figures are void`);
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function row(label: string, read: Read): (string | number)[] {
  const w = results.weft[read];
  const b = results.bare[read];
  const ratios = w.map((r, i) => r.requestsPerSecond / b[i]!.requestsPerSecond);
  return [
    label,
    Math.round(median(w.map((r) => r.requestsPerSecond))),
    median(w.map((r) => r.p99Ms)).toFixed(2),
    Math.round(median(w.map((r) => r.cpuUsPerRequest))),
    Math.round(median(b.map((r) => r.requestsPerSecond))),
    median(b.map((r) => r.p99Ms)).toFixed(2),
    Math.round(median(b.map((r) => r.cpuUsPerRequest))),
    median(ratios).toFixed(2),
    `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`,
  ];
}
const labels: Record<Read, string> = { 200: "GET 200 (read token)", 304: "GET 304 (If-None-Match)" };
console.log(
  `\nbench/api: ${connections} connections, ${rounds} rounds of ${seconds} s per server and read, alternating; load tool ${results.weft[reads[0]!][0]!.tool}, payload ${payloadBytes} B${profDir ? "; both servers under --cpu-prof" : ""}\n`,
);
console.log(
  table([
    ["read", "weft req/s", "weft p99 ms", "weft cpu µs/req", "bare req/s", "bare p99 ms", "bare cpu µs/req", "ratio, median round (goal >= 0.6)", "rounds"],
    ...reads.map((read) => row(labels[read], read)),
  ]),
);

if (profDir) {
  const pids = { weft: weft.child.pid!, bare: bare?.child.pid };
  const summaries: Partial<Record<Server, Record<Read, ProfileSummary>>> = {};
  for (const server of servers) {
    // node names its profile CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile
    const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile") && f.split(".")[3] === String(pids[server]));
    if (!file) {
      console.log(`\nno profile of ${server} (pid ${pids[server]}) in ${profDir}`);
      continue;
    }
    const perRead = {} as Record<Read, ProfileSummary>;
    for (const read of reads) {
      const measured = results[server][read];
      const requests = measured.reduce((n, r) => n + r.requests!, 0);
      perRead[read] = summarize(join(profDir, file), measured.map((r) => r.window), requests);
      console.log(`\n${formatSummary(`${server} GET ${read} (${file})`, perRead[read])}`);
    }
    summaries[server] = perRead;
  }
  // The windows and counts, so a profile can be read again with other cuts (profile.ts's command line).
  writeFileSync(
    join(profDir, `windows-${weft.child.pid}.json`),
    JSON.stringify({ pids, windows: Object.fromEntries(servers.map((s) => [s, results[s]])) }, null, 1),
  );
  if (summaries.weft && summaries.bare) {
    for (const read of reads) console.log(`\n${formatDifference(`weft over bare, GET ${read}`, summaries.weft[read], summaries.bare[read])}`);
  }
}
