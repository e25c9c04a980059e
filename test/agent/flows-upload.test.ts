/**
 * Flow batches to a real HTTP server standing in for POST
 * /v1/nodes/{node}/flows, through the agent's own client: retries keep the
 * batchId, one batch is in flight at a time, the queue stays bounded while
 * the API fails (merged, what is cut counted as lost), a 429's Retry-After
 * is honoured, a 4xx other than 429 drops the batch (counted, and told to
 * the API with the next one), and the counters say all of it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ApiClient, type FlowBatch } from "../../nodeagent/src/agent/client.ts";
import type { SealedInterval } from "../../nodeagent/src/flows/aggregate.ts";
import { FlowMetrics } from "../../nodeagent/src/flows/metrics.ts";
import { FlowUploader } from "../../nodeagent/src/flows/uploader.ts";
import { until } from "../support/until.ts";
import { addEvent, aggregator, event } from "./flows-support.ts";

interface Received {
  at: number;
  authorization: string | undefined;
  path: string;
  batch: FlowBatch;
}

/** A server answering each POST with the next of `script` (the last one repeats); records every request. */
async function flowsServer(script: ((req: IncomingMessage, res: ServerResponse) => void)[]): Promise<{ url: string; received: Received[]; inFlight: () => number; maxInFlight: () => number; close: () => Promise<void>; server: Server }> {
  const received: Received[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on("close", () => inFlight--);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ at: Date.now(), authorization: req.headers.authorization, path: req.url ?? "", batch: JSON.parse(Buffer.concat(chunks).toString()) as FlowBatch });
      script[Math.min(received.length - 1, script.length - 1)]!(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    inFlight: () => inFlight,
    maxInFlight: () => maxInFlight,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const answer = (status: number, headers: Record<string, string> = {}) => (_req: IncomingMessage, res: ServerResponse) => {
  const problem = status >= 400;
  res.writeHead(status, { "content-type": problem ? "application/problem+json" : "application/json", ...headers }).end(JSON.stringify(problem ? { title: "nope", status } : { stored: true }));
};

/** An interval of `drops` drops and `allowed` allowed flows to distinct ports from `port`. */
function interval(drops: number, allowed = 0, port = 1): SealedInterval {
  const agg = aggregator(Date.UTC(2026, 11, 6, 12));
  for (let i = 0; i < drops; i++) addEvent(agg, event({ reason: "policy-deny", destination: { port: port + i } }));
  for (let i = 0; i < allowed; i++) addEvent(agg, event({ reason: "policy-allow", destination: { port: port + drops + i } }));
  return agg.seal(Date.UTC(2026, 11, 6, 12, 0, 1));
}

async function counters(registry: Registry): Promise<Record<string, number>> {
  const text = await registry.metrics();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(weft_flow_[a-z_]+(?:\{[^}]*\})?) (\d+(?:\.\d+)?)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

const quiet = () => undefined;
const node = "node-1";
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function uploader(url: string, registry: Registry, opts: { maxPending?: number; initialMs?: number; maxMs?: number } = {}): FlowUploader {
  const client = new ApiClient(url, "node-credential");
  const u = new FlowUploader({
    send: (batch, signal) => client.postFlows(node, batch, signal),
    metrics: new FlowMetrics(registry),
    log: quiet,
    backoff: { initialMs: opts.initialMs ?? 40, maxMs: opts.maxMs ?? 80, random: () => 0.5 },
    ...(opts.maxPending ? { maxPending: opts.maxPending } : {}),
  });
  closers.push(() => u.close());
  return u;
}

describe("flow upload", () => {
  it("retries a failed batch (503, 500, a reset connection) with the same batchId and the node credential until the API takes it", async () => {
    const srv = await flowsServer([answer(503), answer(500), (req) => req.socket.destroy(), answer(202)]);
    closers.push(srv.close);
    const registry = new Registry();
    const u = uploader(srv.url, registry);
    u.enqueue(interval(3), 2);
    await until("the batch accepted", 5_000, () => (srv.received.length >= 4 && u.queued.length === 0 ? true : undefined));
    await u.idle();
    expect(srv.received).toHaveLength(4);
    const ids = new Set(srv.received.map((r) => r.batch.batchId));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(srv.received.every((r) => r.authorization === "Bearer node-credential" && r.path === `/v1/nodes/${node}/flows`)).toBe(true);
    // The body is the contract's, all of it, the same on every try.
    const body = srv.received[3]!.batch;
    expect(srv.received.map((r) => JSON.stringify(r.batch))).toEqual(Array(4).fill(JSON.stringify(body)));
    expect(body.lost).toEqual({ kernel: 2, agent: 0 });
    expect(body.aggregates).toHaveLength(3);
    expect(body.flows).toHaveLength(3);
    expect(body.flows[0]).toEqual({
      time: expect.stringMatching(/^2026-12-06T12:00:\d\d\.\d{3}Z$/),
      hook: "ingress",
      verdict: "dropped",
      reason: "policy-deny",
      ruleId: 0,
      protocol: 6,
      src: { address: "198.18.1.2", port: 40000, identity: 11, tenant: 1 },
      dst: { address: "198.18.2.2", port: 1, identity: 22, tenant: 1 },
    });
    expect(await counters(registry)).toMatchObject({
      'weft_flow_upload_batches_total{result="failed"}': 3,
      'weft_flow_upload_batches_total{result="accepted"}': 1,
      'weft_flow_upload_batches_total{result="rejected"}': 0,
      "weft_flow_upload_pending_batches": 0,
    });
  });

  it("sends one batch at a time, in order; a 200 (already stored) counts as a duplicate", async () => {
    const slow = (status: number) => (req: IncomingMessage, res: ServerResponse) => setTimeout(() => answer(status)(req, res), 30);
    const srv = await flowsServer([slow(202), slow(200), slow(202)]);
    closers.push(srv.close);
    const registry = new Registry();
    const u = uploader(srv.url, registry);
    for (let i = 0; i < 3; i++) u.enqueue(interval(1, 0, 100 * (i + 1)), 0);
    await until("three batches", 5_000, () => (srv.received.length === 3 && u.queued.length === 0 ? true : undefined));
    expect(srv.maxInFlight()).toBe(1);
    expect(srv.received.map((r) => r.batch.aggregates[0]!.dstPort)).toEqual([100, 200, 300]);
    expect(await counters(registry)).toMatchObject({ 'weft_flow_upload_batches_total{result="accepted"}': 2, 'weft_flow_upload_batches_total{result="duplicate"}': 1 });
  });

  it("API down: the queue stays bounded, queued intervals are merged (counts kept), cut samples counted as lost; API back: everything arrives", async () => {
    const srv = await flowsServer([answer(202)]);
    closers.push(srv.close);
    // A proxy port: 503 while `up` is false, the real server's answer after.
    let up = false;
    const front = await flowsServer([
      (req, res) => {
        if (!up) return answer(503)(req, res);
        const last = front.received[front.received.length - 1]!;
        void fetch(`${srv.url}${last.path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(last.batch) }).then((r) => answer(r.status)(req, res));
      },
    ]);
    closers.push(front.close);
    const registry = new Registry();
    const maxPending = 4;
    const u = uploader(front.url, registry, { maxPending });
    // 12 intervals of 1500 drops each (distinct ports per interval, the same rows every interval), while down.
    let events = 0;
    let kernel = 0;
    for (let i = 0; i < 12; i++) {
      u.enqueue(interval(1500, 0, 1), i);
      events += 1500;
      kernel += i;
      expect(u.queued.length).toBeLessThanOrEqual(maxPending);
    }
    await until("a few failed tries", 5_000, () => (front.received.length >= 3 ? true : undefined));
    up = true;
    await until("everything delivered", 10_000, () => (u.queued.length === 0 ? true : undefined));
    await u.idle();
    const delivered = srv.received.map((r) => r.batch);
    expect(delivered.length).toBeLessThanOrEqual(maxPending);
    // The batch tried while down was sent again unchanged.
    const firstTried = front.received[0]!.batch.batchId;
    expect(delivered[0]!.batchId).toBe(firstTried);
    // Every event is in an aggregate: merging sums rows and loses no count.
    expect(delivered.reduce((n, b) => n + b.aggregates.reduce((m, a) => m + a.count, 0), 0)).toBe(events);
    expect(delivered.reduce((n, b) => n + b.lost.kernel, 0)).toBe(kernel);
    expect(delivered.every((b) => b.aggregates.length <= 5000 && b.flows.length <= 2000)).toBe(true);
    // Samples: 18,000 made, at most 2000 per delivered batch; the rest counted, in the bodies and on /metrics.
    const shipped = delivered.reduce((n, b) => n + b.flows.length, 0);
    const lostAgent = delivered.reduce((n, b) => n + b.lost.agent, 0);
    expect(shipped + lostAgent).toBe(events);
    expect((await counters(registry))['weft_flow_events_lost_total{cause="agent_buffer"}']).toBe(lostAgent);
    // A merged batch's aggregates span the intervals merged.
    expect(delivered.some((b) => b.aggregates.some((a) => a.count > 1))).toBe(true);
  });

  it("429: waits at least what Retry-After asks, then sends the same batch", async () => {
    const srv = await flowsServer([answer(429, { "retry-after": "1" }), answer(429), answer(202)]);
    closers.push(srv.close);
    const registry = new Registry();
    const u = uploader(srv.url, registry, { initialMs: 200, maxMs: 400 });
    u.enqueue(interval(1), 0);
    await until("accepted after two 429s", 5_000, () => (srv.received.length === 3 && u.queued.length === 0 ? true : undefined));
    const [a, b, c] = srv.received;
    expect(b!.at - a!.at).toBeGreaterThanOrEqual(1000);
    // Without Retry-After, the jittered backoff: its second step is 400 ms ceiling, drawn at the middle: 300 ms.
    expect(c!.at - b!.at).toBeGreaterThanOrEqual(290);
    expect(c!.at - b!.at).toBeLessThan(1000);
    expect(new Set(srv.received.map((r) => r.batch.batchId)).size).toBe(1);
    expect(await counters(registry)).toMatchObject({ 'weft_flow_upload_batches_total{result="failed"}': 2, 'weft_flow_upload_batches_total{result="accepted"}': 1 });
  });

  it("a 4xx other than 429 drops the batch (a bug in the agent), counts its events lost, and tells the API with the next batch", async () => {
    const srv = await flowsServer([answer(400), answer(202)]);
    closers.push(srv.close);
    const registry = new Registry();
    const u = uploader(srv.url, registry);
    u.enqueue(interval(7), 0);
    await until("the refusal", 5_000, () => (srv.received.length === 1 && u.queued.length === 0 ? true : undefined));
    await u.idle();
    u.enqueue(interval(2), 0);
    await until("the next batch", 5_000, () => (srv.received.length === 2 && u.queued.length === 0 ? true : undefined));
    expect(srv.received[1]!.batch.batchId).not.toBe(srv.received[0]!.batch.batchId);
    expect(srv.received[1]!.batch.lost).toEqual({ kernel: 0, agent: 7 });
    expect(await counters(registry)).toMatchObject({
      'weft_flow_upload_batches_total{result="rejected"}': 1,
      'weft_flow_upload_batches_total{result="accepted"}': 1,
      'weft_flow_events_lost_total{cause="upload"}': 7,
    });
  });

  it("a clean stop sends what is queued within its grace, and gives up after it while the API fails", async () => {
    const slow = (req: IncomingMessage, res: ServerResponse) => setTimeout(() => answer(202)(req, res), 50);
    const srv = await flowsServer([slow]);
    closers.push(srv.close);
    const u = uploader(srv.url, new Registry());
    u.enqueue(interval(1, 0, 10), 0);
    u.enqueue(interval(1, 0, 20), 0);
    await u.close(2_000);
    expect(srv.received.map((r) => r.batch.aggregates[0]!.dstPort)).toEqual([10, 20]);
    u.enqueue(interval(1), 0);
    expect(u.queued).toHaveLength(0);

    const down = await flowsServer([answer(503)]);
    closers.push(down.close);
    const stuck = uploader(down.url, new Registry());
    stuck.enqueue(interval(1), 0);
    const t0 = Date.now();
    await stuck.close(300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(down.received.length).toBeGreaterThanOrEqual(2);
  });

  it("404 (an API without the flows route): uploads pause, what comes meanwhile is counted, and the first batch after says so", async () => {
    const srv = await flowsServer([answer(404), answer(202)]);
    closers.push(srv.close);
    const registry = new Registry();
    const client = new ApiClient(srv.url, "node-credential");
    let now = 1_000_000;
    const logs: string[] = [];
    const u = new FlowUploader({ send: (b, s) => client.postFlows(node, b, s), metrics: new FlowMetrics(registry), log: (_l, m) => void logs.push(m), pauseMs: 60_000, now: () => now });
    closers.push(() => u.close());
    u.enqueue(interval(4), 1);
    await until("the 404", 2_000, () => (srv.received.length === 1 && u.queued.length === 0 ? true : undefined));
    await u.idle();
    for (let i = 0; i < 5; i++) u.enqueue(interval(3), 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(srv.received).toHaveLength(1);
    expect(logs.filter((l) => l.includes("404"))).toHaveLength(1);
    now += 60_001;
    u.enqueue(interval(1), 0);
    await until("the batch after the pause", 2_000, () => (srv.received.length === 2 ? true : undefined));
    expect(srv.received[1]!.batch.lost).toEqual({ kernel: 10, agent: 4 + 15 });
    expect(await counters(registry)).toMatchObject({ 'weft_flow_events_lost_total{cause="upload"}': 19, 'weft_flow_upload_batches_total{result="rejected"}': 1 });
  });

  it("an interval with nothing to say sends nothing", async () => {
    const srv = await flowsServer([answer(202)]);
    closers.push(srv.close);
    const u = uploader(srv.url, new Registry());
    u.enqueue({ aggregates: [], samples: [], lost: 0 }, 0);
    await new Promise((r) => setTimeout(r, 100));
    expect(srv.received).toHaveLength(0);
    u.enqueue({ aggregates: [], samples: [], lost: 0 }, 5);
    await until("a batch carrying only kernel losses", 2_000, () => (srv.received.length === 1 ? true : undefined));
    expect(srv.received[0]!.batch).toMatchObject({ lost: { kernel: 5, agent: 0 }, aggregates: [], flows: [] });
  });
});
