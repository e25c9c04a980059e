/**
 * One client process of bench/scale: holds a `?since` long poll for each node
 * it is given, as an agent does, on the node's home replica, and records
 * every answer. Several of these share the 10,000 polls so that no one Node
 * process parses a whole wave's answers (its own event loop would then be
 * what the latencies measure).
 *
 * Failover mirrors the agent with several API endpoints
 * (nodeagent/src/agent/endpoints.ts): a node sticks to its endpoint; on a
 * connection error it moves to the next at once, and only after a whole
 * round of endpoints failed in a row does it wait the agent's backoff
 * (500 ms doubling, equal jitter).
 * A 410 (the new replica keeps no history back to `since`) refetches the full
 * state, as the agent does.
 *
 * Driven over IPC by pollers.ts (requests with an id, one reply each). Times
 * are epoch milliseconds from performance.timeOrigin + performance.now(), so
 * the parent compares them with its own.
 */
import { Agent, request, type IncomingMessage } from "node:http";
import { Backoff, sleep } from "../../nodeagent/src/agent/backoff.ts";
import { pool } from "../support/pool.ts";
import type { Answer, Failover, NodeSpec, PollerReply, PollerRequest, PollMode, NodeView } from "./protocol.ts";

const now = () => performance.timeOrigin + performance.now();
/** Past the server's own wait, a poll that has not answered counts as failed (the agent's slack). */
const CLIENT_SLACK_MS = 10_000;
/** Initial full fetches in flight at once per process: an agent fleet starting together, but not all in one burst. */
const FETCH_CONCURRENCY = 8;

interface Followed extends NodeSpec {
  replica: number;
  revision: number | null;
  etag: string | null;
  mode: PollMode;
  /** When the poll now in flight was fully written to its replica; null while none is. */
  sentAt: number | null;
  /** A full fetch is in flight (first, or after a 410): the node holds no poll, whatever sentAt says. */
  fetching: boolean;
  /** The replica of the last failed request, until a request is written to another one. */
  failedFrom: number | null;
  failedAt: number;
  backoff: Backoff;
  inRow: number;
  current: AbortController | null;
}

let endpoints: string[] = [];
let waitSeconds = 30;
let stopped = false;
const nodes: Followed[] = [];
let answers: Answer[] = [];
let failovers: Failover[] = [];
const errors: string[] = [];
const agents: Agent[] = [];

interface Reply {
  status: number;
  revision: number;
  etag: string;
  at: number;
  bytes: number;
}

function get(n: Followed, path: string, headers: Record<string, string>, timeoutMs: number, signal: AbortSignal): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // Accept-Encoding as an agent's fetch sends it: full states of 16 KiB and more come gzip-coded (bytes: on the wire).
    const req = request(`${endpoints[n.replica]}${path}`, { agent: agents[n.replica], headers: { authorization: `Bearer ${n.credential}`, "accept-encoding": "gzip, deflate", ...headers }, signal }, (res: IncomingMessage) => {
      let bytes = 0;
      res.on("data", (c: Buffer) => (bytes += c.length));
      res.on("end", () =>
        resolve({ status: res.statusCode!, revision: Number(res.headers["x-weft-revision"]), etag: String(res.headers.etag ?? ""), at: now(), bytes }),
      );
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.on("finish", () => {
      n.sentAt = now();
      if (n.failedFrom !== null && n.replica !== n.failedFrom) {
        failovers.push({ node: n.index, from: n.failedFrom, to: n.replica, failedAt: n.failedAt, sentAt: n.sentAt });
        n.failedFrom = null;
      }
    });
    req.end();
  });
}

/**
 * A status report as the agent sends one (PUT /v1/nodes/{node}/status, what
 * it has applied) on the replica it polls; answers the time it took, or NaN
 * when it failed.
 */
