// SPDX-License-Identifier: Apache-2.0
/**
 * Issue #21's traces on the simulated cluster (bench/support/cluster.ts):
 * two nodes with real agents, each exporting its HAProxy's spans to an OTLP
 * receiver of the test (--otlp-endpoint, on the host's fabric address), which
 * decodes them with the OpenTelemetry project's definitions.
 *
 *   tenant trace: client-a (node-a) -> L7 service front (relay-b on node-b: for
 *   each request it calls L7 service back, passing on the traceparent it got)
 *   -> back (echo-a on node-a).
 *
 * Each request crosses two proxies: node-a's (client -> front) and node-b's
 * (relay -> back). The receiver must get one trace: front's proxy span (a
 * root, or the child of the client's span when it sent one), and back's
 * proxy span whose parent is the span relay-b passed on, front's proxy
 * span; each backend saw its proxy's span as its parent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { l7State, relayHttp, send, serveHttp } from "../support/l7-cluster.ts";
import { OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { until, untilHolds } from "../support/until.ts";

const reason = clusterUnavailableReason() ?? commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy");
const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

interface Relayed {
  server: string;
  headers: { traceparent?: string };
  downstream: { server: string; headers: { traceparent?: string } };
}

describe.skipIf(skipWithout("simulated cluster with the node's L7 proxy (root, bpf, cgroup2, iproute2, curl, haproxy)", reason))(
  "a request through two L7 services arrives at an OTLP receiver as one trace (issue #21)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-l7-traces`);
    const receiver = new OtlpReceiver();
    let c: Cluster;
    let tenant: ClusterTenant;
    const vips: Record<string, string> = {};
    const addr = (w: string) => c.workloads[w]!.address;

    beforeAll(async () => {
      // The receiver's port is chosen first (a free one on loopback), then bound on the fabric address the agents reach.
      const probe = await new OtlpReceiver().start();
      const port = probe.port;
      await probe.close();
      c = await startCluster({
        nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }],
        agentArgs: ({ hostAddress }) => ["--status-interval", "1", "--otlp-endpoint", `http://${hostAddress}:${port}`],
        cleanup,
      });
      await receiver.start(c.fabric.hostAddress, port);
      cleanup.add("close the OTLP receiver", () => receiver.close());
      tenant = await c.tenant("trace");
      for (const [name, node, identity, app] of [["client-a", "node-a", "client", "client"], ["relay-b", "node-b", "front", "front"], ["echo-a", "node-a", "back", "back"]] as const) {
        c.addWorkload(node, { name });
        await tenant.put(`/identities/${identity}`, { path: `/ns/trace/sa/${identity}`, selectors: { app } });
        await tenant.put(`/workloads/${name}`, { identity, node, addresses: [addr(name)] });
      }
      for (const [name, port] of [["front", 8080], ["back", 8081]] as const) {
        await tenant.put(`/services/${name}`, { ports: [{ port: 80, protocol: "tcp", targetPort: port }], backends: { selector: { labels: { app: name } } } });
        vips[name] = (JSON.parse((await tenant.call("GET", `/services/${name}`)).body) as { vip: string }).vip;
        // A route makes the service an L7 one: its connections go through the caller's node's proxy.
        await tenant.put(`/httpRoutes/${name}`, { parentRefs: [{ name }], rules: [{ backendRefs: [{}] }] });
      }
      await serveHttp(c, "echo-a", "back", 8081);
      await relayHttp(c, "relay-b", "front", 8080, `http://${vips.back}/back`);
      await c.converged();
      for (const node of ["node-a", "node-b"]) {
        await untilHolds(`${node}'s L7 proxy to serve the current document`, () => l7State(c, node), (s) => s?.state === "running" && s.converged === true, 60_000, 200);
      }
    }, 300_000);
    afterAll(async () => {
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    /** One request from client-a to front; what relay-b and echo-a saw, and the trace's spans once both proxies' arrived. */
    async function traced(headers: Record<string, string>): Promise<{ relayed: Relayed; front: ReceivedSpan; back: ReceivedSpan }> {
      const sent = await send(c, "client-a", `http://${vips.front}/front`, 1, { headers });
      expect(sent.failures).toEqual({});
      expect(sent.statuses).toEqual({ 200: 1 });
      const relayed = sent.samples[0]!.body as Relayed;
      const traceId = TRACEPARENT.exec(relayed.headers.traceparent ?? "")?.[1];
      expect(traceId, `relay-b got traceparent ${relayed.headers.traceparent}`).toBeDefined();
      const spans = await until(`both proxies' spans of trace ${traceId}`, 20_000, () => {
        const of = receiver.spans.filter((s) => s.traceId === traceId);
        return of.length >= 2 ? of : undefined;
      }).catch(async (err: Error) => {
        const counters = await Promise.all(["node-a", "node-b"].map(async (n) => `${n}: ${(await c.agentMetrics(n)).split("\n").filter((l) => /^weft_agent_l7_span/.test(l)).join(", ")}`));
        const logs = ["node-a", "node-b"].map((n) => c.nodes[n]!.agent?.output().split("\n").filter((l) => /span|otlp|OTLP/.test(l)).slice(-3).join("\n"));
        throw new Error(`${err.message} (the receiver got ${receiver.posts} exports, ${receiver.spans.length} spans; ${counters.join("; ")}; agents: ${logs.join("\n")})`);
      });
      expect(spans).toHaveLength(2);
      const front = spans.find((s) => s.attributes["weft.service"] === "front")!;
      const back = spans.find((s) => s.attributes["weft.service"] === "back")!;
      console.log(`trace ${traceId} as the receiver decoded it: ${JSON.stringify(spans, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v), 1)}`);
      return { relayed, front, back };
    }

    it("continues the client's trace: client span -> front's proxy span -> back's proxy span, each backend a child of its proxy", async () => {
      const { relayed, front, back } = await traced({ traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` });
      expect(front).toMatchObject({ traceId: CLIENT_TRACE, parentSpanId: CLIENT_SPAN, kind: "SPAN_KIND_SERVER", resource: { "service.name": "weft-proxy", "host.name": "node-a" } });
      expect(front.attributes).toMatchObject({ "weft.tenant": tenant.tenant, "weft.route": "front/0", "network.peer.address": addr("client-a"), "http.response.status_code": 200 });
      expect(relayed.headers.traceparent).toBe(`00-${CLIENT_TRACE}-${front.spanId}-01`);
      // relay-b passed on what it got: back's proxy (node-b's) is a child of front's proxy span.
      expect(back).toMatchObject({ traceId: CLIENT_TRACE, parentSpanId: front.spanId, resource: { "service.name": "weft-proxy", "host.name": "node-b" } });
      expect(back.attributes).toMatchObject({ "weft.route": "back/0", "network.peer.address": addr("relay-b"), "url.path": "/back" });
      expect(relayed.downstream.headers.traceparent).toBe(`00-${CLIENT_TRACE}-${back.spanId}-01`);
      // The back span lies within the front span.
      expect(back.startTimeUnixNano).toBeGreaterThanOrEqual(front.startTimeUnixNano - 1_000_000n);
      expect(back.endTimeUnixNano).toBeLessThanOrEqual(front.endTimeUnixNano + 1_000_000n);
    });

    it("starts the trace at front's proxy when the client sent none", async () => {
      const { relayed, front, back } = await traced({});
      expect(front.parentSpanId).toBe("");
      expect(front.traceId).not.toBe(CLIENT_TRACE);
      expect(relayed.headers.traceparent).toBe(`00-${front.traceId}-${front.spanId}-01`);
      expect(back).toMatchObject({ traceId: front.traceId, parentSpanId: front.spanId });
      expect(relayed.downstream.headers.traceparent).toBe(`00-${front.traceId}-${back.spanId}-01`);
    });

    it("counts the exported spans on each agent's /metrics", async () => {
      for (const node of ["node-a", "node-b"]) {
        const text = await c.agentMetrics(node);
        expect(Number(/^weft_agent_l7_spans_exported_total (\d+)$/m.exec(text)?.[1]), node).toBeGreaterThanOrEqual(2);
      }
    });
  },
);
