/**
 * L7 memory benchmark, one command (as root, under the kernel lock):
 *   flock /tmp/weft-kernel.lock npm run bench:l7-memory
 *
 * Issue 21's memory bullet: the L7 path for 30 workloads on a node against 30
 * sidecars. One node (bench/support/cluster.ts: the real API and agent) with
 * 30 pods, each its own identity, its own service (80 -> 8080) backed by
 * itself and made L7 by an httpRoute, and a policy letting every pod in on
 * 8080 and 15006 (a rule without peers: any): node-a's proxy holds 30 frontends, 30 backends and 30
 * callers. Against it, 30 HTTP sidecars (http-sidecar.ts: one HAProxy per
 * pod, in the pod's namespace, outbound to its own inbound, the 30 pods
 * allowed). nginx in pod-0; both sides carry traffic before they are
 * measured (wrk, 2 s keep-alive and 2 s new connections): pod-1 -> svc-0
 * through the node's proxy, pod-0's sidecar outbound -> its inbound -> nginx.
 * Each figure, VmRSS (the goal's, as bench:transport-memory) and PSS (shared
 * pages split among their sharers), is the median of 5 samples over 2 s,
 * every process measured (no one-times-thirty): the node proxy is the HAProxy master and
 * its workers, the agent's descendants. Goal: node proxy / 30 sidecars <= 0.1.
 * The agent is printed beside it (it is there for L3/L4 as well; what L7 adds
 * to it is not told apart).
 *
 * While the node proxy does not run (issue 21's other parts), the bench says
 * "node proxy: not available (why)" and measures the sidecars alone.
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { withCleanup } from "../support/cleanup.ts";
import { startCluster } from "../support/cluster.ts";
import { exercise } from "../support/exercise.ts";
import { inNetns, rssKiB, type Daemon } from "../support/netns.ts";
import { httpBackend } from "../support/proxies.ts";
import { median } from "../support/weft.ts";
import { prerequisites } from "../transport/prerequisites.ts";
import { SIDECAR_INBOUND_PORT, SIDECAR_OUTBOUND_PORT, httpSidecar } from "./http-sidecar.ts";
import { leftoverCheck } from "./leftovers.ts";
import { writeResults } from "./results.ts";
import { convergeUnavailable, l7Counts, proxyPids, proxyUnavailable, routeAll, steeredToProxy } from "./weft-l7.ts";

const NAME = "bench:l7-memory";
const WORKLOADS = 30;
const PORT = 8080;
const GOAL = 0.1;

const tools = prerequisites(NAME);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kib: number) => (kib / 1024).toFixed(1);

/**
 * Proportional set size in KiB (/proc/PID/smaps_rollup): pages shared by N
 * processes count 1/N in each, so 30 HAProxies of one binary do not count
 * its code 30 times, as their RSS does. NaN when the process is gone.
 */
function pssKiB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}

/** The summed VmRSS and PSS of the processes `pids()` names, each the median of 5 samples over 2 s, in KiB. */
async function memoryOf(pids: () => number[]): Promise<{ rss: number; pss: number }> {
  const rss: number[] = [];
  const pss: number[] = [];
  for (let i = 0; i < 5; i++) {
    const now = pids();
    rss.push(now.reduce((sum, p) => sum + (rssKiB(p) ?? Number.NaN), 0));
    pss.push(now.reduce((sum, p) => sum + pssKiB(p), 0));
    await sleep(400);
  }
  return { rss: median(rss), pss: median(pss) };
}

