/**
 * /healthz latency while unauthenticated clients send 1 MB deeply nested JSON
 * bodies (`npm run bench:auth-flood`). The API runs as its own process
 * (api/src/server.ts on embedded PGlite in a temporary directory, or on
 * DATABASE_URL when set); the flood runs in worker threads, so that the
 * measuring client's event loop only measures. Phases, in one run:
 *
 *   1. /healthz alone: one keep-alive client, requests back to back;
 *   2. the same while BENCH_CLIENTS (8) flood clients (flood-client.mjs) each POST a 1 MB body of
 *      nested arrays to /v1/tenants without a token, back to back, with
 *      WEFT_AUTH_FAILURE_LIMIT=0 (no 429: every request reaches the guard);
 *   3. the same flood against a second API process with the default failure
 *      limit (30 a minute per address: the flood gets 429s).
 *
 * Prints p50/p99 of each phase and the flood's answers. Goal: p99 < 50 ms
 * under the flood. BENCH_SECONDS (5) is the length of each phase.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { startApiProcess, type ApiProcess } from "../../test/support/api-process.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const BODY_BYTES = 1_000_000;

interface FloodReport {
  statuses: Record<string, number>;
  errors: number;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** /healthz back to back over one keep-alive connection for SECONDS: the latencies, in ms. */
async function probe(base: string): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const samples: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/healthz`, { agent }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode!));
      });
      req.on("error", reject);
      req.end();
    });
    if (status !== 200) throw new Error(`/healthz answered ${status}`);
    samples.push(performance.now() - t0);
  }
  agent.destroy();
  return samples.sort((a, b) => a - b);
}

async function withFlood(base: string): Promise<{ samples: number[]; floods: FloodReport[] }> {
  const workers = Array.from({ length: CLIENTS }, () => new Worker(new URL("./flood-client.mjs", import.meta.url), { workerData: { base, bytes: BODY_BYTES } }));
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once("message", resolve))));
  // Let the flood settle in before measuring.
  await new Promise((r) => setTimeout(r, 500));
  const samples = await probe(base);
  const floods = await Promise.all(
    workers.map(
      (w) =>
        new Promise<FloodReport>((resolve) => {
          w.on("message", (m: { report?: FloodReport }) => m.report && resolve(m.report));
          w.postMessage("stop");
        }),
    ),
  );
  await Promise.all(workers.map((w) => w.terminate()));
  return { samples, floods };
}

const line = (label: string, s: number[]) =>
  `${label.padEnd(52)} p50 ${quantile(s, 0.5).toFixed(2).padStart(7)} ms   p99 ${quantile(s, 0.99).toFixed(2).padStart(7)} ms   max ${s[s.length - 1]!.toFixed(1).padStart(7)} ms   n=${s.length}`;

const floodLine = (floods: FloodReport[]) => {
  const statuses: Record<string, number> = {};
  let errors = 0;
  for (const f of floods) {
    errors += f.errors;
    for (const [k, v] of Object.entries(f.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  }
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  return `    flood: ${CLIENTS} clients, ${total} bodies of 1 MB answered (${(total / SECONDS).toFixed(0)}/s): ${JSON.stringify(statuses)}, ${errors} connection errors`;
};

async function startApi(extra: NodeJS.ProcessEnv): Promise<{ api: ApiProcess; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), "weft-auth-flood-"));
  const env = {
    WEFT_OPERATOR_TOKEN: `weft_op_bench-${randomBytes(12).toString("hex")}`,
    LOG_LEVEL: "warn",
    ...(process.env.DATABASE_URL ? {} : { WEFT_DATA_DIR: join(dir, "data") }),
    ...extra,
  };
  const api = await startApiProcess(env);
  return { api, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function main(): Promise<void> {
  console.log(`auth flood: ${process.env.DATABASE_URL ? "Postgres (DATABASE_URL)" : "embedded PGlite"}, ${CLIENTS} flood clients, ${SECONDS} s per phase`);
  const results: string[] = [];
  let open = await startApi({ WEFT_AUTH_FAILURE_LIMIT: "0" });
  try {
    await probe(open.api.base); // warm-up
    const alone = await probe(open.api.base);
    results.push(line("/healthz alone", alone));
    const flooded = await withFlood(open.api.base);
    results.push(line("/healthz under the flood (401s, no failure limit)", flooded.samples));
    results.push(floodLine(flooded.floods));
    const after = await probe(open.api.base);
    results.push(line("/healthz alone again", after));
    await open.api.stop();
    open.cleanup();

    open = await startApi({});
    await probe(open.api.base);
    const limited = await withFlood(open.api.base);
    results.push(line("/healthz under the flood (default failure limit: 429s)", limited.samples));
    results.push(floodLine(limited.floods));
    const p99 = quantile(flooded.samples, 0.99);
    results.push(
      `p99 under the flood ${p99.toFixed(2)} ms against ${quantile(alone, 0.99).toFixed(2)} ms alone (${(p99 / quantile(alone, 0.99)).toFixed(1)}x); goal p99 < 50 ms: ${p99 < 50 ? "met" : "NOT met"}`,
    );
  } finally {
    await open.api.stop();
    open.cleanup();
  }
  for (const r of results) console.log(r);
}

await main();
