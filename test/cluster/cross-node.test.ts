/**
 * Three nodes on one machine (bench/support/cluster.ts): the real API process,
 * one real agent process per node under `ip netns exec`, workloads in their own
 * namespaces, real TCP across the fabric. One cluster for the whole file.
 *
 *   node-a (z1): client-a (identity client), intruder-a (identity intruder)
 *   node-b (z1): web-b (identity web)
 *   node-c (z2): web-c (identity web)
 *   policy web-in: web admits client only, on 8080
 *   service web: VIP 198.18.128.10:80 -> 8080 on web-b (weight 90) and web-c (weight 10)
 *
 * Proves: cross-node traffic carries the client's own address; a peer the
 * policy does not admit is dropped at the receiving node (its agent's
 * default-deny counter moves, the sender's does not); a policy change is
 * enforced on every node once each shows converged, within one long-poll
 * round, and so is its removal; the VIP splits 1,000 new connections 90/10
 * across two other nodes; an agent killed mid-flight leaves its node serving
 * from the pinned maps and, restarted on the same state, writes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterUnavailableReason, datapathPackets, startCluster, THREE_NODES, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { skipWithout } from "../support/prerequisites.ts";

const reason = clusterUnavailableReason();
const PORT = 8080;
const VIP = "198.18.128.10";
/** The agents' long poll (GET .../datapath?wait=30): a change must be everywhere within one round of it. */
const LONG_POLL_MS = 30_000;

const webIn = (peers: string[]) => ({
  subject: { identity: "web" },
  ingress: [{ peers: peers.map((identity) => ({ identity })), ports: [{ port: PORT, protocol: "tcp" }], action: "allow" }],
});

/** Packets the node's programs dropped for want of an allowing rule, summed over hooks. */
async function denied(c: Cluster, node: string): Promise<number> {
  const packets = datapathPackets(await c.agentMetrics(node));
  return Object.entries(packets)
    .filter(([k]) => k.endsWith("/default-deny") || k.endsWith("/policy-deny"))
    .reduce((sum, [, v]) => sum + v, 0);
}

