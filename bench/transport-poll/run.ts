/**
 * Unchanged transport-document polls, one command: npm run bench:transport-poll
 * (tsx bench/transport-poll/run.ts). Goal (issue 18 / issue 20): an agent's
 * If-None-Match poll of GET /v1/nodes/{node}/transport costs no database
 * statement, whatever the size of the mesh.
 *
 * The API runs as its own process (api/src/server.ts, from the current
 * directory: run it from an older checkout to measure that one) on a
 * throwaway Postgres with pg_stat_statements (bench/scale/postgres.ts), or on
 * DATABASE_URL. Setup, not measured: one tenant, BENCH_NODES nodes (default
 * 200) each with one workload of identity "svc", an mtls rule letting svc
 * reach svc on port 8080 (every node steers to every other), and each node's
 * transport endpoint reported. So each node's document names every other
 * node's workload.
 *
 * Measured: BENCH_ROUNDS rounds (default 5) in which every node polls its
 * document once with its current ETag (BENCH_CONCURRENCY in flight, default
 * 16): polls per second, p50/p99 latency, the API process's CPU per poll
 * (utime + stime from /proc), and the statements the API ran per poll
 * (pg_stat_statements, reset before the rounds).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApiProcess } from "../../test/support/api-process.ts";
import { table } from "../support/load.ts";
import { pool } from "../support/pool.ts";
import { Observer, startThrowawayPostgres, type Throwaway } from "../scale/postgres.ts";

const NODES = Number(process.env.BENCH_NODES ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const OPERATOR = "weft_op_bench-transport-poll-operator-token";
const op = { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" };

/** CPU seconds the process has used (utime + stime, /proc/<pid>/stat). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "weft-transport-poll-"));
  let pg: Throwaway | undefined;
  let url = process.env.DATABASE_URL;
  if (url === undefined) url = (pg = await startThrowawayPostgres(join(dir, "pg"))).url;
  const api = await startApiProcess({ WEFT_OPERATOR_TOKEN: OPERATOR, DATABASE_URL: url, LOG_LEVEL: "error" });
  const observer = await Observer.connect(url);
  try {
    const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = op) => {
      const res = await fetch(`${api.base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return res;
    };
    await call("POST", "/v1/tenants", { name: "bench" });
    const { token } = (await (await call("POST", "/v1/tenants/bench/tokens", { name: "bench", scopes: ["write"] })).json()) as { token: string };
    const tenant = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    await call("PUT", "/v1/tenants/bench/identities/svc", { path: "/ns/bench/sa/svc", selectors: { app: "svc" } }, tenant);
    await call("PUT", "/v1/tenants/bench/policies/svc-in", {
      subject: { identity: "svc" },
      ingress: [{ peers: [{ identity: "svc" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", transport: "mtls" }],
    }, tenant);
    const nodes = await pool([...Array(NODES).keys()], 8, async (i) => {
      const name = `tp-${i}`;
      const { token: joinToken } = (await (await call("POST", "/v1/join-tokens", {})).json()) as { token: string };
      const reg = (await (await call("POST", "/v1/nodes/register", { joinToken, name, zone: "a" }, { "content-type": "application/json" })).json()) as { credential: string; node: { podCidr: string } };
      const auth = { authorization: `Bearer ${reg.credential}`, "content-type": "application/json" };
      // The block's second host address (the first is the node's L7 proxy address).
      const [base] = reg.node.podCidr.split("/");
      const address = base!.replace(/\.\d+$/, (last) => `.${Number(last.slice(1)) + 2}`);
      await call("PUT", `/v1/tenants/bench/workloads/svc-${i}`, { identity: "svc", node: name, addresses: [address] }, tenant);
      const endpoint = `198.18.${(i >> 8) & 255}.${i & 255}:15008`;
      await call("PUT", `/v1/nodes/${name}/status`, { appliedRevision: 0, hash: "none", counters: {}, errors: [], transport: { endpoint, state: "running" } }, auth);
      return { name, auth };
    });
    // Every node's current ETag, and a check that the documents are the full mesh.
    const etags = new Map<string, string>();
    for (const n of nodes) {
      const res = await call("GET", `/v1/nodes/${n.name}/transport`, undefined, n.auth);
      const doc = (await res.json()) as { remotes: unknown[] };
      if (doc.remotes.length !== NODES - 1) throw new Error(`${n.name}: ${doc.remotes.length} remotes, expected ${NODES - 1}`);
      etags.set(n.name, res.headers.get("etag")!);
    }
    await observer.resetStatements();
    const cpuBefore = cpuSeconds(api.child.pid!);
    const latencies: number[] = [];
    const started = performance.now();
    for (let round = 0; round < ROUNDS; round++) {
      await pool(nodes, CONCURRENCY, async (n) => {
        const t0 = performance.now();
        const res = await fetch(`${api.base}/v1/nodes/${n.name}/transport`, { headers: { ...n.auth, "if-none-match": etags.get(n.name)! } });
        await res.arrayBuffer();
        if (res.status !== 304) throw new Error(`${n.name}: ${res.status} to an unchanged poll`);
        latencies.push(performance.now() - t0);
      });
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuSeconds(api.child.pid!) - cpuBefore;
    const statements = await observer.statementsSinceReset();
    const polls = latencies.length;
    latencies.sort((x, y) => x - y);
    console.log(`transport-poll: ${NODES} nodes (each document names ${NODES - 1} remote workloads), ${ROUNDS} rounds, ${CONCURRENCY} in flight, API from ${process.cwd()}`);
    console.log(
      table([
        ["polls", "polls/s", "p50 ms", "p99 ms", "API CPU µs/poll", "statements/poll"],
        [polls, (polls / seconds).toFixed(0), quantile(latencies, 0.5).toFixed(2), quantile(latencies, 0.99).toFixed(2), ((cpu / polls) * 1e6).toFixed(0), (statements.calls / polls).toFixed(3)],
      ]),
    );
    for (const s of statements.top) console.log(`  ${s.calls} × ${s.query.slice(0, 120)}`);
  } finally {
    await observer.close();
    await api.stop();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
