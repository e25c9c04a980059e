/**
 * Datapath benchmark, one command (as root): npm run bench:datapath
 * (`npm run bench:datapath -- --cross-node`: client and server on two nodes
 * of a simulated cluster, cross-node.ts).
 *
 * HTTP through network namespaces, driven by wrk from a client namespace,
 * against one backend (nginx, one worker) in a server namespace. Paths:
 *   direct   client -> backend address, over veths that carry no program;
 *   weft     client process in a cgroup with Weft's socket LB attached,
 *            connecting to a service VIP (rewritten at connect() to the
 *            backend), over the workloads' veths with Weft's tc policy on
 *            both; every map filled by the real agent process from the real
 *            API (tenant, identities, workloads, service, policy via REST).
 *            Both workloads sit on this node, so with the agent's default
 *            host routing their packets skip the root namespace's IP
 *            forwarding (bpf/README); WEFT_HOST_ROUTING=off (inherited by the
 *            agent) measures the routed path instead;
 *   sidecar  the client talks to a per-client TCP proxy on 127.0.0.1 in its
 *            own namespace (haproxy in tcp mode, and nginx with the stream
 *            module, one thread each), which connects to the backend.
 *   control  the direct path a second time, placed after weft: its ratio
 *            to direct is what this run's noise alone makes of two equal paths.
 * Each path with keep-alive connections and with a new connection per
 * request (Connection: close). Reported: req/s, p50 and p99, as ratios to
 * direct. Goal (issue 6): weft >= 0.95x direct.
 *
 * Topology, all from 198.18.0.0/15, no default route in any namespace:
 *   client ns: 198.18.110.2 (weft veth, a workload) and 198.18.112.2 (plain veth)
 *   server ns: 198.18.111.2 (weft veth, a workload) and 198.18.113.2 (plain veth)
 * The two pairs of veths are alike (root namespace forwards between them);
 * only the weft pair carries programs. The agent's pins, links, cgroup,
 * namespaces, veths and processes are removed on exit, on failure and on
 * SIGINT.
 *
 * Reps, pairing, CPU per request and settings: measure.ts.
 *
 * Env (besides measure.ts's): BENCH_BPF_STATS=1 (also report the ns per
 * request spent in Weft's programs, per program), BENCH_BREAKDOWN=1 (also run the weft veths without the socket LB, and the
 * direct path from inside the socket-LB cgroup).
 */
import { parseArgs } from "node:util";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { withCleanup, type BenchCleanup } from "../support/cleanup.ts";
import { addRoute, inNetns, makeCgroup, makeNetns, makePinDir, makeVeth, type Veth } from "../support/netns.ts";
import { httpBackend, sidecar, type Backend, type SidecarKind } from "../support/proxies.ts";
import { benchTenant, revisionOf, startAgentProcess, startWeftApi, waitConverged } from "../support/weft.ts";
import { CONNECTIONS, REPS, SECONDS, measurePaths, measureProgramCost, prerequisites, report, reportProgramCost, tcLinks, warmUp, writeResults, type Path } from "./measure.ts";

const { values: argv } = parseArgs({ options: { "cross-node": { type: "boolean", default: false } }, strict: true });

const PORT = 8080;
const SIDECAR_PORTS: Record<SidecarKind, number> = { haproxy: 15001, "nginx-stream": 15002 };
const NET = {
  clientWeft: { host: "198.18.110.1", ns: "198.18.110.2" },
  serverWeft: { host: "198.18.111.1", ns: "198.18.111.2" },
  clientPlain: { host: "198.18.112.1", ns: "198.18.112.2" },
  serverPlain: { host: "198.18.113.1", ns: "198.18.113.2" },
} as const;

if (argv["cross-node"]) await import("./cross-node.ts");
else {
  const needs = prerequisites("bench:datapath", cgroupUnavailableReason());
  await withCleanup("bench:datapath", (cleanup) => sameNode(cleanup, needs));
}

