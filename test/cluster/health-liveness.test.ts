/**
 * Backend health, node liveness, zones and unresolved workloads (issue #15)
 * on three nodes on one machine (bench/support/cluster.ts): the real API
 * process with a short grace, one real agent per node reporting every second,
 * real TCP across the fabric, the verdict read where the connection lands.
 * One cluster for the whole file.
 *
 *   node-a (z1): client-a (identity client)
 *   node-b (z1): web-b    (identity web, selectors app=web; tcp health check on 8080)
 *   node-c (z2): web-c    (identity web, selectors app=web; tcp health check on 8080), client-c (identity client)
 *   service web:  VIP 198.18.128.20:80 -> 8080 on web-b (weight 90) and web-c (weight 10)
 *   service zone: VIP 198.18.128.21:80 -> 8080 on every app=web workload, topology.preferSameZone
 *
 * Proves: a backend whose server dies turns unhealthy by its node's probes
 * and gets no new connection from another node until it serves again; a node
 * whose agent is killed is marked unreachable after the grace and its
 * backends get no new connection (their server still running: the API's
 * decision, not a failure), and back when the agent restarts on its pinned
 * state, which it did not flush; preferSameZone keeps a client in its zone
 * while a backend there serves, and leaves it when none does; a workload
 * without a veth keeps its node unconverged and its agent not ready.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterUnavailableReason, startCluster, THREE_NODES, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { untilHolds } from "../support/until.ts";

const run = promisify(execFile);
const reason = clusterUnavailableReason();
const PORT = 8080;
const VIP = "198.18.128.20";
const ZONE_VIP = "198.18.128.21";
const GRACE_SECONDS = 3;
const STATUS_INTERVAL = 1;
const CHECK = { protocol: "tcp", port: PORT, intervalSeconds: 1, timeoutSeconds: 1, healthyThreshold: 1, unhealthyThreshold: 2 };
/** Every wait below is bounded by this (a loaded 2-core machine: generous). */
const BOUND_MS = 30_000;
const N = 200;
/** The kernel maps the API's datapath fills, and the one the agent keeps itself. */
const PINNED = ["weft_ipcache", "weft_endpoint", "weft_policy", "weft_svc", "weft_lb_slot", "weft_backend", "weft_local_veth"];

interface NodeShown {
  reachable: boolean;
  unreachableSince: string | null;
  converged: boolean;
  unresolved: { tenant: string; workload: string; address: string; reason: string }[];
  health: { tenant: string; workload: string; state: string; since: string }[];
  failingOpen: string[];
  desired: { revision: number; hash: string } | null;
  applied: { revision: number; hash: string; at: string } | null;
}
interface HealthShown {
  state: "unknown" | "healthy" | "unhealthy";
  since: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const until = <T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, ms = BOUND_MS): Promise<T> => untilHolds(what, read, ok, ms);

