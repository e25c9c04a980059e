/**
 * The real Weft for benchmarks: the API as its own process (api/src/server.ts
 * on DATABASE_URL when set, else embedded PGlite in a temporary directory),
 * REST over a keep-alive HTTP client, and the node agent as its own process
 * (nodeagent/src/main.ts, as `npm run agent` runs it) with a cgroup, pin
 * directory and state directory of the bench's own.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApiProcess } from "../../test/support/api-process.ts";
import type { BenchCleanup } from "./cleanup.ts";
import { startDaemon, type Daemon } from "./netns.ts";

export const repoRoot = new URL("../../", import.meta.url).pathname;
const OPERATOR = `weft_op_bench-${randomBytes(12).toString("hex")}`;

const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** performance.now() when the request was sent and when the answer had fully arrived */
  sentAt: number;
  at: number;
}

/** One HTTP request over the shared keep-alive agent; the body is sent as JSON when given. */
export function http(url: string, method: string, headers: Record<string, string>, body?: unknown, signal?: AbortSignal): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const sentAt = performance.now();
    const req = request(
      url,
      { method, agent: keepAlive, headers: { ...headers, ...(payload ? { "content-type": "application/json" } : {}) }, ...(signal ? { signal } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString(), sentAt, at: performance.now() }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

export interface WeftApi {
  base: string;
  /** "PGlite (embedded, <dir>)" or "Postgres (DATABASE_URL)" */
  database: string;
  pid: number;
  operator: Record<string, string>;
  /** A request that must answer 2xx; returns the answer (JSON body parsed by the caller). */
  call(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Answer>;
}

/**
 * Starts the API process; cleanup stops it and removes its temporary data.
 * The service CIDR is inside 198.18.0.0/15 so every VIP is a bench address.
 *
 * Workload addresses must lie in their node's pod CIDR block: by default
 * `podCidr` is the one block holding every namespace address of the bench
 * (pod CIDR and node prefix alike), which the bench's single node gets;
 * `podCidrNodePrefix` cuts it into one block per node instead. On a shared
 * Postgres a node of an earlier, crashed run may still hold it: registration
 * then answers 503 (delete that node). `embedded` keeps PGlite even when
 * DATABASE_URL is set; `host` is the address it listens on (127.0.0.1).
 */
export async function startWeftApi(
  cleanup: BenchCleanup,
  opts: {
    serviceCidr?: string;
    podCidr?: string;
    podCidrNodePrefix?: number;
    host?: string;
    embedded?: boolean;
    /** More of the API's environment (WEFT_NODE_GRACE_SECONDS, say); set after the bench's own, so it wins. */
    env?: Record<string, string>;
  } = {},
): Promise<WeftApi> {
  const dir = mkdtempSync(join(tmpdir(), "wbench-api-"));
  cleanup.track("dirs", dir);
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const postgres = Boolean(process.env.DATABASE_URL) && !opts.embedded;
  const podCidr = opts.podCidr ?? "198.18.0.0/17";
  const api = await startApiProcess({
    WEFT_OPERATOR_TOKEN: OPERATOR,
    LOG_LEVEL: "error",
    WEFT_SERVICE_CIDR: opts.serviceCidr ?? "198.18.200.0/24",
    WEFT_POD_CIDR: podCidr,
    WEFT_POD_CIDR_NODE_PREFIX: String(opts.podCidrNodePrefix ?? podCidr.split("/")[1]),
    // The key-encryption key file lands beside the data directory: in the temporary directory either way.
    WEFT_DATA_DIR: join(dir, "data"),
    // A simulated cluster's fabric address, reachable only from this machine's namespaces: plain HTTP is allowed there.
    ...(opts.host ? { HOST: opts.host, WEFT_ALLOW_PLAINTEXT: "1" } : {}),
    ...(postgres ? {} : { DATABASE_URL: "" }),
    ...opts.env,
  });
  cleanup.trackPid(api.child.pid!);
  cleanup.add("stop the API process", () => api.stop());
  const operator = { authorization: `Bearer ${OPERATOR}` };
  const call = async (method: string, path: string, headers: Record<string, string>, body?: unknown) => {
    const res = await http(`${api.base}${path}`, method, headers, body);
    if (res.status >= 300 && res.status !== 304) throw new Error(`${method} ${path}: ${res.status} ${res.body.slice(0, 500)}`);
    return res;
  };
  return { base: api.base, database: postgres ? "Postgres (DATABASE_URL)" : `PGlite (embedded, ${dir}/data)`, pid: api.child.pid!, operator, call };
}

/** A tenant with an admin token; on Postgres the tenant is deleted on cleanup so a shared server does not fill up. */
export async function benchTenant(cleanup: BenchCleanup, api: WeftApi, label: string): Promise<{ tenant: string; auth: Record<string, string> }> {
  const tenant = `wbench-${label}-${randomBytes(3).toString("hex")}`;
  await api.call("POST", "/v1/tenants", api.operator, { name: tenant });
  cleanup.add(`delete tenant ${tenant}`, async () => void (await http(`${api.base}/v1/tenants/${tenant}`, "DELETE", api.operator).catch(() => undefined)));
  const minted = await api.call("POST", `/v1/tenants/${tenant}/tokens`, api.operator, { name: "bench", scopes: ["admin"] });
  return { tenant, auth: { authorization: `Bearer ${(JSON.parse(minted.body) as { token: string }).token}` } };
}

/** The revision a PUT committed at, from its ETag ("123"). */
export const revisionOf = (res: Answer): number => Number(String(res.headers.etag ?? "").replace(/^W\//, "").replace(/"/g, ""));

export interface NodeShown {
  desired: { revision: number; hash: string } | null;
  applied: { revision: number; hash: string } | null;
  converged: boolean;
  errors: string[];
}

/** Polls GET /v1/nodes/{node} (operator) until the node reports the desired hash of a revision at or past `minRevision`. */
export async function waitConverged(api: WeftApi, node: string, minRevision: number, boundMs = 20_000): Promise<NodeShown> {
  const deadline = performance.now() + boundMs;
  let shown: NodeShown | null = null;
  for (;;) {
    const res = await http(`${api.base}/v1/nodes/${node}`, "GET", api.operator);
    if (res.status === 200) {
      shown = JSON.parse(res.body) as NodeShown;
      if (shown.converged && (shown.desired?.revision ?? -1) >= minRevision) return shown;
    }
    if (performance.now() > deadline) throw new Error(`node ${node} did not converge to revision ${minRevision} in ${boundMs} ms: ${JSON.stringify(shown)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface AgentProcess extends Daemon {
  node: string;
  stateDir: string;
  /** The node credential the agent saved (for a bare long-poll client reading the same datapath). */
  credential(): string;
}

export interface AgentProcessOptions {
  node: string;
  cgroup: string;
  pinDir: string;
  onLine?: (line: string, at: number) => void;
  nodeArgs?: string[];
  /** The zone the join token fixes, with the node's name (default: a token fixing neither, zone "bench"). */
  zone?: string;
  /** Runs the agent under `ip netns exec` (its pin dir and cgroup must then lie outside /sys, which that remounts). */
  netns?: string;
  /**
   * The caller's state directory, kept on cleanup: a restart when it holds a
   * registration (no join token, the node is not deleted on cleanup again).
   * Default: a fresh temporary one.
   */
  stateDir?: string;
  /** Default 0 (any free port: the agent logs which). */
  metricsPort?: number;
  /** More agent arguments (`--status-interval 1`, say), after the bench's own. */
  agentArgs?: string[];
}

/**
 * Registers nothing itself: the agent process registers with a join token
 * minted here, exactly as an operator would start it. Resolves once it logs
 * "agent started" (registered, maps loaded and pinned, socket LB attached).
 */
export async function startAgentProcess(cleanup: BenchCleanup, api: WeftApi, opts: AgentProcessOptions): Promise<AgentProcess> {
  let stateDir = opts.stateDir;
  if (stateDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "wbench-agent-"));
    cleanup.track("dirs", dir);
    cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    stateDir = dir;
  }
  const registered = existsSync(join(stateDir, "node.json"));
  const joinArgs: string[] = [];
  // The join token through the environment, as an operator passes it (the command line would show it in ps).
  const joinEnv: NodeJS.ProcessEnv = {};
  if (!registered) {
    const join_ = await api.call("POST", "/v1/join-tokens", api.operator, opts.zone ? { name: opts.node, zone: opts.zone } : {});
    joinEnv.WEFT_JOIN_TOKEN = (JSON.parse(join_.body) as { token: string }).token;
    joinArgs.push("--zone", opts.zone ?? "bench");
    // Deleted on cleanup so a shared Postgres does not keep bench nodes (best effort: the route may not exist).
    cleanup.add(`delete node ${opts.node}`, async () => void (await http(`${api.base}/v1/nodes/${opts.node}`, "DELETE", api.operator).catch(() => undefined)));
  }
  const argv = [
    ...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []),
    process.execPath, ...(opts.nodeArgs ?? []), "--import", "tsx", "nodeagent/src/main.ts",
    "--api", api.base, ...joinArgs, "--name", opts.node,
    "--cgroup", opts.cgroup, "--pin-dir", opts.pinDir, "--state-dir", stateDir, "--metrics-port", String(opts.metricsPort ?? 0),
    // Each agent's Workload API in its own state directory: several agents of a bench share /run.
    "--workload-api-socket", join(stateDir, "workload-api.sock"),
    ...(opts.agentArgs ?? []),
  ];
  const daemon = await startDaemon(cleanup, `agent ${opts.node}`, argv, {
    cwd: repoRoot,
    env: { ...process.env, ...joinEnv },
    ready: (out) => out.includes('"agent started"'),
    readyMs: 60_000,
    ...(opts.onLine ? { onLine: opts.onLine } : {}),
  });
  const dir = stateDir;
  return {
    ...daemon,
    node: opts.node,
    stateDir: dir,
    credential: () => (JSON.parse(readFileSync(join(dir, "node.json"), "utf8")) as { credential: string }).credential,
  };
}

/** Registers a node with no agent behind it (for workloads placed elsewhere). */
export async function registerBareNode(api: WeftApi, node: string): Promise<string> {
  const jt = await api.call("POST", "/v1/join-tokens", api.operator, {});
  const reg = await api.call("POST", "/v1/nodes/register", {}, { joinToken: (JSON.parse(jt.body) as { token: string }).token, name: node, zone: "bench" });
  return (JSON.parse(reg.body) as { credential: string }).credential;
}

/** Nearest-rank percentile of an ascending array. */
export const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
export const ascending = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
export const median = (xs: readonly number[]): number => percentile(ascending(xs), 50);
