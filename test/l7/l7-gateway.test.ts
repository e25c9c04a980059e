/**
 * Issue #21, the Gateway API's canary between services, on the simulated
 * cluster (bench/support/cluster.ts): two nodes with real agents, each
 * driving its node's HAProxy.
 *
 *   tenant gw:
 *     web     80 -> 8080  the parent: every web workload (app web)
 *     web-v1  80 -> 8080  v1-a (version v1; node-a)
 *     web-v2  80 -> 8090  v2-b (version v2; node-b), which serves on 8090 only
 *     route split: web -> 90 web-v1 / 10 web-v2, by service name
 *   caller: client-a (node-a).
 *
 * Proves: a route's backendRefs naming services send each share to the
 * named service's backends on its own target port (v2 answers only on
 * 8090, so any request sent to the parent's 8080 there would fail); the split
 * holds within ±3 points over 1,000 requests; the named services are not L7
 * themselves (a call to web-v2's VIP reaches v2 from the caller's own address,
 * not through the proxy).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { formatIPv4, parseIPv4 } from "@weft/codec";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { l7State, send, serveHttp, share } from "../support/l7-cluster.ts";
import { untilHolds } from "../support/until.ts";

const reason = clusterUnavailableReason() ?? commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy");

const service = (targetPort: number, labels: Record<string, string>) => ({ ports: [{ port: 80, protocol: "tcp", targetPort }], backends: { selector: { labels } } });

describe.skipIf(skipWithout("simulated cluster with the node's L7 proxy (root, bpf, cgroup2, iproute2, curl, haproxy)", reason))(
  "two nodes, a canary between services through each node's L7 proxy (issue #21, Gateway API form)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-l7gw`);
    let c: Cluster;
    let gw: ClusterTenant;
    const vips: Record<string, string> = {};
    const addr = (w: string) => c.workloads[w]!.address;
    const proxyAddress = (node: string) => formatIPv4(parseIPv4(c.nodes[node]!.podCidr.split("/")[0]!) + 1);

    beforeAll(async () => {
      c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], agentArgs: ["--status-interval", "1"], cleanup });
      gw = await c.tenant("gw");
      const workloads = [
        ["client-a", "node-a", "client", {}],
        ["v1-a", "node-a", "web-v1", { app: "web", version: "v1" }],
        ["v2-b", "node-b", "web-v2", { app: "web", version: "v2" }],
      ] as const;
      for (const [name, node, identity, labels] of workloads) {
        c.addWorkload(node, { name });
        await gw.put(`/identities/${identity}`, { path: `/ns/gw/sa/${identity}`, selectors: labels });
        await gw.put(`/workloads/${name}`, { identity, node, addresses: [addr(name)] });
      }
      for (const [name, port, labels] of [["web", 8080, { app: "web" }], ["web-v1", 8080, { version: "v1" }], ["web-v2", 8090, { version: "v2" }]] as const) {
        await gw.put(`/services/${name}`, service(port, labels));
        vips[name] = (JSON.parse((await gw.call("GET", `/services/${name}`)).body) as { vip: string }).vip;
      }
      await gw.put("/httpRoutes/split", {
        parentRefs: [{ name: "web" }],
        rules: [{ backendRefs: [{ kind: "Service", name: "web-v1", weight: 90 }, { kind: "Service", name: "web-v2", port: 80, weight: 10 }] }],
      });
      await serveHttp(c, "v1-a", "v1", 8080);
      await serveHttp(c, "v2-b", "v2", 8090);
      await c.converged();
      await untilHolds("node-a's L7 proxy to serve the current document", () => l7State(c, "node-a"), (s) => s?.state === "running" && s.converged === true, 60_000, 200);
    }, 300_000);
    afterAll(async () => {
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    it("splits 90/10 between web-v1 and web-v2 by service name within ±3 points over 1,000 requests, each on its own target port", async () => {
      const split = await send(c, "client-a", `http://${vips.web}/`, 1_000, { concurrency: 8, keepAlive: true });
      console.log(`gateway canary: ${JSON.stringify(split.statuses)} ${JSON.stringify(split.servers)}`);
      expect(split.failures).toEqual({});
      expect(split.statuses).toEqual({ 200: 1_000 });
      expect(Object.keys(split.servers).sort()).toEqual(["v1", "v2"]);
      expect(share(split.servers, "v1")).toBeGreaterThanOrEqual(0.87);
      expect(share(split.servers, "v1")).toBeLessThanOrEqual(0.93);
      // Through node-a's proxy: the backends see its address.
      expect(split.samples.every((s) => (s.body as { peer: string }).peer === proxyAddress("node-a"))).toBe(true);
    });

    it("leaves the named services on the kernel's path: web-v2 called by its VIP answers the caller's own address", async () => {
      const direct = await send(c, "client-a", `http://${vips["web-v2"]}/`, 5, { concurrency: 1 });
      expect(direct.statuses).toEqual({ 200: 5 });
      expect(direct.servers).toEqual({ v2: 5 });
      for (const s of direct.samples) expect((s.body as { peer: string }).peer).toBe(addr("client-a"));
    });
  },
);