function report(n: Followed): Promise<number> {
  const body = JSON.stringify({ appliedRevision: n.revision ?? 0, hash: (n.etag ?? "-").replaceAll('"', "") || "-", counters: {}, errors: [] });
  const start = now();
  return new Promise((resolve) => {
    const req = request(
      `${endpoints[n.replica]}/v1/nodes/${n.name}/status`,
      { method: "PUT", agent: agents[n.replica], headers: { authorization: `Bearer ${n.credential}`, "content-type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode === 200 ? now() - start : Number.NaN));
        res.on("error", () => resolve(Number.NaN));
      },
    );
    req.setTimeout(CLIENT_SLACK_MS, () => req.destroy());
    req.on("error", () => resolve(Number.NaN));
    req.end(body);
  });
}

let reporting = false;
let reportMs: number[] = [];

/** Each node reports every intervalMs, the first at a random point of the interval (agents start apart). */
async function reportEvery(n: Followed, intervalMs: number): Promise<void> {
  await sleep(Math.random() * intervalMs);
  while (reporting && !stopped) {
    const next = now() + intervalMs;
    reportMs.push(await report(n));
    await sleep(Math.max(0, next - now()));
  }
}

/**
 * The full state, at once (an agent's first fetch, or after a 410). After a
 * 410 it is an answer like a poll's: the survivor of a failover may answer it
 * with a state that already carries a write, and the agent then has that
 * write (counted as the change reaching the node, not as "not woken").
 */
async function fetchFull(n: Followed, signal: AbortSignal): Promise<void> {
  const had = n.etag;
  n.fetching = true;
  let r: Reply;
  try {
    r = await get(n, `/v1/nodes/${n.name}/datapath`, {}, CLIENT_SLACK_MS * 3, signal);
  } finally {
    n.fetching = false;
    n.sentAt = null;
  }
  if (r.status !== 200) throw new Error(`full state of ${n.name}: ${r.status}`);
  if (had !== null) answers.push({ node: n.index, at: r.at, revision: r.revision, changed: r.etag !== had, replica: n.replica, full: true, bytes: r.bytes });
  n.revision = r.revision;
  n.etag = r.etag;
}

async function pollOnce(n: Followed, signal: AbortSignal): Promise<void> {
  if (n.revision === null) return fetchFull(n, signal);
  const path = `/v1/nodes/${n.name}/datapath?wait=${waitSeconds}${n.mode === "delta" ? `&since=${n.revision}` : ""}`;
  const headers: Record<string, string> = n.mode === "full" ? { "if-none-match": n.etag! } : {};
  const r = await get(n, path, headers, waitSeconds * 1000 + CLIENT_SLACK_MS, signal);
  n.sentAt = null;
  if (r.status === 410) {
    n.revision = null;
    return;
  }
  if (r.status !== 200 && r.status !== 304) throw Object.assign(new Error(`poll of ${n.name}: ${r.status}`), { http: true });
  const changed = r.status === 200 && (n.mode === "full" ? r.etag !== n.etag : r.revision > n.revision);
  answers.push({ node: n.index, at: r.at, revision: r.revision, changed, replica: n.replica, full: n.mode === "full" && r.status === 200, bytes: r.bytes });
  n.revision = Math.max(n.revision, r.revision);
  n.etag = r.etag;
}

async function follow(n: Followed): Promise<void> {
  while (!stopped) {
    const aborter = new AbortController();
    n.current = aborter;
    try {
      await pollOnce(n, aborter.signal);
      n.inRow = 0;
      n.backoff.reset();
    } catch (err) {
      n.sentAt = null;
      if (stopped) return;
      if (aborter.signal.aborted) continue; // a mode switch: poll again at once, same replica
      if ((err as { http?: boolean }).http) {
        errors.push((err as Error).message);
        await sleep(n.backoff.next());
        continue;
      }
      // A connection error: the next endpoint at once; the backoff once every endpoint failed in turn.
      if (n.failedFrom === null) {
        n.failedFrom = n.replica;
        n.failedAt = now();
      }
      n.replica = (n.replica + 1) % endpoints.length;
      if (++n.inRow % endpoints.length === 0) await sleep(n.backoff.next());
    }
  }
}

const view = (n: Followed): NodeView => ({ node: n.index, replica: n.replica, revision: n.revision ?? -1, etag: n.etag ?? "", held: n.sentAt !== null && !n.fetching, failed: n.failedFrom !== null });

async function handle(msg: PollerRequest): Promise<unknown> {
  switch (msg.op) {
    case "fetch": {
      endpoints = msg.endpoints;
      waitSeconds = msg.waitSeconds;
      for (const _ of endpoints) agents.push(new Agent({ keepAlive: true, maxSockets: Infinity }));
      for (const spec of msg.nodes) {
        nodes.push({ ...spec, replica: spec.home, revision: null, etag: null, mode: "delta", sentAt: null, fetching: false, failedFrom: null, failedAt: 0, backoff: new Backoff(), inRow: 0, current: null });
      }
      const start = now();
      await pool(nodes, FETCH_CONCURRENCY, (n) => fetchFull(n, new AbortController().signal));
      return { ms: now() - start };
    }
    case "hold":
      for (const n of nodes) void follow(n);
      return {};
    case "view":
      return nodes.map(view);
    case "collect": {
      const out = { answers, failovers, errors: errors.splice(0) };
      answers = [];
      failovers = [];
      return out;
    }
    case "mode": {
      const wanted = new Set(msg.nodes);
      for (const n of nodes) {
        if (!wanted.has(n.index) || n.mode === msg.mode) continue;
        n.mode = msg.mode;
        n.current?.abort();
      }
      return {};
    }
    case "report":
      reporting = msg.intervalMs > 0;
      if (reporting) for (const n of nodes) void reportEvery(n, msg.intervalMs);
      return {};
    case "reports": {
      const out = reportMs;
      reportMs = [];
      return out;
    }
    case "stop":
      stopped = true;
      reporting = false;
      for (const n of nodes) n.current?.abort();
      for (const a of agents) a.destroy();
      return {};
  }
}

process.on("message", (msg: PollerRequest) => {
  handle(msg).then(
    (result) => process.send!({ id: msg.id, result } satisfies PollerReply),
    (err: Error) => process.send!({ id: msg.id, error: err.message } satisfies PollerReply),
  );
});
// The parent gone (killed, crashed): nothing left to measure for.
process.on("disconnect", () => process.exit(0));
