/**
 * bench/api: the authenticated hot read path against a bare Fastify route
 * answering the same payload, measured in the same run with the same tool.
 *   npm run bench:api            (BENCH_SECONDS=10 BENCH_CONNECTIONS=50 by default)
 * Goal: Weft / bare >= 0.6 for both the 200 and the 304 read.
 */
import { drive, startChild, stopChild, table, type LoadResult } from "../support/load.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const opts = { seconds, connections };

const weft = await startChild<{ port: number; path: string; token: string }>(["bench/api/server.ts", "weft"]);
const auth = { authorization: `Bearer ${weft.ready.token}` };
const url = `http://127.0.0.1:${weft.ready.port}${weft.ready.path}`;
const first = await fetch(url, { headers: auth });
if (first.status !== 200) throw new Error(`weft answered ${first.status}: ${await first.text()}`);
const payload = await first.text();
const etag = first.headers.get("etag")!;

let weft200: LoadResult, weft304: LoadResult, bare200: LoadResult, bare304: LoadResult;
try {
  await drive(url, auth, { seconds: 2, connections }); // warm-up: JIT and the verified-token cache
  weft200 = await drive(url, auth, opts);
  weft304 = await drive(url, { ...auth, "if-none-match": etag }, opts);
} finally {
  await stopChild(weft.child);
}

const bare = await startChild<{ port: number }>(["bench/api/server.ts", "bare"], {
  BENCH_PAYLOAD: payload,
  BENCH_ETAG: etag,
});
const bareUrl = `http://127.0.0.1:${bare.ready.port}${weft.ready.path}`;
try {
  await drive(bareUrl, auth, { seconds: 2, connections });
  bare200 = await drive(bareUrl, auth, opts);
  bare304 = await drive(bareUrl, { ...auth, "if-none-match": etag }, opts);
} finally {
  await stopChild(bare.child);
}

for (const [name, r] of Object.entries({ weft200, weft304, bare200, bare304 })) {
  if (r.non2xx3xx > 0) throw new Error(`${name}: ${r.non2xx3xx} responses were errors; the figures are void`);
}
const ratio = (a: LoadResult, b: LoadResult) => (a.requestsPerSecond / b.requestsPerSecond).toFixed(2);
const fmt = (r: LoadResult) => [Math.round(r.requestsPerSecond), r.p99Ms.toFixed(2)];
console.log(`\nbench/api: ${connections} connections, ${seconds} s per run, load tool ${weft200.tool}, payload ${payload.length} B\n`);
console.log(
  table([
    ["read", "weft req/s", "weft p99 ms", "bare req/s", "bare p99 ms", "ratio (goal >= 0.6)"],
    ["GET 200 (read token)", ...fmt(weft200), ...fmt(bare200), ratio(weft200, bare200)],
    ["GET 304 (If-None-Match)", ...fmt(weft304), ...fmt(bare304), ratio(weft304, bare304)],
  ]),
);
