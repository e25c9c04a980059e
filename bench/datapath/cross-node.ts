/**
 * Datapath benchmark across nodes, one command (as root):
 *   npm run bench:datapath -- --cross-node
 *
 * A simulated cluster of two nodes (bench/support/cluster.ts: the real API,
 * one real agent per node under `ip netns exec`, a fabric bridge between
 * the nodes' namespaces), the client's pod on node-a, the server's on node-b,
 * HTTP driven by wrk in the client's pod against nginx (one worker) in the
 * server's. Paths:
 *   direct   a second pair of pods, pclient on node-a and pserver on node-b,
 *            not declared to the API: plain veths, no programs, routed by
 *            the nodes over the same fabric; wrk to pserver's address;
 *   weft     client and server declared through REST (identities,
 *            workloads, a service whose backend is server, a policy letting
 *            client in): wrk in node-a's cgroup (the socket LB rewrites the
 *            VIP at connect()), the tc programs on client's veth on node-a
 *            (its egress decision, then bpf_fib_lookup + bpf_redirect_neigh
 *            to fab0: bpf/README [R11]) and on node-b's uplink fab0 (server's
 *            ingress decision, then bpf_redirect_peer into server's
 *            namespace: [R12]); neither node's IP stack forwards them, the
 *            bridge carries them as it does direct's. WEFT_HOST_ROUTING=off
 *            (the agents inherit it) measures the path both nodes forward;
 *   control  the direct path a second time (the noise floor);
 *   sidecar  the Istio-sidecar topology on the direct pair: wrk to a proxy on
 *            127.0.0.1 in pclient (haproxy in tcp mode, nginx-stream), which
 *            connects over the fabric to a second proxy of the same kind on
 *            pserver's address in pserver, which connects to the backend on
 *            127.0.0.1: one proxy per pod on each side.
 * Each with keep-alive and with a new connection per request; ratios to
 * direct, CPU per request, reps and order as in run.ts (measure.ts). Goal
 * (issue 15): weft >= 0.95x direct.
 *
 * BENCH_BPF_STATS=1 reports the programs behind both agents' links;
 * BENCH_BREAKDOWN=1 adds the weft pods without the socket LB (wrk outside the
 * cgroup, to server's address: tc only), the direct pair from inside node-a's
 * cgroup (the socket LB only), and direct to a plain pod on node-a itself
 * (what the fabric hop costs). Addresses from 198.18.0.0/15 only (the
 * cluster module's); everything is removed on exit, failure or signal, and
 * by the janitor should this process be killed.
 */
import { execFileSync } from "node:child_process";
import { clusterUnavailableReason, startCluster, type Cluster } from "../support/cluster.ts";
import { withCleanup } from "../support/cleanup.ts";
import { inNetns } from "../support/netns.ts";
import { httpBackend, sidecar, type SidecarKind } from "../support/proxies.ts";
import { CONNECTIONS, REPS, SECONDS, measurePaths, measureProgramCost, prerequisites, report, reportProgramCost, tcLinks, warmUp, writeResults, type Path } from "./measure.ts";

const NAME = "bench:datapath --cross-node";
const PORT = 8080;
/** The client pod's outbound sidecar, and the server pod's inbound one. */
const SIDECAR_PORTS: Record<SidecarKind, { out: number; in: number }> = { haproxy: { out: 15001, in: 15101 }, "nginx-stream": { out: 15002, in: 15102 } };
const BREAKDOWN = process.env.BENCH_BREAKDOWN === "1";

const { tools, sidecars } = prerequisites(NAME, clusterUnavailableReason());

/** The ifindex of a node's end of a workload's veth, in the node's namespace. */
function hostIfindex(c: Cluster, workload: string): number {
  const w = c.workloads[workload]!;
  const [link] = JSON.parse(execFileSync("ip", ["-n", c.nodes[w.node]!.netns, "-j", "link", "show", "dev", w.hostIf], { encoding: "utf8" })) as { ifindex: number }[];
  return link!.ifindex;
}