describe.skipIf(skipWithout("simulated cluster (root, bpf, cgroup2, iproute2, curl)", reason))("three nodes: backend health, node liveness, zones, unresolved workloads", () => {
  let c: Cluster;
  let t: ClusterTenant;
  const servers: Record<string, { stop(): Promise<void> }> = {};

  const node = async (name: string) => JSON.parse((await c.api.call("GET", `/v1/nodes/${name}`, c.api.operator)).body) as NodeShown;
  const health = async (workload: string) => JSON.parse((await t.call("GET", `/workloads/${workload}/health`)).body) as HealthShown;
  const serve = async (workload: string) => void (servers[workload] = await c.serve(workload, PORT));
  /** GET /readyz on the node's agent (127.0.0.1 of its namespace). */
  const readyz = async (name: string): Promise<{ status: number; body: { ready: boolean; reasons?: string[] } }> => {
    const n = c.nodes[name]!;
    const { stdout } = await run("ip", ["netns", "exec", n.netns, "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", `http://127.0.0.1:${n.metricsPort}/readyz`]);
    const at = stdout.lastIndexOf("\n");
    return { status: Number(stdout.slice(at + 1)), body: JSON.parse(stdout.slice(0, at)) };
  };
  /** The node's pinned maps as bpftool dumps them, each sorted: what its datapath reads. */
  const pinnedMaps = async (name: string): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const m of PINNED) {
      const { stdout } = await run("bpftool", ["-j", "map", "dump", "pinned", `${c.nodes[name]!.pinDir}/${m}`]);
      out[m] = (JSON.parse(stdout) as unknown[]).map((e) => JSON.stringify(e)).sort();
    }
    return out;
  };
  const counter = (metrics: string, name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(metrics)?.[1] ?? NaN);
  const shareOf = (r: { servers: Record<string, number> }, server: string) => (r.servers[server] ?? 0) / N;

  beforeAll(async () => {
    const started = performance.now();
    c = await startCluster({
      nodes: THREE_NODES,
      api: { env: { WEFT_NODE_GRACE_SECONDS: String(GRACE_SECONDS) } },
      agentArgs: ["--status-interval", String(STATUS_INTERVAL)],
    });
    t = await c.tenant("health");
    c.addWorkload("node-a", { name: "client-a" });
    c.addWorkload("node-b", { name: "web-b" });
    c.addWorkload("node-c", { name: "web-c" });
    c.addWorkload("node-c", { name: "client-c" });
    await t.put("/identities/client", { path: "/ns/health/sa/client" });
    await t.put("/identities/web", { path: "/ns/health/sa/web", selectors: { app: "web" } });
    for (const w of Object.values(c.workloads)) {
      const web = w.name.startsWith("web-");
      await t.put(`/workloads/${w.name}`, { identity: web ? "web" : "client", node: w.node, addresses: [w.address], ...(web ? { healthCheck: CHECK } : {}) });
    }
    await t.put("/services/web", {
      vip: VIP,
      ports: [{ port: 80, protocol: "tcp", targetPort: PORT }],
      backends: { explicit: [{ workload: "web-b", weight: 90 }, { workload: "web-c", weight: 10 }] },
    });
    await t.put("/services/zone", {
      vip: ZONE_VIP,
      ports: [{ port: 80, protocol: "tcp", targetPort: PORT }],
      backends: { selector: { labels: { app: "web" } } },
      topology: { preferSameZone: true },
    });
    await serve("web-b");
    await serve("web-c");
    await until("web-b and web-c healthy", async () => [await health("web-b"), await health("web-c")], (h) => h.every((x) => x.state === "healthy"));
    await c.converged();
    console.log(`cluster of 3 nodes up, both backends healthy, converged in ${seconds(performance.now() - started)} (fabric ${c.fabric.cidr}, API ${c.api.base})`);
  }, 300_000);
  afterAll(() => c?.cleanup(), 120_000);

  it("an unhealthy backend gets no new connection from another node; healthy again, it gets its share back", async () => {
    let r = await c.probe("client-a", VIP, 80, N, { concurrency: 8, timeoutMs: 3_000 });
    expect(r.failures).toEqual({});
    expect(Math.abs(shareOf(r, "web-b") - 0.9)).toBeLessThanOrEqual(0.08);

    const t0 = performance.now();
    await servers["web-b"]!.stop();
    const down = await until("web-b unhealthy", () => health("web-b"), (h) => h.state === "unhealthy");
    const unhealthyMs = performance.now() - t0;
    expect(Date.parse(down.since!)).toBeGreaterThan(Date.now() - 60_000);
    await c.converged({ nodes: ["node-a"] });
    const withdrawnMs = performance.now() - t0;
    expect((await node("node-b")).health).toEqual([expect.objectContaining({ tenant: t.tenant, workload: "web-b", state: "unhealthy" })]);
    // No connection refused either: the LB no longer picks web-b at all.
    r = await c.probe("client-a", VIP, 80, N, { concurrency: 8, timeoutMs: 3_000 });
    expect(r).toMatchObject({ servers: { "web-c": N }, failures: {} });
    expect((await node("node-a")).failingOpen).toEqual([]);

    const t1 = performance.now();
    await serve("web-b");
    await until("web-b healthy", () => health("web-b"), (h) => h.state === "healthy");
    const healthyMs = performance.now() - t1;
    await c.converged({ nodes: ["node-a"] });
    const restoredMs = performance.now() - t1;
    r = await c.probe("client-a", VIP, 80, N, { concurrency: 8, timeoutMs: 3_000 });
    expect(r.failures).toEqual({});
    expect(Math.abs(shareOf(r, "web-b") - 0.9)).toBeLessThanOrEqual(0.08);
    console.log(
      `health: server killed -> unhealthy ${seconds(unhealthyMs)}, node-a converged ${seconds(withdrawnMs)}; ` +
        `restarted -> healthy ${seconds(healthyMs)}, node-a converged ${seconds(restoredMs)}; ${JSON.stringify(r.servers)}`,
    );
  }, 180_000);

  it("a node whose agent is killed is unreachable after the grace and gets no new connection; its agent back, it is reachable and serves, maps not flushed", async () => {
    // The heartbeat: node-b reports every --status-interval although nothing changes.
    const seen = (await node("node-b")).applied!.at;
    const beat = await until("a heartbeat from node-b", () => node("node-b"), (n) => n.applied!.at !== seen, STATUS_INTERVAL * 1_000 + 5_000);
    const heartbeatMs = Date.parse(beat.applied!.at) - Date.parse(seen);
    const pinnedBefore = await pinnedMaps("node-b");
    const aBefore = await c.agentMetrics("node-a");
    const t0 = performance.now();
    await c.stopAgent("node-b", "SIGKILL");
    const marked = await until("node-b unreachable", () => node("node-b"), (n) => n.reachable === false, GRACE_SECONDS * 1_000 + BOUND_MS);
    const unreachableMs = performance.now() - t0;
    // Marked after the grace without a report (the API's clock on both), within a few sweeps of it.
    const silentMs = Date.parse(marked.unreachableSince!) - Date.parse(marked.applied!.at);
    expect(silentMs).toBeGreaterThanOrEqual(GRACE_SECONDS * 1_000);
    expect(silentMs).toBeLessThanOrEqual(GRACE_SECONDS * 1_000 + 5_000);
    expect((await node("node-a")).reachable).toBe(true);
    await c.converged({ nodes: ["node-a"] });
    const withdrawnMs = performance.now() - t0;
    const aWithdrawn = await c.agentMetrics("node-a");
    const aWithdrawal = {
      upserts: counter(aWithdrawn, "weft_agent_upserts_total") - counter(aBefore, "weft_agent_upserts_total"),
      deletes: counter(aWithdrawn, "weft_agent_deletes_total") - counter(aBefore, "weft_agent_deletes_total"),
    };
    // web-b still serves (its node's pinned datapath too): connections to it directly still work.
    expect(await c.probe("client-a", c.workloads["web-b"]!.address, PORT, 2)).toMatchObject({ servers: { "web-b": 2 }, failures: {} });
    let r = await c.probe("client-a", VIP, 80, N, { concurrency: 8, timeoutMs: 3_000 });
    expect(r).toMatchObject({ servers: { "web-c": N }, failures: {} });
    // Its pins untouched while the agent is away.
    expect(await pinnedMaps("node-b")).toEqual(pinnedBefore);

    const t1 = performance.now();
    await c.startAgent("node-b");
    expect(c.nodes["node-b"]!.agent!.output()).not.toContain("registered node");
    const back = await until("node-b reachable", () => node("node-b"), (n) => n.reachable === true);
    const reachableMs = performance.now() - t1;
    expect(back.unreachableSince).toBeNull();
    await c.converged();
    const restoredMs = performance.now() - t1;
    r = await c.probe("client-a", VIP, 80, N, { concurrency: 8, timeoutMs: 3_000 });
    expect(r.failures).toEqual({});
    expect(Math.abs(shareOf(r, "web-b") - 0.9)).toBeLessThanOrEqual(0.08);

    // Not flushed: the restarted agent wrote exactly what node-a's agent, running all along, wrote
    // meanwhile (the same z1 service tables: the withdrawal, then the restore), deletes of pinned
    // entries included; on flushed maps it would have written its whole state and deleted next to
    // nothing. (Nothing at all is fine too: its first answer may already be the restored state, which
    // its maps hold.) Restored, its maps are entry for entry what they were before the kill.
    const [bMetrics, aAfter] = [await c.agentMetrics("node-b"), await c.agentMetrics("node-a")];
    const writes = (m: string, since?: string) => ({
      upserts: counter(m, "weft_agent_upserts_total") - (since ? counter(since, "weft_agent_upserts_total") : 0),
      deletes: counter(m, "weft_agent_deletes_total") - (since ? counter(since, "weft_agent_deletes_total") : 0),
    });
    const [bWrites, aWrites] = [writes(bMetrics), writes(aAfter, aBefore)];
    const bApplies = c.nodes["node-b"]!.agent!.output()
      .split("\n")
      .filter((l) => l.includes('"applied datapath"'))
      .map((l) => (({ revision, upserts, deletes }) => ({ revision, upserts, deletes }))(JSON.parse(l) as { revision: number; upserts: number; deletes: number }));
    if (bWrites.upserts + bWrites.deletes > 0) {
      expect(bWrites).toEqual(aWrites);
      expect(bApplies[0]).toEqual(expect.objectContaining(aWithdrawal));
    }
    expect(await pinnedMaps("node-b")).toEqual(pinnedBefore);
    const entries = Object.values(pinnedBefore).reduce((sum, e) => sum + e.length, 0);
    console.log(
      `liveness: heartbeat ${seconds(heartbeatMs)} apart; agent killed -> unreachable ${seconds(unreachableMs)} (grace ${GRACE_SECONDS} s, ${seconds(silentMs)} after its last report), node-a converged ${seconds(withdrawnMs)}; ` +
        `restarted -> reachable ${seconds(reachableMs)}, all converged ${seconds(restoredMs)}; node-b's applies ${JSON.stringify(bApplies)}, in all ${JSON.stringify(bWrites)} ` +
        `(node-a ${JSON.stringify(aWrites)}, its withdrawal ${JSON.stringify(aWithdrawal)}; node-b holds ${entries} entries); ${JSON.stringify(r.servers)}`,
    );
  }, 180_000);

  it("preferSameZone keeps a client in its zone while a backend there serves, and leaves it when none does", async () => {
    expect(await c.probe("client-c", ZONE_VIP, 80, 50, { concurrency: 8, timeoutMs: 3_000 })).toMatchObject({ servers: { "web-c": 50 }, failures: {} });
    expect(await c.probe("client-a", ZONE_VIP, 80, 50, { concurrency: 8, timeoutMs: 3_000 })).toMatchObject({ servers: { "web-b": 50 }, failures: {} });

    const t0 = performance.now();
    await servers["web-c"]!.stop();
    await until("web-c unhealthy", () => health("web-c"), (h) => h.state === "unhealthy");
    await c.converged({ nodes: ["node-c"] });
    const leftMs = performance.now() - t0;
    expect(await c.probe("client-c", ZONE_VIP, 80, 50, { concurrency: 8, timeoutMs: 3_000 })).toMatchObject({ servers: { "web-b": 50 }, failures: {} });
    expect((await node("node-c")).failingOpen).toEqual([]);

    const t1 = performance.now();
    await serve("web-c");
    await until("web-c healthy", () => health("web-c"), (h) => h.state === "healthy");
    await c.converged({ nodes: ["node-c"] });
    const backMs = performance.now() - t1;
    expect(await c.probe("client-c", ZONE_VIP, 80, 50, { concurrency: 8, timeoutMs: 3_000 })).toMatchObject({ servers: { "web-c": 50 }, failures: {} });
    console.log(`zones: web-c killed -> client-c on web-b in ${seconds(leftMs)}; web-c back -> client-c on web-c in ${seconds(backMs)}`);
  }, 180_000);

  it("a workload without a veth (none behind its address, or a missing interface) keeps its node unconverged and its agent not ready", async () => {
    const block = c.nodes["node-a"]!.podCidr.split("/")[0]!.split(".").slice(0, 3).join(".");
    const ghosts = { "ghost-a": `${block}.200`, "ghost-i": `${block}.201` };
    expect((await readyz("node-a")).status).toBe(200);
    const t0 = performance.now();
    await t.put("/workloads/ghost-a", { identity: "client", node: "node-a", addresses: [ghosts["ghost-a"]] });
    await t.put("/workloads/ghost-i", { identity: "client", node: "node-a", addresses: [ghosts["ghost-i"]], interface: "w-nosuchveth" });
    const stuck = await until("node-a reporting both unresolved", () => node("node-a"), (n) => n.unresolved?.length === 2);
    const unresolvedMs = performance.now() - t0;
    expect(stuck.converged).toBe(false);
    expect([...stuck.unresolved].sort((x, y) => x.workload.localeCompare(y.workload))).toEqual([
      { tenant: t.tenant, workload: "ghost-a", address: ghosts["ghost-a"], reason: expect.any(String) },
      { tenant: t.tenant, workload: "ghost-i", address: ghosts["ghost-i"], reason: expect.stringContaining("w-nosuchveth") },
    ]);
    const notReady = await readyz("node-a");
    expect(notReady.status).toBe(503);
    expect(notReady.body.ready).toBe(false);
    expect(notReady.body.reasons!.join("\n")).toContain("ghost-a");
    expect(notReady.body.reasons!.join("\n")).toContain("ghost-i");
    // The other nodes are not held up by it.
    expect((await node("node-b")).converged).toBe(true);

    const t1 = performance.now();
    await t.call("DELETE", "/workloads/ghost-a");
    await t.call("DELETE", "/workloads/ghost-i");
    await c.converged({ nodes: ["node-a"], boundMs: BOUND_MS });
    const convergedMs = performance.now() - t1;
    expect((await node("node-a")).unresolved).toEqual([]);
    expect(await readyz("node-a")).toEqual({ status: 200, body: { ready: true } });
    console.log(`unresolved: reported in ${seconds(unresolvedMs)}; deleted -> converged and ready in ${seconds(convergedMs)}; reasons: ${JSON.stringify(stuck.unresolved.map((u) => u.reason))}`);
  }, 120_000);
});
