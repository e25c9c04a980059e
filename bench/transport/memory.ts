/**
 * Transport memory benchmark, one command (as root, under the kernel lock):
 *   flock /tmp/weft-kernel.lock npm run bench:transport-memory
 *
 * Issue 18's memory bullet: on a node with 30 workloads, the resident memory
 * (VmRSS) of Weft's agent plus its transport, against 30 Istio-style
 * sidecars (tls-sidecar.ts: one HAProxy per pod in the pod's namespace)
 * holding the same certificates: the SVIDs the agent issued for those 30
 * workloads (--svid-files) and their tenant's bundle. Goal: <= 1/10.
 *
 * A simulated cluster of two nodes (bench/support/cluster.ts): a client pod
 * on node-a, 30 pods on node-b, each its own identity with a policy letting
 * the client in on 8080 over transport "mtls"; nginx in the first pod. Both
 * sides carry traffic before they are measured (wrk, 2 s keep-alive and 2 s
 * new connections): the client -> pod 0 through the transports, and pod 0's
 * sidecar outbound -> its own inbound -> nginx (both TLS ends of one
 * sidecar). Each RSS is the median of 5 samples over 2 s, every process
 * measured (no one-times-thirty).
 *
 * While the transport is not wired (issue 18's other parts), the bench says
 * "transport: not available (why)", writes the same policy as plaintext so
 * the agent holds the same state, and reports the agent alone, marked so.
 */
import { loadavg } from "node:os";
import { withCleanup } from "../support/cleanup.ts";
import { startCluster } from "../support/cluster.ts";
import { drive } from "../support/load.ts";
import { inNetns, rssKiB } from "../support/netns.ts";
import { httpBackend } from "../support/proxies.ts";
import { http, median, type Answer } from "../support/weft.ts";
import { writeResults } from "./results.ts";
import { prerequisites } from "./prerequisites.ts";
import { svidFiles } from "./svid-files.ts";
import { SIDECAR_OUTBOUND_PORT, tlsSidecar } from "./tls-sidecar.ts";
import { problemText, steeredPackets, transportCounts, transportPid, transportUnavailable } from "./weft-transport.ts";

const NAME = "bench:transport-memory";
const WORKLOADS = 30;
const PORT = 8080;
const GOAL = 0.1;

const tools = prerequisites(NAME);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kib: number) => (kib / 1024).toFixed(1);

/** The summed VmRSS of `pids`, median of 5 samples over 2 s, in KiB. */
async function rssOf(pids: number[]): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(pids.reduce((sum, p) => sum + (rssKiB(p) ?? Number.NaN), 0));
    await sleep(400);
  }
  return median(samples);
}

/** 2 s keep-alive, then 2 s a new connection per request; every answer must be a 200. */
async function exercise(what: string, url: string, exec: string[]): Promise<void> {
  for (const headers of [{}, { connection: "close" }] as Record<string, string>[]) {
    const r = await drive(url, headers, { connections: 16, seconds: 2, exec });
    if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${what}: ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
  }
}

