/**
 * What test/l7/ needs around bench/support/cluster.ts to prove issue #21 on
 * the simulated cluster: HTTP backends in workloads that answer who they are
 * and what they were sent (or fail every other request, or never answer),
 * an HTTP client in a workload that tallies a batch of requests, and the
 * node's HAProxy found among its agent's descendants.
 */
import { readFileSync } from "node:fs";
import type { Cluster, ClusterTenant } from "../../bench/support/cluster.ts";
import { childPids, commandOf } from "../../bench/support/netns.ts";

/**
 * One script, run by the workload's own node binary:
 *   serve NAME PORT MODE   an HTTP server on PORT answering every request with
 *                          {"server","method","path","peer","headers"} (headers: x-weft-*,
 *                          x-canary, traceparent and any x-test-* it got). MODE ok; flaky: every
 *                          other request answers 503; fail: every request answers 503 (with the
 *                          same JSON); slow: answers after SLOW_MS; hang: never answers. Prints "listening".
 *   relay NAME PORT URL    an HTTP server on PORT that, for each request, GETs URL passing on the
 *                          traceparent and tracestate it got (as an instrumented service would), and
 *                          answers {"server","headers":{traceparent},"downstream": URL's answer}.
 *   send URL COUNT METHOD HEADERS_JSON CONCURRENCY TIMEOUT_MS DURATION_MS KEEPALIVE PAUSE_MS
 *                          COUNT requests (a new connection each, or with KEEPALIVE 1 over CONCURRENCY
 *                          kept-alive ones, as wrk sends) with at most CONCURRENCY in flight,
 *                          or with COUNT 0 as many as DURATION_MS allows; each sender pauses PAUSE_MS
 *                          after each answer;
 *                          prints one line {"statuses":{..},"servers":{..},"failures":{..},"samples":[..]}
 *                          (samples: the first 5 answers, parsed when JSON, with their headers)
 */
/** How long a "slow" backend takes to answer. */
export const SLOW_MS = 600;

const PROGRAM = String.raw`
import http from "node:http";
const SLOW_MS = ${SLOW_MS};
const [mode, ...a] = process.argv.slice(1);
const add = (t, k) => (t[k] = (t[k] ?? 0) + 1);
if (mode === "serve") {
  const [name, port, behaviour] = a;
  let n = 0;
  http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      n++;
      if (behaviour === "hang") return;
      const status = behaviour === "fail" ? 503 : 200;
      if (behaviour === "flaky" && n % 2 === 1) {
        res.writeHead(503, { "content-type": "text/plain" });
        return res.end("flaky\n");
      }
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith("x-weft-") || k.startsWith("x-test-") || k === "x-canary" || k === "traceparent"));
      const answer = () => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify({ server: name, method: req.method, path: req.url, peer: (req.socket.remoteAddress ?? "").replace(/^::ffff:/, ""), headers }) + "\n");
      };
      if (behaviour === "slow") setTimeout(answer, SLOW_MS);
      else answer();
    });
  }).listen(Number(port), "0.0.0.0", () => console.log("listening"));
} else if (mode === "relay") {
  const [name, port, url] = a;
  http.createServer((req, res) => {
    req.resume();
    const passed = Object.fromEntries(["traceparent", "tracestate"].filter((h) => req.headers[h]).map((h) => [h, req.headers[h]]));
    http.get(url, { headers: passed, timeout: 5000 }, (down) => {
      let body = "";
      down.on("data", (d) => (body += d));
      down.on("end", () => {
        let downstream = body;
        try { downstream = JSON.parse(body); } catch {}
        res.writeHead(down.statusCode ?? 502, { "content-type": "application/json" });
        res.end(JSON.stringify({ server: name, headers: { traceparent: req.headers.traceparent }, downstream }) + "\n");
      });
    }).on("error", (e) => res.writeHead(502, { "content-type": "text/plain" }).end(String(e.code ?? e.message)));
  }).listen(Number(port), "0.0.0.0", () => console.log("listening"));
} else if (mode === "send") {
  const [url, count, method, headersJson, concurrency, timeoutMs, durationMs, keepAlive, pauseMs] = a;
  const agent = keepAlive === "1" ? new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) }) : false;
  const until = Date.now() + Number(durationMs);
  const more = () => (Number(count) > 0 ? next < Number(count) : Date.now() < until);
  const headers = JSON.parse(headersJson);
  const started = Date.now();
  const out = { statuses: {}, servers: {}, failures: {}, samples: [], failedAt: [] };
  const failed = (why) => { add(out.failures, why); if (out.failedAt.length < 100) out.failedAt.push([Date.now() - started, why]); };
  let next = 0;
  const one = () => new Promise((resolve) => {
    const req = http.request(url, { method, headers, agent, timeout: Number(timeoutMs) }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        add(out.statuses, res.statusCode);
        let parsed = body;
        try { parsed = JSON.parse(body); } catch {}
        if (parsed && typeof parsed === "object" && parsed.server) add(out.servers, parsed.server);
        if (out.samples.length < 5) out.samples.push({ status: res.statusCode, headers: res.headers, body: parsed });
        resolve();
      });
      res.on("error", (e) => { failed("response:" + e.code); resolve(); });
    });
    req.on("timeout", () => { req.destroy(new Error("timeout")); });
    req.on("error", (e) => { failed(e.code ?? e.message); resolve(); });
    req.end(method === "GET" || method === "HEAD" ? undefined : "{}");
  });
  const pause = () => (Number(pauseMs) > 0 ? new Promise((r) => setTimeout(r, Number(pauseMs))) : undefined);
  const worker = async () => { while (more()) { next++; await one(); await pause(); } };
  await Promise.all(Array.from({ length: Math.max(1, Number(concurrency)) }, worker));
  if (agent) agent.destroy();
  console.log(JSON.stringify(out));
} else {
  console.error("usage: serve NAME PORT ok|flaky|fail|slow|hang | relay NAME PORT URL | send URL COUNT METHOD HEADERS_JSON CONCURRENCY TIMEOUT_MS DURATION_MS KEEPALIVE PAUSE_MS");
  process.exit(2);
}
`;