await withCleanup(NAME, async (cleanup) => {
  const started = performance.now();
  const seen = leftoverCheck(cleanup);
  console.log(`${NAME}: load average at start ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }], cleanup });
  const a = c.nodes["node-a"]!;
  const pods = Array.from({ length: WORKLOADS }, (_, i) => c.addWorkload("node-a", { name: `pod-${i}` }));

  const t = await c.tenant("l7mem");
  const vips: string[] = [];
  let reason: string | null = null;
  for (const p of pods) {
    await t.put(`/identities/${p.name}`, { path: `/ns/bench/${p.name}` });
    await t.put(`/workloads/${p.name}`, { identity: p.name, node: p.node, addresses: [p.address] });
    await t.put(`/policies/${p.name}-in`, {
      subject: { identity: p.name },
      ingress: [{ ports: [{ port: PORT, protocol: "tcp" }, { port: SIDECAR_INBOUND_PORT, protocol: "tcp" }], action: "allow" }],
    });
    const svc = await t.call("PUT", `/services/svc-${p.name}`, { ports: [{ port: 80, protocol: "tcp", targetPort: PORT }], backends: { explicit: [{ workload: p.name, weight: 1 }] } });
    vips.push((JSON.parse(svc.body) as { vip: string }).vip);
  }
  await c.converged();
  // The routes apart: a node that cannot apply them keeps the state before them, and the sidecars still run.
  for (const p of pods) {
    // The first refusal answers for all: the API has no httpRoutes yet.
    reason ??= await routeAll(c, t, `route-${p.name}`, `svc-${p.name}`);
  }
  reason ??= await convergeUnavailable(c);
  await httpBackend(cleanup, pods[0]!.netns, PORT, tools.nginx ? "nginx" : "node");

  reason ??= await proxyUnavailable(c, "node-a");
  if (reason === null) {
    const before = await steeredToProxy(c, "node-a");
    try {
      await exercise("pod-1 -> svc-pod-0 through node-a's proxy", `http://${vips[0]}:80/`, inNetns(pods[1]!.netns, a.cgroup));
      if ((await steeredToProxy(c, "node-a")) === before) reason = "node-a counted no packet as l7-steered: the traffic did not go through the node's proxy";
    } catch (err) {
      reason = `traffic through node-a's proxy failed: ${(err as Error).message} (datapath: ${await l7Counts(c)})`;
    }
  }
  const proxies = () => {
    const pids = proxyPids(c, "node-a");
    seen(...pids);
    return pids;
  };
  const proxyCount = reason === null ? proxies().length : 0;
  const proxy = reason === null ? await memoryOf(proxies) : null;
  const agent = await memoryOf(() => [a.agent!.pid]);

  const addresses = pods.map((p) => p.address);
  const sidecars: Daemon[] = [];
  for (const p of pods) sidecars.push(await httpSidecar(cleanup, { netns: p.netns, podAddress: p.address, appPort: PORT, peerAddress: p.address, allowedSources: addresses }));
  seen(...sidecars.map((s) => s.pid));
  await exercise("pod-0's sidecar, outbound to its own inbound", `http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/`, inNetns(pods[0]!.netns, a.cgroup));
  await sleep(500);
  const all = await memoryOf(() => sidecars.map((s) => s.pid));
  const eachKiB = sidecars.map((s) => rssKiB(s.pid) ?? Number.NaN);

  console.log(`| process (node-a, ${WORKLOADS} workloads, each an L7 service) | RSS MiB | PSS MiB |`);
  console.log(`|---|---|---|`);
  console.log(`| node proxy (HAProxy master + workers, run by the agent) | ${proxy === null ? `not available (${reason}) | –` : `${mib(proxy.rss)} (${proxyCount} processes) | ${mib(proxy.pss)}`} |`);
  console.log(`| agent (for L3/L4 as well) | ${mib(agent.rss)} | ${mib(agent.pss)} |`);
  console.log(`| ${WORKLOADS} haproxy HTTP sidecars | ${mib(all.rss)} (one: median ${mib(median(eachKiB))}, ${mib(Math.min(...eachKiB))}–${mib(Math.max(...eachKiB))}) | ${mib(all.pss)} |`);
  const ratio = proxy === null ? null : { rss: proxy.rss / all.rss, pss: proxy.pss / all.pss, withAgent: (proxy.rss + agent.rss) / all.rss };
  if (ratio !== null) {
    console.log(
      `node proxy / ${WORKLOADS} sidecars: RSS ${ratio.rss.toFixed(3)} (goal <= ${GOAL}: ${ratio.rss <= GOAL ? "met" : "NOT met"}), PSS ${ratio.pss.toFixed(3)}; ` +
        `(node proxy + agent) / ${WORKLOADS} sidecars, RSS: ${ratio.withAgent.toFixed(3)}`,
    );
  } else {
    console.log(`node proxy: not available (${reason}); no ratio in this run`);
  }
  console.log(`${NAME}: load average at end ${loadavg().map((l) => l.toFixed(2)).join(" ")}; run took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  writeResults("memory.json", { workloads: WORKLOADS, proxy: reason ?? "measured", proxyKiB: proxy, proxyProcesses: proxyCount, agentKiB: agent, sidecarsKiB: all, sidecarRssKiB: eachKiB, ratio, goal: GOAL });
});