await withCleanup(NAME, async (cleanup) => {
  const started = performance.now();
  console.log(`${NAME}: load average at start ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], cleanup, agentArgs: ["--svid-files"] });
  const [a, b] = [c.nodes["node-a"]!, c.nodes["node-b"]!];
  const client = c.addWorkload("node-a", { name: "client" });
  const pods = Array.from({ length: WORKLOADS }, (_, i) => c.addWorkload("node-b", { name: `pod-${i}` }));

  const t = await c.tenant("txmem");
  await t.put("/identities/client", { path: "/ns/bench/client" });
  await t.put("/workloads/client", { identity: "client", node: client.node, addresses: [client.address] });
  let reason: string | null = null;
  for (const p of pods) {
    await t.put(`/identities/${p.name}`, { path: `/ns/bench/${p.name}` });
    await t.put(`/workloads/${p.name}`, { identity: p.name, node: p.node, addresses: [p.address] });
    const rule = { peers: [{ identity: "client" }], ports: [{ port: PORT, protocol: "tcp" }], action: "allow" };
    const policy = (transport?: string) => ({ subject: { identity: p.name }, ingress: [{ ...rule, ...(transport ? { transport } : {}) }] });
    // A refusal of the field is an answer (the API before issue 18's wiring): the same policy, plaintext.
    const res: Answer | null = reason === null ? await http(`${c.api.base}/v1/tenants/${t.tenant}/policies/${p.name}-in`, "PUT", t.auth, policy("mtls")) : null;
    if (res && res.status >= 300) reason = `the API refuses transport "mtls" on a policy rule: ${problemText(res.status, res.body)}`;
    if (res === null || res.status >= 300) await t.put(`/policies/${p.name}-in`, policy());
  }
  await c.converged();
  const svids = await Promise.all(pods.map((p) => svidFiles(cleanup, b.stateDir, t.tenant, p.name)));
  await httpBackend(cleanup, pods[0]!.netns, PORT, tools.nginx ? "nginx" : "node");

  reason ??= await transportUnavailable(c, "client", pods[0]!.name);
  if (reason === null) {
    const before = await steeredPackets(c, "node-a");
    try {
      await exercise("client -> pod-0 through the transports", `http://${pods[0]!.address}:${PORT}/`, inNetns(client.netns, a.cgroup));
      if ((await steeredPackets(c, "node-a")) === before) reason = "node-a counted no packet as steered: the traffic did not go through the transport";
    } catch (err) {
      reason = `traffic through the transports failed: ${(err as Error).message} (datapath: ${await transportCounts(c)})`;
    }
  }
  const transport = reason === null ? transportPid(c, "node-b") : null;
  const agentKiB = await rssOf([b.agent!.pid]);
  const transportKiB = transport === null ? null : await rssOf([transport]);

  const sidecars = [];
  for (const [i, p] of pods.entries()) sidecars.push(await tlsSidecar(cleanup, { netns: p.netns, podAddress: p.address, svid: svids[i]!, appPort: PORT, peerAddress: p.address }));
  await exercise("pod-0's sidecar, outbound to its own inbound", `http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/`, inNetns(pods[0]!.netns, b.cgroup));
  await sleep(500);
  const sidecarsKiB = await rssOf(sidecars.map((s) => s.pid));
  const eachKiB = sidecars.map((s) => rssKiB(s.pid) ?? Number.NaN);

  console.log(`| process (node-b, ${WORKLOADS} workloads) | RSS MiB |`);
  console.log(`|---|---|`);
  console.log(`| agent | ${mib(agentKiB)} |`);
  console.log(`| transport | ${transportKiB === null ? `not available (${reason})` : mib(transportKiB)} |`);
  console.log(`| ${WORKLOADS} haproxy TLS sidecars, each its pod's SVID | ${mib(sidecarsKiB)} (one: median ${mib(median(eachKiB))}, ${mib(Math.min(...eachKiB))}–${mib(Math.max(...eachKiB))}) |`);
  const weftKiB = agentKiB + (transportKiB ?? 0);
  const ratio = weftKiB / sidecarsKiB;
  if (transportKiB !== null) {
    console.log(`(agent + transport) / ${WORKLOADS} sidecars: ${ratio.toFixed(3)} (goal <= ${GOAL}: ${ratio <= GOAL ? "met" : "NOT met"})`);
  } else {
    console.log(`transport: not available (${reason}); agent alone / ${WORKLOADS} sidecars: ${ratio.toFixed(3)} (not the goal's figure: the transport's memory is missing)`);
  }
  console.log(`${NAME}: load average at end ${loadavg().map((l) => l.toFixed(2)).join(" ")}; run took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  writeResults("memory.json", { workloads: WORKLOADS, transport: reason ?? "measured", agentKiB, transportKiB, sidecarsKiB, sidecarKiB: eachKiB, ratio, goal: GOAL });
});