const program = (...args: (string | number)[]): string[] => [process.execPath, "--input-type=module", "-e", PROGRAM, ...args.map(String)];

export type Behaviour = "ok" | "flaky" | "fail" | "slow" | "hang";

/** [workload, node, identity, the identity's labels]: a workload of its own namespace on the node, and its identity (path /ns/shop/sa/IDENTITY). */
export type WorkloadPlan = readonly [string, string, string, Readonly<Record<string, string>>];

/** Adds each planned workload to the cluster and declares it, with its identity, to the tenant. */
export async function addWorkloads(c: Cluster, tenant: ClusterTenant, plan: readonly WorkloadPlan[]): Promise<void> {
  for (const [name, node, identity, labels] of plan) {
    c.addWorkload(node, { name });
    await tenant.put(`/identities/${identity}`, { path: `/ns/shop/sa/${identity}`, selectors: labels });
    await tenant.put(`/workloads/${name}`, { identity, node, addresses: [c.workloads[name]!.address] });
  }
}

/** An HTTP backend in `workload` on `port` that calls `url` for each request, passing on its trace context. */
export const relayHttp = (c: Cluster, workload: string, name: string, port: number, url: string) =>
  c.start(workload, `http-relay-${name}-${port}`, program("relay", name, port, url), { ready: (o) => o.includes("listening") });

/** An HTTP backend in `workload` on `port`, answering as `name`. */
export const serveHttp = (c: Cluster, workload: string, name: string, port: number, behaviour: Behaviour = "ok") =>
  c.start(workload, `http-${name}-${port}`, program("serve", name, port, behaviour), { ready: (o) => o.includes("listening") });

export interface Sample {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}
export interface Sent {
  statuses: Record<string, number>;
  servers: Record<string, number>;
  failures: Record<string, number>;
  samples: Sample[];
  /** [ms since the first request, why] of the first 100 failures. */
  failedAt: [number, string][];
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string>;
  concurrency?: number;
  timeoutMs?: number;
  /** With count 0: keep sending this long (bounded by the caller). */
  durationMs?: number;
  /** Over `concurrency` kept-alive connections (as wrk), not a new connection per request. */
  keepAlive?: boolean;
  /** Each sender's pause after an answer: a paced load that leaves the machine's two cores to the control plane. */
  pauseMs?: number;
}

/** `count` requests (0: for durationMs) from `workload` to url, each on a new connection; the tally. */
export async function send(c: Cluster, workload: string, url: string, count: number, o: SendOptions = {}): Promise<Sent> {
  const timeoutMs = o.timeoutMs ?? 5_000;
  const concurrency = o.concurrency ?? 8;
  const durationMs = count === 0 ? (o.durationMs ?? 10_000) : 0;
  const argv = program("send", url, count, o.method ?? "GET", JSON.stringify(o.headers ?? {}), concurrency, timeoutMs, durationMs, o.keepAlive ? 1 : 0, o.pauseMs ?? 0);
  const { stdout } = await c.exec(workload, argv, { timeoutMs: 30_000 + durationMs + timeoutMs + Math.ceil(count / concurrency) * (timeoutMs + 200) });
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  if (!line) throw new Error(`send printed no tally: ${stdout.slice(0, 500)}`);
  return JSON.parse(line) as Sent;
}

/** The share (0..1) of `key` among the counts. */
export const share = (counts: Record<string, number>, key: string): number => {
  const total = Object.values(counts).reduce((s, n) => s + n, 0);
  return total === 0 ? 0 : (counts[key] ?? 0) / total;
};

/** Whether pid is a process that still runs (a zombie no longer does: it waits for its parent to reap it). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Pids of every haproxy process under the node's agent (master and workers). */
export function haproxyPids(c: Cluster, node: string): number[] {
  const agent = c.nodes[node]?.agent;
  if (!agent) return [];
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const child of childPids(pid)) {
      if (/(^|\/)haproxy(\s|$)/.test(commandOf(child))) out.push(child);
      walk(child);
    }
  };
  walk(agent.pid);
  return out;
}

/** The node agent's reported L7 state, as GET /v1/nodes/{node} shows it. */
export async function l7State(c: Cluster, node: string): Promise<{ state?: string; appliedEtag?: string; converged?: boolean; detail?: string } | null> {
  const answer = await c.api.call("GET", `/v1/nodes/${node}`, c.api.operator);
  const shown = JSON.parse(answer.body) as { l7?: { state?: string; appliedEtag?: string; converged?: boolean; detail?: string } };
  return shown.l7 ?? null;
}
