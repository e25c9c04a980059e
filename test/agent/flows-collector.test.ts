/**
 * The drain loop without the kernel: the kernel's loss counters reported as
 * increases since the agent started (in the metrics and the batches), a
 * failing ring read logged once and never thrown into the timers,
 * GET /flows on the agent's metrics server, and the events the agent makes
 * itself (handleEvents: the proxy's records, the transport's outcomes)
 * counted as those same events read from the ring.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import { FlowCollector, type FlowSource } from "../../nodeagent/src/flows/collector.ts";
import { flowsRoute } from "../../nodeagent/src/flows/local-read.ts";
import { FlowMetrics } from "../../nodeagent/src/flows/metrics.ts";
import { FlowUploader } from "../../nodeagent/src/flows/uploader.ts";
import { until } from "../support/until.ts";
import { encodeEvents, event, fixedClock, flowBatchReceiver } from "./flows-support.ts";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function setup(source: FlowSource, buffer = 8) {
  const { received, client, close } = await flowBatchReceiver();
  closers.push(close);
  const agentMetrics = new AgentMetrics();
  const metrics = new FlowMetrics(agentMetrics.registry);
  const logs: string[] = [];
  const uploader = new FlowUploader({ send: (b, s) => client.postFlows("n", b, s), metrics, log: () => undefined });
  closers.push(() => uploader.close());
  const collector = new FlowCollector({ source, clock: fixedClock, metrics, uploader, buffer, intervalMs: 1000, log: (_l, msg) => void logs.push(msg) });
  return { received, agentMetrics, collector, uploader, logs };
}

const lostCounter = async (m: AgentMetrics, cause: string) => Number(new RegExp(`^weft_flow_events_lost_total\\{cause="${cause}"\\} (\\d+)$`, "m").exec(await m.registry.metrics())?.[1]);

describe("the drain loop", () => {
  it("reports the kernel's losses as increases since the agent started, in the counters and the batches", async () => {
    const stats = { rateLimited: 100n, ringFull: 7n };
    const { received, agentMetrics, collector, uploader } = await setup({ drain: () => [], stats: () => stats });
    // What the kernel lost before this agent is not counted.
    collector.seal();
    expect(await lostCounter(agentMetrics, "rate_limited")).toBe(0);
    stats.rateLimited += 30n;
    stats.ringFull += 2n;
    collector.handle(encodeEvents([event({ reason: "policy-deny" })]));
    collector.seal();
    await until("the batch", 2_000, () => (received.length === 1 ? true : undefined));
    await uploader.idle();
    expect(received[0]!.lost).toEqual({ kernel: 32, agent: 0 });
    expect(await lostCounter(agentMetrics, "rate_limited")).toBe(30);
    expect(await lostCounter(agentMetrics, "ring_full")).toBe(2);
    // The stats map made anew (cleanup and a new pin): its counters count from zero again.
    stats.rateLimited = 5n;
    stats.ringFull = 0n;
    collector.seal();
    await until("the second batch", 2_000, () => (received.length === 2 ? true : undefined));
    expect(received[1]!.lost).toEqual({ kernel: 5, agent: 0 });
  });

  it("a failing ring or stats read is logged once, and the loop goes on", async () => {
    let fail = true;
    const { collector, logs } = await setup({
      drain: () => {
        if (fail) throw new Error("EBADF");
        // Two records, each handed over on its own, as the ring reader does.
        return [encodeEvents([event({ destination: { port: 1 } })]), encodeEvents([event({ destination: { port: 2 } })])];
      },
      stats: () => {
        if (fail) throw new Error("ENOENT");
        return { rateLimited: 0n, ringFull: 0n };
      },
    });
    for (let i = 0; i < 5; i++) expect(collector.drainOnce()).toBe(0);
    expect(() => collector.seal()).not.toThrow();
    expect(logs.filter((l) => l.includes("EBADF"))).toHaveLength(1);
    fail = false;
    expect(collector.drainOnce()).toBe(2);
    expect(collector.last().map((f) => f.dst.port)).toEqual([1, 2]);
  });

  it("GET /flows answers the newest flows, oldest first, and a 400 problem for a bad limit", async () => {
    const { agentMetrics, collector } = await setup({ drain: () => [], stats: () => ({ rateLimited: 0n, ringFull: 0n }) }, 8);
    collector.handle(encodeEvents(Array.from({ length: 12 }, (_, i) => event({ destination: { port: 100 + i } }))));
    agentMetrics.serve("/flows", flowsRoute((limit) => collector.last(limit), 8));
    const port = await agentMetrics.listen(0);
    closers.push(() => agentMetrics.close());
    const get = async (q: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/flows${q}`);
      return { status: res.status, type: res.headers.get("content-type"), body: (await res.json()) as { flows?: { dst: { port: number } }[]; detail?: string } };
    };
    expect((await get("")).body.flows!.map((f) => f.dst.port)).toEqual([104, 105, 106, 107, 108, 109, 110, 111]);
    expect((await get("?limit=3")).body.flows!.map((f) => f.dst.port)).toEqual([109, 110, 111]);
    for (const bad of ["0", "9", "-1", "1.5", "x", "", "99999999999"]) {
      const r = await get(`?limit=${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.type).toBe("application/problem+json");
      expect(r.body.detail).toMatch(/limit .* is not an integer 1\.\.8/);
    }
    // Only GET: anything else is the metrics server's 404.
    expect((await fetch(`http://127.0.0.1:${port}/flows`, { method: "POST" })).status).toBe(404);
  });

  it("counts the events it is handed (handleEvents) as it counts the same events decoded from their records", async () => {
    const events = Array.from({ length: 300 }, (_, i) =>
      event({
        hook: (["l7", "transport", "ingress", "sock"] as const)[i % 4],
        reason: (["http-forwarded", "http-refused", "policy-deny", "default-deny", "lb-translated", "audit"] as const)[i % 6],
        ruleId: i % 3,
        length: 100 + i,
        source: { identity: 10 + (i % 5), tenant: 1 + (i % 2), port: 30_000 + i },
        destination: { port: 8080 + (i % 7) },
      }),
    );
    const seen = [];
    for (const feed of [(c: FlowCollector) => c.handleEvents(events.slice(0, 150), 2) + c.handleEvents(events.slice(150)), (c: FlowCollector) => c.handle(encodeEvents(events)) + (c.handleEvents([], 2), 0)]) {
      const { received, agentMetrics, collector } = await setup({ drain: () => [], stats: () => ({ rateLimited: 0n, ringFull: 0n }) }, 64);
      expect(feed(collector)).toBe(300);
      const text = (await agentMetrics.registry.metrics()).split("\n").filter((l) => /^weft_(flows_total|drops_total|flow_events_lost_total)\{/.test(l));
      const last = collector.last();
      collector.seal();
      await until("the batch", 2_000, () => (received.length === 1 ? true : undefined));
      const { aggregates, flows, lost } = received[0]!;
      seen.push({ text: text.sort(), last, aggregates: aggregates.map(({ start: _s, end: _e, ...row }) => row), flows, lost });
    }
    expect(seen[0]!.text.some((l) => /reason="http-forwarded",hook="l7"\} 25$/.test(l))).toBe(true);
    expect(seen[0]).toEqual(seen[1]);
  });
});