await withCleanup(NAME, async (cleanup) => {
  const started = performance.now();
  const c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], cleanup });
  const [a, b] = [c.nodes["node-a"]!, c.nodes["node-b"]!];
  const client = c.addWorkload("node-a", { name: "client" });
  const server = c.addWorkload("node-b", { name: "server" });
  const pclient = c.addWorkload("node-a", { name: "pclient" });
  const pserver = c.addWorkload("node-b", { name: "pserver" });
  const local = BREAKDOWN ? c.addWorkload("node-a", { name: "pserver-a" }) : null;

  const t = await c.tenant("dpx");
  for (const id of ["client", "server"]) await t.put(`/identities/${id}`, { path: `/ns/bench/${id}` });
  await t.put("/workloads/client", { identity: "client", node: client.node, addresses: [client.address] });
  await t.put("/workloads/server", { identity: "server", node: server.node, addresses: [server.address] });
  const svc = await t.call("PUT", "/services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: PORT }], backends: { explicit: [{ workload: "server", weight: 1 }] } });
  const vip = (JSON.parse(svc.body) as { vip: string }).vip;
  await t.put("/policies/server-in", {
    subject: { identity: "server" },
    ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow" }],
  });
  await c.converged();
  // tc programs on the weft pods' veths, one each side, and on no other veth (not on the plain pods'); the uplink's pin is apart (uplink-*).
  for (const [node, w] of [[a, client], [b, server]] as const) {
    const want = [`tcx-${hostIfindex(c, w.name)}-egress`, `tcx-${hostIfindex(c, w.name)}-ingress`];
    const links = (await tcLinks(node.pinDir, 2)).sort();
    if (links.join() !== want.join()) throw new Error(`expected tc links on ${w.hostIf} of ${node.name} only (${want.join(", ")}), found ${links.join(", ") || "none"}`);
  }

  const backend = await httpBackend(cleanup, server.netns, PORT, tools.nginx ? "nginx" : "node");
  await httpBackend(cleanup, pserver.netns, PORT, backend.kind);
  if (local) await httpBackend(cleanup, local.netns, PORT, backend.kind);
  for (const k of sidecars) {
    await sidecar(cleanup, k, pserver.netns, SIDECAR_PORTS[k].in, "127.0.0.1", PORT, pserver.address);
    await sidecar(cleanup, k, pclient.netns, SIDECAR_PORTS[k].out, pserver.address, SIDECAR_PORTS[k].in);
  }
  console.log(
    `${NAME}: backend ${backend.kind}; API on ${c.api.database}; fabric ${c.fabric.cidr}; ` +
      `weft: client ${client.address} (node-a, cgroup with the socket LB) -> VIP ${vip}:80 -> server ${server.address}:${PORT} (node-b); ` +
      `direct: pclient ${pclient.address} (node-a) -> pserver ${pserver.address}:${PORT} (node-b); wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run, ${REPS} reps`,
  );

  const direct = `http://${pserver.address}:${PORT}/`;
  const paths: Path[] = [
    { name: "direct", url: direct, exec: inNetns(pclient.netns) },
    { name: "weft", url: `http://${vip}:80/`, exec: inNetns(client.netns, a.cgroup) },
    { name: "direct again (control)", url: direct, exec: inNetns(pclient.netns) },
    ...sidecars.map((k) => ({ name: `sidecar ${k} (both pods)`, url: `http://127.0.0.1:${SIDECAR_PORTS[k].out}/`, exec: inNetns(pclient.netns) })),
    ...(local
      ? [
          { name: "weft tc only", url: `http://${server.address}:${PORT}/`, exec: inNetns(client.netns) },
          { name: "cgroup only", url: direct, exec: inNetns(pclient.netns, a.cgroup) },
          { name: "direct, same node", url: `http://${local.address}:${PORT}/`, exec: inNetns(pclient.netns) },
        ]
      : []),
  ];
  await warmUp(paths);
  const programCost = process.env.BENCH_BPF_STATS === "1" ? await measureProgramCost(paths[1]!, [a.pinDir, b.pinDir]) : null;
  const setupSeconds = (performance.now() - started) / 1000;
  const summary = await measurePaths(paths);
  const met = report(summary, started, setupSeconds);
  if (programCost) reportProgramCost(programCost);
  writeResults("cross-node.json", { backend: backend.kind, database: c.api.database, fabric: c.fabric.cidr, met, summary, programCost });
});
