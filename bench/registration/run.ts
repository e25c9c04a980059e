/**
 * Registration benchmark, one command: npm run bench:registration
 * (tsx bench/registration/run.ts). Goal (issue 20): 10,000 nodes, each
 * registered and given one workload of one shared tenant, in under 5 minutes
 * through the API, on real Postgres, with 3 replicas or 1.
 *
 * The API runs as BENCH_REPLICAS processes (default 1) of api/src/server.ts
 * on DATABASE_URL (PGlite in a temporary directory when unset, 1 replica
 * only). Each node is what an operator and its agent do: a join token
 * (POST /v1/join-tokens), the registration (POST /v1/nodes/register), then
 * one workload of the shared tenant on it (PUT .../workloads/{name}), so the
 * shared tenant grows by one address per node and every write of it reaches
 * every node registered so far. BENCH_CONCURRENCY nodes (default 16) are in
 * flight at once, spread round-robin over the replicas.
 *
 * Printed at each checkpoint (1,000, 5,000, 10,000 and the end): nodes so
 * far, nodes/s overall and over the last window, and the load average; and,
 * from the replicas' /metrics over the window, the API's CPU seconds per
 * node (all replicas together) and how long a write held the revision lock
 * on average (weft_write_lock_seconds: every writer's wait is made of it).
 * BENCH_CHECKPOINTS=500,1000,... prints at other counts.
 * BENCH_MAX_SECONDS stops early (the figures so far are printed).
 * BENCH_API=URL[,URL...] uses API processes already running (started by
 * hand, for instance under --cpu-prof) with BENCH_OPERATOR_TOKEN instead.
 */
import { Agent, request } from "node:http";
import { loadavg } from "node:os";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApiProcess, type ApiProcess } from "../../test/support/api-process.ts";

const NODES = Number(process.env.BENCH_NODES ?? 10_000);
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 1);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? Infinity);
const CHECKPOINTS = process.env.BENCH_CHECKPOINTS?.split(",").map(Number) ?? [1000, 5000, 10_000];
/** Issue 20: 10,000 nodes in under 5 minutes. */
const GOAL_SECONDS = 300;
const GOAL_NODES = 10_000;
const OPERATOR = process.env.BENCH_OPERATOR_TOKEN ?? "weft_op_bench-registration-operator-0123";
const RUNNING = process.env.BENCH_API?.split(",").filter(Boolean) ?? [];

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });

function http(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; body: string }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, agent, headers: { ...headers, ...(payload ? { "content-type": "application/json" } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(payload);
  });
}

