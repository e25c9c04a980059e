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
 * (pg_stat_statements, reset before each round). The baseline, in the same
 * run and alternating round by round: the same nodes' unchanged datapath
 * polls (GET /v1/nodes/{node}/datapath with If-None-Match), the poll issue 20
 * made free of statements; the ratios are transport ÷ datapath.
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
/**
 * Statements the API runs on its own clock, poll or no poll: the token
 * revocation check (1 a second) and the follower's safety pull (1 per 5 s);
 * a round may hold one more of each than its length says.
 */
const timerStatements = (seconds: number) => Math.floor(seconds) + 1 + Math.floor(seconds / 5) + 1;
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
    const datapathEtags = new Map<string, string>();
    for (const n of nodes) datapathEtags.set(n.name, (await call("GET", `/v1/nodes/${n.name}/datapath`, undefined, n.auth)).headers.get("etag")!);
    const kinds = {
      transport: { path: (n: string) => `/v1/nodes/${n}/transport`, etags, latencies: [] as number[], seconds: 0, cpu: 0, statements: 0 },
      datapath: { path: (n: string) => `/v1/nodes/${n}/datapath`, etags: datapathEtags, latencies: [] as number[], seconds: 0, cpu: 0, statements: 0 },
    };
    /** Statements past what the timers account for, per kind. */
    const beyondTimers = { transport: 0, datapath: 0 };
    const top = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of Object.values(kinds)) {
        await observer.resetStatements();
        const cpuBefore = cpuSeconds(api.child.pid!);
        const started = performance.now();
        await pool(nodes, CONCURRENCY, async (n) => {
          const t0 = performance.now();
          const res = await fetch(`${api.base}${kind.path(n.name)}`, { headers: { ...n.auth, "if-none-match": kind.etags.get(n.name)! } });
          await res.arrayBuffer();
          if (res.status !== 304) throw new Error(`${kind.path(n.name)}: ${res.status} to an unchanged poll`);
          kind.latencies.push(performance.now() - t0);
        });
        const seconds = (performance.now() - started) / 1000;
        kind.seconds += seconds;
        kind.cpu += cpuSeconds(api.child.pid!) - cpuBefore;
        const statements = await observer.statementsSinceReset();
        kind.statements += statements.calls;
        beyondTimers[kind === kinds.transport ? "transport" : "datapath"] += Math.max(0, statements.calls - timerStatements(seconds));
        if (kind === kinds.transport) for (const x of statements.top) top.set(x.query, (top.get(x.query) ?? 0) + x.calls);
      }
    }
    const figures = Object.entries(kinds).map(([name, k]) => {
      const sorted = [...k.latencies].sort((x, y) => x - y);
      return { name, polls: sorted.length, rate: sorted.length / k.seconds, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), cpuUs: (k.cpu / sorted.length) * 1e6, statements: k.statements / sorted.length };
    });
    const [tp, dp] = figures as [(typeof figures)[0], (typeof figures)[0]];
    console.log(`transport-poll: ${NODES} nodes (each document names ${NODES - 1} remote workloads), ${ROUNDS} alternating rounds, ${CONCURRENCY} in flight, API from ${process.cwd()}`);
    console.log(
      table([
        ["unchanged poll", "polls", "polls/s", "p50 ms", "p99 ms", "API CPU µs/poll", "statements/poll"],
        ...figures.map((f) => [f.name, f.polls, f.rate.toFixed(0), f.p50.toFixed(2), f.p99.toFixed(2), f.cpuUs.toFixed(0), f.statements.toFixed(3)]),
      ]),
    );
    console.log(`ratio transport / datapath: polls/s ${(tp.rate / dp.rate).toFixed(2)}, API CPU per poll ${(tp.cpuUs / dp.cpuUs).toFixed(2)}; goal 0 statements per transport poll (beyond the API's own timers): ${beyondTimers.transport === 0 ? "met" : `not met (${(beyondTimers.transport / tp.polls).toFixed(3)} per poll)`}`);
    for (const [query, calls] of [...top].sort((x, y) => y[1] - x[1]).slice(0, 5)) console.log(`  ${calls} × ${query.slice(0, 120)}`);
  } finally {
    await observer.close();
    await api.stop();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
