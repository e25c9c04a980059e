/**
 * Flows end to end (issue #17): two nodes on one machine (bench/support/cluster.ts),
 * the real API process, one real agent per node, workloads in namespaces.
 *
 *   node-a: client-a (identity client), intruder-a (identity intruder)
 *   node-b: web-b (identity web)
 *   policy web-in: web admits client only, on 8080
 *
 * Proves: a denied connection reaches GET /flows?verdict=dropped with its
 * identities, reason and policy (the time from the attempt to the answer is
 * printed, not asserted); `weft flows --follow` prints it; another tenant
 * sees nothing of it; an allowed connection is a forwarded flow; the service
 * map counts both; a deny rule in audit mode lets the connection through as
 * one audit flow naming the rule, and switched to enforce drops the next one.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterUnavailableReason, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { untilHolds } from "../support/until.ts";
import { WEFT_BIN } from "../support/weft-cli.ts";

const reason = clusterUnavailableReason();
const PORT = 8080;
const AUDITED_PORT = 8081;

interface FlowItem {
  time: string;
  node: string;
  verdict: string;
  reason: string;
  source: { address: string; port: number; identity: string | null; tenant: string | null; reserved?: string };
  destination: { address: string; port: number; identity: string | null; tenant: string | null; reserved?: string };
  policy: { name: string; rule: number; direction: string; mode: string } | null;
}

describe.skipIf(skipWithout("simulated cluster (root, bpf, cgroup2, iproute2, curl)", reason))("flows from the kernel to the API and the weft command", () => {
  let c: Cluster;
  let t: ClusterTenant;
  let other: ClusterTenant;
  const addr = (w: string) => c.workloads[w]!.address;
  const flows = async (tenant: ClusterTenant, query: string): Promise<FlowItem[]> => {
    const res = await tenant.call("GET", `/flows?${query}`);
    return (JSON.parse(res.body) as { items: FlowItem[] }).items;
  };

  beforeAll(async () => {
    c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], agentArgs: ["--status-interval", "1"] });
    t = await c.tenant("flows");
    other = await c.tenant("other");
    c.addWorkload("node-a", { name: "client-a" });
    c.addWorkload("node-a", { name: "intruder-a" });
    c.addWorkload("node-b", { name: "web-b" });
    for (const id of ["client", "intruder", "web"]) await t.put(`/identities/${id}`, { path: `/ns/flows/sa/${id}` });
    for (const w of Object.values(c.workloads)) {
      await t.put(`/workloads/${w.name}`, { identity: w.name.replace(/-[a-z]$/, ""), node: w.node, addresses: [w.address] });
    }
    await t.put("/policies/web-in", {
      subject: { identity: "web" },
      ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }, { port: AUDITED_PORT, protocol: "tcp" }], action: "allow" }],
    });
    await c.serve("web-b", PORT);
    await c.serve("web-b", AUDITED_PORT, "web-b-audited");
    await c.converged();
  }, 300_000);
  afterAll(() => c?.cleanup(), 120_000);

  it("a denied connection is a dropped flow with its identities, reason and policy; weft flows --follow prints it; another tenant sees none of it", async () => {
    // The follower first, so the flow can only reach it through the stream.
    const follower = spawn(process.execPath, [WEFT_BIN, "flows", "--tenant", t.tenant, "--follow", "--verdict", "dropped"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TZ: "UTC", WEFT_ENDPOINT: c.api.base, WEFT_TOKEN: t.auth.authorization!.replace(/^Bearer /, ""), WEFT_CONFIG: `${c.root}/weft-cli.json` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let printed = "";
    follower.stdout.on("data", (b: Buffer) => (printed += b.toString()));
    follower.stderr.on("data", (b: Buffer) => (printed += b.toString()));
    try {
      await new Promise((r) => setTimeout(r, 1_500)); // the stream is open
      const started = performance.now();
      expect(await c.probe("intruder-a", addr("web-b"), PORT, 1, { timeoutMs: 800 })).toMatchObject({ servers: {}, failures: { timeout: 1 } });
      const [drop] = await untilHolds(
        "the flow",
        async () => (await flows(t, "verdict=dropped&sourceIdentity=intruder")).filter((f) => f.destination.address === addr("web-b")),
        (found) => found.length > 0,
        15_000,
      );
      console.log(`denied connection visible in GET /flows ${(performance.now() - started).toFixed(0)} ms after the attempt began (800 ms of it the client's timeout)`);
      expect(drop).toMatchObject({
        node: "node-b",
        verdict: "dropped",
        reason: "default-deny",
        source: { address: addr("intruder-a"), identity: "intruder", tenant: t.tenant },
        destination: { address: addr("web-b"), port: PORT, identity: "web", tenant: t.tenant },
      });
      await untilHolds(
        "the flow",
        async () => printed,
        (out) => out.includes(addr("intruder-a")) && /DROPPED/i.test(out),
        10_000,
      );
      expect(printed).toMatch(/intruder/);
      console.log(`weft flows --follow printed:\n${printed}`);

      // Another tenant: its own flows hold none of this, and this tenant's flows are not its to read.
      expect((await flows(other, "")).filter((f) => f.source.address === addr("intruder-a"))).toEqual([]);
      const foreign = await fetch(`${c.api.base}/v1/tenants/${t.tenant}/flows`, { headers: other.auth });
      expect([403, 404]).toContain(foreign.status);
    } finally {
      follower.kill("SIGINT");
    }
  }, 120_000);

  it("an allowed connection is a forwarded flow, and the service map counts both", async () => {
    expect(await c.probe("client-a", addr("web-b"), PORT, 2)).toMatchObject({ servers: { "web-b": 2 } });
    await untilHolds(
      "the flow",
      async () => (await flows(t, "verdict=forwarded&sourceIdentity=client")).filter((f) => f.destination.address === addr("web-b")),
      (found) => found.length > 0,
      15_000,
    );
    const summary = await untilHolds(
      "the flow",
      async () =>
        JSON.parse((await t.call("GET", "/flows/summary")).body) as {
          edges: { source: { identity: string | null }; destination: { identity: string | null }; port: number; counts: { forwarded: number; dropped: number } }[];
        },
      // The intruder's SYN is forwarded where it leaves (node-a) and dropped where it arrives (node-b): both observation points count.
      (s) => s.edges.some((e) => e.source.identity === "client" && e.counts.forwarded > 0) && s.edges.some((e) => e.source.identity === "intruder" && e.counts.dropped > 0),
      15_000,
    );
    expect(summary.edges.find((e) => e.source.identity === "client" && e.destination.identity === "web")).toMatchObject({ port: PORT });
  }, 60_000);

  it("a deny rule in audit mode lets the connection through as one audit flow naming the rule; enforced, the next one is dropped", async () => {
    const staged = {
      subject: { identity: "web" },
      ingress: [{ peers: [{ identity: "client" }], ports: [{ port: AUDITED_PORT, protocol: "tcp" }], action: "deny" }],
    };
    await t.put("/policies/web-audit", { ...staged, mode: "audit" });
    await c.converged();
    expect(await c.probe("client-a", addr("web-b"), AUDITED_PORT, 1)).toMatchObject({ servers: { "web-b-audited": 1 } });
    const [audit] = await untilHolds(
      "the flow",
      async () => flows(t, "verdict=audit"),
      (found) => found.length > 0,
      15_000,
    );
    expect(audit).toMatchObject({ reason: "audit", source: { identity: "client" }, destination: { identity: "web", port: AUDITED_PORT }, policy: { name: "web-audit", rule: 0, mode: "audit" } });

    await t.put("/policies/web-audit", { ...staged, mode: "enforce" });
    await c.converged();
    expect(await c.probe("client-a", addr("web-b"), AUDITED_PORT, 1, { timeoutMs: 800 })).toMatchObject({ failures: { timeout: 1 } });
    const [drop] = await untilHolds(
      "the flow",
      async () => flows(t, "verdict=dropped&sourceIdentity=client"),
      (found) => found.length > 0,
      15_000,
    );
    expect(drop).toMatchObject({ reason: "policy-deny", destination: { port: AUDITED_PORT }, policy: { name: "web-audit", mode: "enforce" } });
  }, 120_000);
});
