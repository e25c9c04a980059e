/**
 * A trafficPolicy through the API, enforced by each node's L7 proxy (issue
 * #21), on the simulated cluster (bench/support/cluster.ts): real agents,
 * the kernel steering connections to the node's HAProxy, workloads in
 * namespaces. One cluster for the file.
 *
 *   tenant shop, callers client-a (identity client) and other-a (identity other) on node-a,
 *   so node-a's proxy decides every request here:
 *     rated    80 -> 8090  rated-b; route; rateLimit 1/s burst 5 (window 5 s)
 *     pooled   80 -> 8091  pool-b answers after SLOW_MS; route; maxConnections 1, maxPendingRequests 1
 *     ejecting 80 -> 8092  bad1-a, bad2-b answer 503; good1-a, good2-b 200; route;
 *                          outlierDetection 5 in a row, 100ms, 6s, 25% (one of four)
 *
 * Proves: identity A past its burst gets 429 problem+json with Retry-After
 * while identity B, same service, is served; requests past maxConnections
 * wait and past maxPendingRequests are refused 503; a backend failing 5
 * times in a row gets 0 requests during its ejection and returns after it,
 * and max ejection percent holds (the other failing backend stays in).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { addWorkloads, l7State, send, serveHttp, SLOW_MS } from "../support/l7-cluster.ts";
import { untilHolds } from "../support/until.ts";

const reason = clusterUnavailableReason() ?? commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy");

const BASE_EJECTION_MS = 6_000;

describe.skipIf(skipWithout("simulated cluster with the node's L7 proxy (root, bpf, cgroup2, iproute2, curl, haproxy)", reason))(
  "a trafficPolicy through each node's L7 proxy (issue #21)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-l7-traffic`);
    let c: Cluster;
    let shop: ClusterTenant;
    const vips: Record<string, string> = {};
    const url = (svc: string, path = "/") => `http://${vips[svc]}${path}`;
    const l7Converged = (node: string) =>
      untilHolds(`${node}'s L7 proxy to serve the current document`, () => l7State(c, node), (s) => s?.state === "running" && s.converged === true, 60_000, 200);
    /** The value of `name`{tenant shop, service, ...labels} on node-a's agent, 0 while it has none. */
    const metric = async (name: string, service: string, labels = "") => {
      const re = new RegExp(`^${name}\\{tenant="${shop.tenant}",service="${service}"${labels}\\} (\\d+)$`, "m");
      return Number(re.exec(await c.agentMetrics("node-a"))?.[1] ?? 0);
    };

    beforeAll(async () => {
      c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], agentArgs: ["--status-interval", "1"], cleanup });
      shop = await c.tenant("shop");
      const workloads = [
        ["client-a", "node-a", "client", {}],
        ["other-a", "node-a", "other", {}],
        ["rated-b", "node-b", "rated", { app: "rated" }],
        ["pool-b", "node-b", "pooled", { app: "pooled" }],
        ["bad1-a", "node-a", "bad1", { app: "ejecting" }],
        ["bad2-b", "node-b", "bad2", { app: "ejecting" }],
        ["good1-a", "node-a", "good1", { app: "ejecting" }],
        ["good2-b", "node-b", "good2", { app: "ejecting" }],
      ] as const;
      await addWorkloads(c, shop, workloads);
      for (const [name, port] of [["rated", 8090], ["pooled", 8091], ["ejecting", 8092]] as const) {
        await shop.put(`/services/${name}`, { ports: [{ port: 80, protocol: "tcp", targetPort: port }], backends: { selector: { labels: { app: name } } } });
        vips[name] = (JSON.parse((await shop.call("GET", `/services/${name}`)).body) as { vip: string }).vip;
        // A route makes the service L7: steered to the node's proxy, where its trafficPolicy applies.
        await shop.put(`/httpRoutes/${name}`, { parentRefs: [{ name }], rules: [{ backendRefs: [{}] }] });
      }
      const put = async (name: string, body: unknown) => expect(await shop.put(`/trafficPolicies/${name}`, body)).toBeLessThan(300);
      await put("rated", { targetRef: { kind: "Service", name: "rated" }, rateLimit: { requestsPerSecond: 1, burst: 5 } });
      await put("pooled", { targetRef: { name: "pooled" }, connectionPool: { maxConnections: 1, maxPendingRequests: 1 } });
      await put("ejecting", { targetRef: { name: "ejecting" }, outlierDetection: { consecutive5xx: 5, interval: "100ms", baseEjectionTime: "6s", maxEjectionPercent: 25 } });
      await serveHttp(c, "rated-b", "rated", 8090);
      await serveHttp(c, "pool-b", "pooled", 8091, "slow");
      await serveHttp(c, "bad1-a", "bad1", 8092, "fail");
      await serveHttp(c, "bad2-b", "bad2", 8092, "fail");
      await serveHttp(c, "good1-a", "good1", 8092);
      await serveHttp(c, "good2-b", "good2", 8092);
      await c.converged();
      await l7Converged("node-a");
    }, 300_000);
    afterAll(async () => {
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    it("answers identity A past its burst 429 problem+json with Retry-After, while identity B on the same service is served", async () => {
      const burst = await send(c, "client-a", url("rated"), 5, { concurrency: 1, keepAlive: true });
      expect(burst.statuses).toEqual({ 200: 5 });
      // Within the 5 s window: every further request of A is refused, with when to come back.
      const past = await send(c, "client-a", url("rated"), 3, { concurrency: 1, keepAlive: true });
      expect(past.statuses).toEqual({ 429: 3 });
      const refusal = past.samples[0]!;
      expect(refusal.headers["content-type"]).toBe("application/problem+json");
      expect(refusal.headers["retry-after"]).toBe("5");
      expect(refusal.body).toMatchObject({ type: "about:blank", status: 429, title: "Too Many Requests" });
      const other = await send(c, "other-a", url("rated"), 5, { concurrency: 1, keepAlive: true });
      expect(other.statuses).toEqual({ 200: 5 });
      await new Promise((r) => setTimeout(r, 5_000));
      expect((await send(c, "client-a", url("rated"), 1)).statuses).toEqual({ 200: 1 });
      await untilHolds("the 429s counted as rate-limited", () => metric("weft_http_requests_total", "rated", ',route="",code_class="4xx",refused="rate-limited"'), (n) => n === 3, 10_000, 200);
    }, 60_000);

    it("holds requests past maxConnections waiting, and refuses those past maxPendingRequests with 503 problem+json", async () => {
      // Six at once at a backend that takes SLOW_MS: one in flight, one waiting (served after it), four refused at once.
      const started = performance.now();
      const got = await send(c, "client-a", url("pooled"), 6, { concurrency: 6 });
      const tookMs = performance.now() - started;
      console.log(`pooled: ${JSON.stringify(got.statuses)} in ${tookMs.toFixed(0)} ms`);
      expect(got.failures).toEqual({});
      expect(got.statuses).toEqual({ 200: 2, 503: 4 });
      const refusal = got.samples.find((s) => s.status === 503)!;
      expect(refusal.headers["content-type"]).toBe("application/problem+json");
      expect(tookMs).toBeGreaterThanOrEqual(2 * SLOW_MS);
      // All four were the pending limit's refusal, however the six met HAProxy's threads (none waited and timed out in the queue).
      await untilHolds("the 503s counted as overflow", () => metric("weft_http_requests_total", "pooled", ',route="[^"]*",code_class="5xx",refused="overflow"'), (n) => n === 4, 10_000, 200);
    }, 60_000);

    it("ejects a backend failing 5 times in a row: 0 requests during its ejection, back after it, and at most 25% of the backends out", async () => {
      // Round robin over four, one at a time: each failing backend fails 10 times in a row; only one may go out.
      const first = await send(c, "client-a", url("ejecting"), 40, { concurrency: 1, keepAlive: true });
      console.log(`ejecting, before: ${JSON.stringify(first.statuses)} ${JSON.stringify(first.servers)}`);
      await untilHolds("one ejected backend on node-a", () => metric("weft_http_ejected_backends", "ejecting"), (n) => n === 1, 10_000, 200);
      const ejectedAt = performance.now();
      const during = await send(c, "client-a", url("ejecting"), 30, { concurrency: 1, keepAlive: true });
      console.log(`ejecting, during: ${JSON.stringify(during.statuses)} ${JSON.stringify(during.servers)}`);
      expect(performance.now() - ejectedAt).toBeLessThan(BASE_EJECTION_MS);
      const out = ["bad1", "bad2"].filter((b) => !during.servers[b]);
      expect(out).toHaveLength(1);
      // The other failing backend stays in: 25% of four is one.
      expect(during.servers[out[0] === "bad1" ? "bad2" : "bad1"]).toBeGreaterThan(0);
      expect(during.servers["good1"]).toBeGreaterThan(0);
      expect(during.servers["good2"]).toBeGreaterThan(0);
      expect(await metric("weft_http_outlier_ejections_total", "ejecting")).toBeGreaterThanOrEqual(1);

      await new Promise((r) => setTimeout(r, Math.max(0, BASE_EJECTION_MS + 500 - (performance.now() - ejectedAt))));
      const after = await send(c, "client-a", url("ejecting"), 8, { concurrency: 1, keepAlive: true });
      console.log(`ejecting, after: ${JSON.stringify(after.statuses)} ${JSON.stringify(after.servers)}`);
      expect(after.servers[out[0]!]).toBeGreaterThan(0);
    }, 60_000);
  },
);
