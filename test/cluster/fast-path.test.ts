/**
 * The cross-node fast path on two nodes of a simulated cluster
 * (bench/support/cluster.ts, whose agents run with `--uplink fab0`, the node's
 * end of the fabric, inside the node's namespace): the sending node's
 * weft_from_wl forwards with bpf_fib_lookup + bpf_redirect_neigh ([R11]), the
 * receiving node's weft_from_uplink decides and delivers with
 * bpf_redirect_peer ([R12]). What proves the shortcut is each node's own IP
 * forwarding counter (Ip: ForwDatagrams in its /proc/net/snmp): a routed
 * packet moves it, a redirected one never does. Policy still drops at the
 * receiving node, counted by its agent.
 *
 *   node-a: client-a (identity client), intruder-a (identity intruder), plain-a (not declared)
 *   node-b: web-b (identity web), plain-b (not declared)
 *   policy web-in: web admits client only, on 8080
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterUnavailableReason, datapathPackets, NODE_UPLINK, startCluster, type Cluster } from "../../bench/support/cluster.ts";
import { cleanup as uninstall } from "../../nodeagent/src/loader/index.ts";
import { skipWithout } from "../support/prerequisites.ts";

const reason = clusterUnavailableReason();
const PORT = 8080;

/** Datagrams the node's IP stack forwarded (its namespace's Ip: ForwDatagrams). */
function forwarded(c: Cluster, node: string): number {
  const snmp = execFileSync("ip", ["netns", "exec", c.nodes[node]!.netns, "cat", "/proc/net/snmp"], { encoding: "utf8" }).split("\n").filter((l) => l.startsWith("Ip:"));
  const [names, values] = snmp.map((l) => l.trim().split(/\s+/));
  return Number(values![names!.indexOf("ForwDatagrams")]);
}

async function dropped(c: Cluster, node: string): Promise<number> {
  const packets = datapathPackets(await c.agentMetrics(node));
  return (packets["ingress/default-deny"] ?? 0) + (packets["ingress/policy-deny"] ?? 0);
}

describe.skipIf(skipWithout("simulated cluster (root, bpf, cgroup2, iproute2, curl)", reason))("two nodes, the cross-node fast path", () => {
  let c: Cluster;
  const addr = (w: string) => c.workloads[w]!.address;

  beforeAll(async () => {
    c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }] });
    const t = await c.tenant("fastpath");
    for (const [name, node] of [["client-a", "node-a"], ["intruder-a", "node-a"], ["plain-a", "node-a"], ["web-b", "node-b"], ["plain-b", "node-b"]] as const) c.addWorkload(node, { name });
    for (const id of ["client", "intruder", "web"]) await t.put(`/identities/${id}`, { path: `/ns/fastpath/sa/${id}` });
    for (const w of ["client-a", "intruder-a", "web-b"]) {
      const wl = c.workloads[w]!;
      await t.put(`/workloads/${w}`, { identity: w.replace(/-[a-z]$/, ""), node: wl.node, addresses: [wl.address] });
    }
    await t.put("/policies/web-in", {
      subject: { identity: "web" },
      ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow" }],
    });
    await c.serve("web-b", PORT);
    await c.serve("plain-b", PORT);
    await c.converged();
  }, 300_000);
  afterAll(() => c?.cleanup(), 120_000);

  it("each agent put weft_from_uplink on its node's fabric device, and nowhere else", () => {
    for (const n of Object.values(c.nodes)) {
      const [link] = JSON.parse(execFileSync("ip", ["-n", n.netns, "-j", "link", "show", "dev", NODE_UPLINK], { encoding: "utf8" })) as { ifindex: number }[];
      const pins = readdirSync(join(n.pinDir, "links")).filter((l) => l.startsWith("uplink-"));
      expect(pins).toEqual([`uplink-${link!.ifindex}-ingress`]);
      const info = JSON.parse(execFileSync("bpftool", ["-j", "link", "show", "pinned", join(n.pinDir, "links", pins[0]!)], { encoding: "utf8" })) as { prog_id: number };
      const prog = JSON.parse(execFileSync("bpftool", ["-j", "prog", "show", "id", String(info.prog_id)], { encoding: "utf8" })) as { name: string };
      expect(prog.name).toBe("weft_from_uplink");
    }
  });

  it("client-a reaches web-b, which sees client-a's own address, and neither node's IP stack forwards a packet of it", async () => {
    const before = { a: forwarded(c, "node-a"), b: forwarded(c, "node-b") };
    expect(await c.probe("client-a", addr("web-b"), PORT, 20)).toMatchObject({ servers: { "web-b": 20 }, peers: { [addr("client-a")]: 20 }, failures: {} });
    // 20 connections are over 100 packets each way; the margin is for stray IPv6/ARP chatter, which the nodes may forward.
    expect(forwarded(c, "node-a") - before.a).toBeLessThan(5);
    expect(forwarded(c, "node-b") - before.b).toBeLessThan(5);
  });

  it("pods not declared to Weft are still routed by both nodes as before", async () => {
    const before = { a: forwarded(c, "node-a"), b: forwarded(c, "node-b") };
    expect(await c.probe("plain-a", addr("plain-b"), PORT, 5)).toMatchObject({ servers: { "plain-b": 5 }, failures: {} });
    expect(forwarded(c, "node-a") - before.a).toBeGreaterThanOrEqual(25);
    expect(forwarded(c, "node-b") - before.b).toBeGreaterThanOrEqual(25);
  });

  it("intruder-a (not admitted) is dropped at node-b by the uplink's ingress decision, counted by node-b's agent, not node-a's", async () => {
    const before = { a: await dropped(c, "node-a"), b: await dropped(c, "node-b"), fwdB: forwarded(c, "node-b") };
    expect(await c.probe("intruder-a", addr("web-b"), PORT, 3, { timeoutMs: 800 })).toMatchObject({ servers: {}, failures: { timeout: 3 } });
    expect(await dropped(c, "node-b")).toBeGreaterThanOrEqual(before.b + 3);
    expect(await dropped(c, "node-a")).toBe(before.a);
    // Dropped on the uplink: node-b never forwarded the SYNs towards web-b's veth.
    expect(forwarded(c, "node-b") - before.fwdB).toBeLessThan(3);
    // The admitted client still gets through after the drops.
    expect(await c.probe("client-a", addr("web-b"), PORT, 2)).toMatchObject({ servers: { "web-b": 2 } });
  });

  it("the agent's cleanup (agent cleanup's function) detaches the uplink program with the rest", async () => {
    const n = c.nodes["node-b"]!;
    await c.stopAgent("node-b", "SIGTERM");
    expect(uninstall(n.pinDir).links).toBeGreaterThanOrEqual(3); // the uplink's and web-b's veth's two
    expect(existsSync(join(n.pinDir, "links"))).toBe(false);
    // Without programs node-b routes web-b's packets itself again (no policy either: nothing is attached).
    const before = forwarded(c, "node-b");
    expect(await c.probe("client-a", addr("web-b"), PORT, 2)).toMatchObject({ servers: { "web-b": 2 } });
    expect(forwarded(c, "node-b") - before).toBeGreaterThanOrEqual(10);
  }, 60_000);
});