async function ok(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Record<string, unknown>> {
  const res = await http(base, method, path, headers, body);
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${res.body}`);
  return res.body ? (JSON.parse(res.body) as Record<string, unknown>) : {};
}

/** The first address of a pod CIDR block a workload may hold (the one before it is the node's L7 proxy's): each node's one workload. */
function workloadAddress(block: string): string {
  const n = block.split("/")[0]!.split(".").reduce((a, o) => a * 256 + Number(o), 0) + 2;
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** What the window's figures need from a replica's /metrics: its CPU seconds and its writes' lock holds so far. */
interface Meters {
  cpu: number;
  lockSum: number;
  lockCount: number;
}

async function meters(base: string): Promise<Meters> {
  const text = (await http(base, "GET", "/metrics", {})).body;
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return { cpu: value("weft_process_cpu_seconds_total"), lockSum: value("weft_write_lock_seconds_sum"), lockCount: value("weft_write_lock_seconds_count") };
}

async function allMeters(bases: string[]): Promise<Meters> {
  const each = await Promise.all(bases.map(meters));
  return each.reduce((a, m) => ({ cpu: a.cpu + m.cpu, lockSum: a.lockSum + m.lockSum, lockCount: a.lockCount + m.lockCount }), { cpu: 0, lockSum: 0, lockCount: 0 });
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");

if (!process.env.DATABASE_URL && REPLICAS !== 1 && RUNNING.length === 0) throw new Error("BENCH_REPLICAS > 1 needs DATABASE_URL (replicas share one Postgres)");
const dataDir = process.env.DATABASE_URL || RUNNING.length > 0 ? undefined : mkdtempSync(join(tmpdir(), "weft-registration-"));
const apis: Pick<ApiProcess, "base" | "output" | "stop">[] = RUNNING.map((base) => ({ base, output: () => "", stop: async () => {} }));
const op = { authorization: `Bearer ${OPERATOR}` };
const created = { tenant: "", nodes: [] as string[] };
try {
  for (let i = RUNNING.length > 0 ? REPLICAS : 0; i < REPLICAS; i++) {
    apis.push(await startApiProcess({ WEFT_OPERATOR_TOKEN: OPERATOR, LOG_LEVEL: "error", ...(dataDir ? { DATABASE_URL: "", WEFT_DATA_DIR: dataDir } : {}) }));
  }
  const run = Date.now().toString(36);
  const tenant = `reg-${run}`;
  await ok(apis[0]!.base, "POST", "/v1/tenants", op, { name: tenant });
  created.tenant = tenant;
  await ok(apis[0]!.base, "PUT", `/v1/tenants/${tenant}/identities/web`, op, { path: "/web" });

  const addNode = async (i: number) => {
    const base = apis[i % apis.length]!.base;
    const name = `reg-${run}-${i}`;
    const { token } = await ok(base, "POST", "/v1/join-tokens", op, {});
    const { node } = await ok(base, "POST", "/v1/nodes/register", {}, { joinToken: token, name, zone: "z" });
    created.nodes.push(name);
    const block = (node as { podCidr: string }).podCidr;
    await ok(base, "PUT", `/v1/tenants/${tenant}/workloads/w-${i}`, op, { identity: "web", node: name, addresses: [workloadAddress(block)] });
  };

  console.log(`registration: ${NODES} nodes, ${apis.length} replica(s), ${CONCURRENCY} in flight, ${process.env.DATABASE_URL ? "Postgres" : "PGlite"}; load average ${load()}`);
  const started = performance.now();
  let done = 0;
  const bases = apis.map((a) => a.base);
  let window = { at: started, done: 0, meters: await allMeters(bases) };
  let stoppedEarly = false;
  const report = async () => {
    const now = performance.now();
    const count = done;
    const rate = count / ((now - started) / 1000);
    const recent = (count - window.done) / ((now - window.at) / 1000);
    const m = await allMeters(bases);
    const cpuPerNode = (m.cpu - window.meters.cpu) / (count - window.done);
    const lockMs = ((m.lockSum - window.meters.lockSum) / (m.lockCount - window.meters.lockCount)) * 1000;
    console.log(
      `${String(count).padStart(6)} nodes in ${((now - started) / 1000).toFixed(1)} s: ${rate.toFixed(1)} nodes/s overall, ${recent.toFixed(1)} nodes/s since ${window.done}; ` +
        `API ${(cpuPerNode * 1000).toFixed(1)} ms CPU per node, lock held ${lockMs.toFixed(2)} ms per write, since ${window.done}; load average ${load()}`,
    );
    window = { at: now, done: count, meters: m };
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, NODES) }, async () => {
      while (next < NODES) {
        if ((performance.now() - started) / 1000 > MAX_SECONDS) {
          stoppedEarly = true;
          return;
        }
        await addNode(next++);
        done++;
        if (CHECKPOINTS.includes(done)) await report();
      }
    }),
  );
  if (!CHECKPOINTS.includes(done)) await report();
  const seconds = (performance.now() - started) / 1000;
  if (NODES >= GOAL_NODES && !stoppedEarly) {
    console.log(`goal: ${GOAL_NODES} nodes in under ${GOAL_SECONDS} s: ${seconds.toFixed(1)} s, ${seconds < GOAL_SECONDS ? "met" : "not met"}`);
  } else console.log(`goal: not measured (${done} of ${GOAL_NODES} nodes${stoppedEarly ? `, stopped at BENCH_MAX_SECONDS=${MAX_SECONDS}` : ""})`);
} catch (err) {
  console.error(`bench/registration failed: ${(err as Error).message}\n--- API output (last 4 kB) ---\n${apis.map((a) => a.output().slice(-4096)).join("\n---\n")}`);
  process.exitCode = 1;
} finally {
  // A shared Postgres must not fill up: the tenant (its workloads go with it), then the nodes.
  const base = apis[0]?.base;
  if (base) {
    if (created.tenant) await http(base, "DELETE", `/v1/tenants/${created.tenant}`, op).catch(() => undefined);
    let i = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (i < created.nodes.length) await http(apis[i % apis.length]!.base, "DELETE", `/v1/nodes/${created.nodes[i++]}`, op).catch(() => undefined);
      }),
    );
  }
  agent.destroy();
  await Promise.all(apis.map((a) => a.stop()));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
