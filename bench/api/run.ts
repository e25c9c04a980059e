/**
 * bench/api: the authenticated hot read path against a bare Fastify route
 * answering the same payload, measured in the same run with the same tool.
 *   npm run bench:api   (BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=50 by default)
 * Goal: Weft / bare >= 0.6 for both the 200 and the 304 read.
 *
 * Both servers run for the whole bench and are driven in alternation, round
 * after round: on a shared machine the load drifts within seconds, so a
 * ratio is taken within each round (Weft and bare a few seconds apart) and
 * the median round is reported, with the spread.
 */
import { drive, startChild, stopChild, table, type LoadResult } from "../support/load.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const opts = { seconds, connections };

const weft = await startChild<{ port: number; path: string; token: string }>(["bench/api/server.ts", "weft"]);
let bare: Awaited<ReturnType<typeof startChild<{ port: number }>>> | undefined;
type Read = "200" | "304";
const results: Record<"weft" | "bare", Record<Read, LoadResult[]>> = { weft: { 200: [], 304: [] }, bare: { 200: [], 304: [] } };
let payloadBytes = 0;
try {
  const auth = { authorization: `Bearer ${weft.ready.token}` };
  const weftUrl = `http://127.0.0.1:${weft.ready.port}${weft.ready.path}`;
  const first = await fetch(weftUrl, { headers: auth });
  if (first.status !== 200) throw new Error(`weft answered ${first.status}: ${await first.text()}`);
  const payload = await first.text();
  payloadBytes = payload.length;
  const etag = first.headers.get("etag")!;
  bare = await startChild<{ port: number }>(["bench/api/server.ts", "bare"], { BENCH_PAYLOAD: payload, BENCH_ETAG: etag });
  const urls = { weft: weftUrl, bare: `http://127.0.0.1:${bare.ready.port}${weft.ready.path}` };
  const headers: Record<Read, Record<string, string>> = { 200: auth, 304: { ...auth, "if-none-match": etag } };
  // Warm-up: JIT, and the verified-token and tenant caches.
  for (const server of ["weft", "bare"] as const) await drive(urls[server], auth, { seconds: 2, connections });
  for (let round = 0; round < rounds; round++) {
    // Alternate which server goes first, so neither always gets the quieter slot.
    const order = round % 2 === 0 ? (["weft", "bare"] as const) : (["bare", "weft"] as const);
    for (const read of ["200", "304"] as const) {
      for (const server of order) results[server][read].push(await drive(urls[server], headers[read], opts));
    }
  }
} finally {
  await stopChild(weft.child);
  if (bare) await stopChild(bare.child);
}

for (const server of ["weft", "bare"] as const) {
  for (const read of ["200", "304"] as const) {
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
    Math.round(median(b.map((r) => r.requestsPerSecond))),
    median(b.map((r) => r.p99Ms)).toFixed(2),
    median(ratios).toFixed(2),
    `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`,
  ];
}
console.log(
  `\nbench/api: ${connections} connections, ${rounds} rounds of ${seconds} s per server and read, alternating; load tool ${results.weft[200][0]!.tool}, payload ${payloadBytes} B\n`,
);
console.log(
  table([
    ["read", "weft req/s", "weft p99 ms", "bare req/s", "bare p99 ms", "ratio, median round (goal >= 0.6)", "rounds"],
    row("GET 200 (read token)", "200"),
    row("GET 304 (If-None-Match)", "304"),
  ]),
);