async function sameNode(cleanup: BenchCleanup, { tools, sidecars }: ReturnType<typeof prerequisites>): Promise<void> {
  let client = "";
  let cgroup = "";
  let pinDir = "";
  let backend: Backend | undefined;
  const weftVeths: Veth[] = [];
  async function buildNetwork(): Promise<void> {
    client = makeNetns(cleanup, "dcli");
    const server = makeNetns(cleanup, "dsrv");
    weftVeths.push(
      makeVeth(cleanup, "dcw", client, `${NET.clientWeft.host}/30`, `${NET.clientWeft.ns}/30`),
      makeVeth(cleanup, "dsw", server, `${NET.serverWeft.host}/30`, `${NET.serverWeft.ns}/30`),
    );
    makeVeth(cleanup, "dcp", client, `${NET.clientPlain.host}/30`, `${NET.clientPlain.ns}/30`);
    makeVeth(cleanup, "dsp", server, `${NET.serverPlain.host}/30`, `${NET.serverPlain.ns}/30`);
    addRoute(client, "198.18.111.0/30", NET.clientWeft.host);
    addRoute(client, "198.18.113.0/30", NET.clientPlain.host);
    addRoute(server, "198.18.110.0/30", NET.serverWeft.host);
    addRoute(server, "198.18.112.0/30", NET.serverPlain.host);
    cgroup = makeCgroup(cleanup, "dcli");
    pinDir = makePinDir(cleanup, "dp");

    backend = await httpBackend(cleanup, server, PORT, tools.nginx ? "nginx" : "node");
    for (const k of sidecars) await sidecar(cleanup, k, client, SIDECAR_PORTS[k], NET.serverPlain.ns, PORT);
  }

  const started = performance.now();
  // The API starts (tens of seconds on a busy machine) while the namespaces are built; waited for before any failure unwinds.
  const apiStarting = startWeftApi(cleanup);
  apiStarting.catch(() => undefined);
  try {
    await buildNetwork();
  } catch (err) {
    await apiStarting.catch(() => undefined);
    throw err;
  }
  const api = await apiStarting;

  // Weft: the real API and agent, everything declared through REST.
  const node = `wbench-dp-${process.pid}`;
  const agent = await startAgentProcess(cleanup, api, { node, cgroup, pinDir });
  const { tenant, auth } = await benchTenant(cleanup, api, "dp");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);
  for (const id of ["client", "server"]) await put(`/identities/${id}`, { path: `/ns/bench/${id}` });
  await put("/workloads/client-1", { identity: "client", node, addresses: [NET.clientWeft.ns] });
  await put("/workloads/server-1", { identity: "server", node, addresses: [NET.serverWeft.ns] });
  const svc = await put("/services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: PORT }], backends: { explicit: [{ workload: "server-1", weight: 1 }] } });
  const vip = (JSON.parse(svc.body) as { vip: string }).vip;
  const last = await put("/policies/server-in", {
    subject: { identity: "server" },
    ingress: [{ peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow" }],
  });
  await waitConverged(api, node, revisionOf(last));
  // tc programs on both workload veths, and on nothing else.
  const links = await tcLinks(pinDir, 4);
  const ours = new Set(weftVeths.map((v) => v.hostIfindex));
  const stray = links.filter((l) => !ours.has(Number(l.split("-")[1])));
  if (links.length !== 4 || stray.length) throw new Error(`expected tc links on the two workload veths only, found ${links.join(", ")}`);

  console.log(
    `bench:datapath: backend ${backend!.kind}; API on ${api.database}; agent pid ${agent.pid}; VIP ${vip}:80 -> ${NET.serverWeft.ns}:${PORT}; ` +
      `wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run, ${REPS} reps`,
  );

  const paths: Path[] = [
    { name: "direct", url: `http://${NET.serverPlain.ns}:${PORT}/`, exec: inNetns(client) },
    { name: "weft", url: `http://${vip}:80/`, exec: inNetns(client, cgroup) },
    // The direct path again: how far apart two identical paths measure in this run (the noise floor).
    { name: "direct again (control)", url: `http://${NET.serverPlain.ns}:${PORT}/`, exec: inNetns(client) },
    ...sidecars.map((k) => ({ name: `sidecar ${k}`, url: `http://127.0.0.1:${SIDECAR_PORTS[k]}/`, exec: inNetns(client) })),
    // BENCH_BREAKDOWN=1: where Weft's cost comes from, one part at a time.
    ...(process.env.BENCH_BREAKDOWN === "1"
      ? [
          { name: "weft tc only", url: `http://${NET.serverWeft.ns}:${PORT}/`, exec: inNetns(client) },
          { name: "cgroup only", url: `http://${NET.serverPlain.ns}:${PORT}/`, exec: inNetns(client, cgroup) },
        ]
      : []),
  ];
  await warmUp(paths);
  // Optional: what Weft's own programs cost per request, from the kernel's BPF run-time statistics.
  const programCost = process.env.BENCH_BPF_STATS === "1" ? await measureProgramCost(paths[1]!, [pinDir]) : null;
  const setupSeconds = (performance.now() - started) / 1000;
  const summary = await measurePaths(paths);
  const met = report(summary, started, setupSeconds);
  if (programCost) reportProgramCost(programCost);
  writeResults("latest.json", { backend: backend!.kind, database: api.database, met, summary, programCost });
}