describe.skipIf(skipWithout("simulated cluster (root, bpf, cgroup2, iproute2, curl)", reason))("three nodes, cross-node traffic through the agents' datapaths", () => {
  let c: Cluster;
  let t: ClusterTenant;
  const addr = (w: string) => c.workloads[w]!.address;

  beforeAll(async () => {
    const started = performance.now();
    c = await startCluster({
      nodes: THREE_NODES,
    });
    t = await c.tenant("cluster");
    c.addWorkload("node-a", { name: "client-a" });
    c.addWorkload("node-a", { name: "intruder-a" });
    c.addWorkload("node-b", { name: "web-b" });
    c.addWorkload("node-c", { name: "web-c" });
    for (const id of ["client", "intruder", "web"]) await t.put(`/identities/${id}`, { path: `/ns/cluster/sa/${id}` });
    for (const w of Object.values(c.workloads)) {
      await t.put(`/workloads/${w.name}`, { identity: w.name.replace(/-[a-z]$/, ""), node: w.node, addresses: [w.address] });
    }
    await t.put("/policies/web-in", webIn(["client"]));
    await t.put("/services/web", {
      vip: VIP,
      ports: [{ port: 80, protocol: "tcp", targetPort: PORT }],
      backends: { explicit: [{ workload: "web-b", weight: 90 }, { workload: "web-c", weight: 10 }] },
    });
    await c.serve("web-b", PORT);
    await c.serve("web-c", PORT);
    await c.converged();
    console.log(`cluster of 3 nodes up and converged in ${((performance.now() - started) / 1000).toFixed(1)} s (fabric ${c.fabric.cidr}, API ${c.api.base})`);
  }, 300_000);
  afterAll(() => c?.cleanup(), 120_000);

  it("gives each node its own pod block and a route to every other node's", () => {
    const blocks = Object.values(c.nodes).map((n) => n.podCidr);
    expect(new Set(blocks).size).toBe(3);
    for (const b of blocks) expect(b).toMatch(/^198\.19\.\d+\.0\/24$/);
  });

  it("client-a on node-a reaches web-b on node-b, which sees client-a's own address", async () => {
    expect(await c.probe("client-a", addr("web-b"), PORT, 3)).toMatchObject({ servers: { "web-b": 3 }, peers: { [addr("client-a")]: 3 }, failures: {} });
    expect(await c.probe("client-a", addr("web-c"), PORT, 3)).toMatchObject({ servers: { "web-c": 3 }, peers: { [addr("client-a")]: 3 }, failures: {} });
  });

  it("intruder-a (another identity, same node) is dropped at node-b, not at node-a", async () => {
    const [atA, atB] = [await denied(c, "node-a"), await denied(c, "node-b")];
    expect(await c.probe("intruder-a", addr("web-b"), PORT, 3, { timeoutMs: 800 })).toMatchObject({ servers: {}, failures: { timeout: 3 } });
    expect(await denied(c, "node-b")).toBeGreaterThanOrEqual(atB + 3);
    expect(await denied(c, "node-a")).toBe(atA);
  });

  it("a policy change is enforced on every node once each shows converged, within one long-poll round; so is its removal", async () => {
    let t0 = performance.now();
    await t.put("/policies/web-in", webIn(["client", "intruder"]));
    await c.converged({ boundMs: LONG_POLL_MS });
    const allowMs = performance.now() - t0;
    expect(await c.probe("intruder-a", addr("web-b"), PORT, 3)).toMatchObject({ servers: { "web-b": 3 }, peers: { [addr("intruder-a")]: 3 } });

    t0 = performance.now();
    await t.put("/policies/web-in", webIn(["client"]));
    await c.converged({ boundMs: LONG_POLL_MS });
    const removeMs = performance.now() - t0;
    expect(await c.probe("intruder-a", addr("web-b"), PORT, 2, { timeoutMs: 800 })).toMatchObject({ servers: {}, failures: { timeout: 2 } });
    expect(await c.probe("client-a", addr("web-b"), PORT, 1)).toMatchObject({ servers: { "web-b": 1 } });
    console.log(`policy change on all 3 nodes: allow ${allowMs.toFixed(0)} ms, removal ${removeMs.toFixed(0)} ms (PUT to every node converged)`);
  }, 120_000);

  it("the VIP splits 1,000 new connections from node-a 90/10 between web-b and web-c, on two other nodes", async () => {
    const total = 1_000;
    const r = await c.probe("client-a", VIP, 80, total, { concurrency: 8, timeoutMs: 3_000 });
    console.log(`1,000 connections to the VIP in ${r.ms} ms: ${JSON.stringify(r.servers)}`);
    expect(r.failures).toEqual({});
    expect((r.servers["web-b"] ?? 0) + (r.servers["web-c"] ?? 0)).toBe(total);
    // 900 expected, sd ≈ 9.5: ±30 is over 3 sd.
    expect(Math.abs((r.servers["web-b"] ?? 0) / total - 0.9)).toBeLessThanOrEqual(0.03);
    // The backends see the client itself: the socket LB rewrote connect(), nothing was NATed on the way.
    expect(r.peers).toEqual({ [addr("client-a")]: total });
  }, 120_000);

  it("node-b's agent killed: its pinned datapath keeps serving; restarted on the same state, it converges and writes nothing", async () => {
    await c.stopAgent("node-b", "SIGKILL");
    expect(await c.probe("client-a", addr("web-b"), PORT, 2)).toMatchObject({ servers: { "web-b": 2 } });
    expect(await c.probe("intruder-a", addr("web-b"), PORT, 1, { timeoutMs: 800 })).toMatchObject({ failures: { timeout: 1 } });
    await c.startAgent("node-b");
    expect(c.nodes["node-b"]!.agent!.output()).not.toContain("registered node");
    // Its first apply (a full fetch diffed against the pinned maps), then its report.
    let metrics = "";
    for (const deadline = Date.now() + 30_000; !/^weft_agent_applies_total [1-9]/m.test(metrics); await new Promise((r) => setTimeout(r, 200))) {
      if (Date.now() > deadline) throw new Error(`node-b's restarted agent applied nothing in 30 s:\n${metrics}`);
      metrics = await c.agentMetrics("node-b");
    }
    await c.converged({ nodes: ["node-b"] });
    expect(metrics).toMatch(/^weft_agent_upserts_total 0$/m);
    expect(metrics).toMatch(/^weft_agent_deletes_total 0$/m);
    expect(await c.probe("client-a", addr("web-b"), PORT, 1)).toMatchObject({ servers: { "web-b": 1 } });
  }, 120_000);
});
