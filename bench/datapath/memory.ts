/**
 * Memory benchmark, one command (as root): npm run bench:memory
 *
 * The node agent's resident memory (VmRSS from /proc/<pid>/status, after it
 * converged and settled) with 1 workload and with 100 workloads on its node,
 * against one sidecar proxy's resident memory after some traffic, times 100
 * (one sidecar per workload is what Weft replaces).
 *
 * The agent is the real process (`nodeagent/src/main.ts` under tsx, as
 * `npm run agent` runs it) on the real API process; workloads, identities,
 * services and policies are declared through REST. The agent puts tc
 * programs on the veth each workload address routes through, so each
 * workload gets a real veth pair (host end in the root namespace with
 * 198.18.x.1/30, peer in one bench namespace with 198.18.x.2/30); a
 * workload address without its own veth would route through the host's
 * default interface. The agent also issues an SVID per workload; the 100
 * workload figure is taken once all 100 are written.
 *
 * Sidecars: haproxy (tcp mode) and nginx with the stream module, one
 * process, one thread each, in a namespace of their own in front of an nginx
 * backend, measured after wrk drove them with keep-alive and with new
 * connections.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { withCleanup } from "../support/cleanup.ts";
import { drive } from "../support/load.ts";
import { childPids, commandOf, hwmKiB, inNetns, ipBatch, makeCgroup, makeNetns, makePinDir, rssKiB, vethNames } from "../support/netns.ts";
import { availability, httpBackend, sidecar, type SidecarKind } from "../support/proxies.ts";
import { benchTenant, median, revisionOf, startAgentProcess, startWeftApi, waitConverged, type WeftApi } from "../support/weft.ts";

const WORKLOADS = 100;
const IDENTITIES = 10;
const SERVICES = 10;
const SETTLE_MS = 3_000;

const reason = cgroupUnavailableReason();
const tools = availability();
if (reason !== null) {
  console.error(`bench:memory needs the kernel: ${reason}`);
  process.exit(1);
}
for (const m of tools.missing) console.error(`bench:memory: missing ${m}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Workload i: 198.18.128.0/18 cut into /30s; the host end takes .1, the workload .2. */
const addressOf = (i: number, host: boolean) => {
  const n = 128 * 256 + i * 4 + (host ? 1 : 2);
  return `198.18.${n >> 8}.${n & 255}`;
};

/** RSS sampled 5 times over 2 s, median, in KiB; the process and its children (if any) apart. */
async function sampleRss(pid: number): Promise<{ rssKiB: number; hwmKiB: number; childrenKiB: number; children: string[] }> {
  const self: number[] = [];
  const kids: number[] = [];
  let names: string[] = [];
  for (let i = 0; i < 5; i++) {
    self.push(rssKiB(pid) ?? Number.NaN);
    const children = childPids(pid);
    names = children.map((c) => commandOf(c).split(" ")[0]!.split("/").pop()!);
    kids.push(children.reduce((sum, c) => sum + (rssKiB(c) ?? 0), 0));
    await sleep(400);
  }
  return { rssKiB: median(self), hwmKiB: hwmKiB(pid) ?? Number.NaN, childrenKiB: median(kids), children: names };
}

async function waitFor(what: string, boundMs: number, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${boundMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

await withCleanup("bench:memory", async (cleanup) => {
  const started = performance.now();
  const api: WeftApi = await startWeftApi(cleanup, { podCidr: "198.18.128.0/18" });
  const { tenant, auth } = await benchTenant(cleanup, api, "mem");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);

  // 100 veth pairs, peers in one namespace; host ends forward nothing (no traffic is sent).
  const ns = makeNetns(cleanup, "mem");
  const names = Array.from({ length: WORKLOADS }, (_, i) => vethNames(`m${i}`));
  for (const n of names) cleanup.track("veths", n.host);
  cleanup.add("delete the workload veths", () => {
    const left = names.filter((n) => existsSync(`/sys/class/net/${n.host}`));
    ipBatch(left.map((n) => `link del ${n.host}`));
  });
  ipBatch(names.flatMap((n, i) => [`link add ${n.host} type veth peer name ${n.peer} netns ${ns}`, `addr add ${addressOf(i, true)}/30 dev ${n.host}`, `link set ${n.host} up`]));
  ipBatch(names.flatMap((n, i) => [`addr add ${addressOf(i, false)}/30 dev ${n.peer}`, `link set ${n.peer} up`]), ns);

  const pinDir = makePinDir(cleanup, "mem");
  const cgroup = makeCgroup(cleanup, "mem");
  const node = `wbench-mem-${process.pid}`;
  // SVID files on: the bench counts them to know every SVID is issued.
  const agent = await startAgentProcess(cleanup, api, { node, cgroup, pinDir, agentArgs: ["--svid-files"] });
  console.log(`bench:memory: API on ${api.database}; agent pid ${agent.pid} (node --import tsx nodeagent/src/main.ts)`);
  const idle = await sampleRss(agent.pid);

  const tcLinks = () => readdirSync(join(pinDir, "links")).filter((l) => l.startsWith("tcx-")).length;
  const svids = () => {
    const dir = join(agent.stateDir, "svids", tenant);
    return existsSync(dir) ? readdirSync(dir).filter((w) => existsSync(join(dir, w, "cert.pem"))).length : 0;
  };
  const declare = async (from: number, to: number) => {
    let last = 0;
    for (let i = from; i < to; i++) last = revisionOf(await put(`/workloads/w-${i}`, { identity: `id-${i % IDENTITIES}`, node, addresses: [addressOf(i, false)] }));
    return last;
  };
  const converge = async (revision: number, workloads: number) => {
    await waitConverged(api, node, revision, 60_000);
    await waitFor(`tc programs on ${workloads} veths`, 60_000, () => tcLinks() >= 2 * workloads);
    await waitFor(`${workloads} SVIDs written`, 90_000, () => svids() >= workloads);
    await sleep(SETTLE_MS);
  };

  for (let k = 0; k < IDENTITIES; k++) await put(`/identities/id-${k}`, { path: `/ns/bench/id-${k}` });
  await converge(await declare(0, 1), 1);
  const one = await sampleRss(agent.pid);

  // 99 more workloads, 10 services of 10 backends each, a policy per identity.
  let last = await declare(1, WORKLOADS);
  for (let s = 0; s < SERVICES; s++) {
    const backends = Array.from({ length: WORKLOADS / SERVICES }, (_, j) => ({ workload: `w-${s * (WORKLOADS / SERVICES) + j}`, weight: 1 + (j % 3) }));
    await put(`/services/svc-${s}`, { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { explicit: backends } });
  }
  for (let k = 0; k < IDENTITIES; k++) {
    last = revisionOf(
      await put(`/policies/in-${k}`, {
        subject: { identity: `id-${k}` },
        ingress: [{ peers: [{ identity: `id-${(k + 1) % IDENTITIES}` }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow" }],
      }),
    );
  }
  await converge(last, WORKLOADS);
  const hundred = await sampleRss(agent.pid);
  const shown = await api.call("GET", `/v1/nodes/${node}`, api.operator);
  const counters = (JSON.parse(shown.body) as { counters: Record<string, number> }).counters;
  const entries = Object.fromEntries(Object.entries(counters).filter(([k]) => k.startsWith("entries.")));

  // Sidecars: one process each, driven, then measured.
  const sidecarRss: Partial<Record<SidecarKind, number>> = {};
  const kinds = (["haproxy", "nginx-stream"] as const).filter((k) => (k === "haproxy" ? tools.haproxy : tools.nginxStream));
  if (kinds.length && tools.wrk) {
    const sns = makeNetns(cleanup, "msc");
    const backend = await httpBackend(cleanup, sns, 8080, tools.nginx ? "nginx" : "node");
    for (const [i, kind] of kinds.entries()) {
      const port = 15001 + i;
      const proxy = await sidecar(cleanup, kind, sns, port, "127.0.0.1", 8080);
      for (const headers of [{}, { connection: "close" }] as Record<string, string>[]) {
        const r = await drive(`http://127.0.0.1:${port}/`, headers, { connections: 16, seconds: 2, exec: inNetns(sns) });
        if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${kind}: ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
      }
      await sleep(500);
      sidecarRss[kind] = (await sampleRss(proxy.pid)).rssKiB;
      await proxy.stop();
    }
    await backend.stop();
  } else {
    console.error("bench:memory: no sidecar proxy (or no wrk) installed: apt-get install haproxy wrk; the sidecar column is left out");
  }

  const mib = (kib: number) => (kib / 1024).toFixed(1);
  console.log(`| process | RSS MiB | note |`);
  console.log(`|---|---|---|`);
  console.log(`| agent, started, nothing declared | ${mib(idle.rssKiB)} | |`);
  console.log(`| agent, 1 workload | ${mib(one.rssKiB)} | |`);
  console.log(`| agent, ${WORKLOADS} workloads | ${mib(hundred.rssKiB)} | peak ${mib(hundred.hwmKiB)}; maps ${JSON.stringify(entries)} |`);
  if (hundred.children.length) console.log(`| agent's children (${hundred.children.join(", ")}) | ${mib(hundred.childrenKiB)} | |`);
  for (const k of kinds) console.log(`| one sidecar, ${k} | ${mib(sidecarRss[k]!)} | x${WORKLOADS}: ${mib(sidecarRss[k]! * WORKLOADS)} |`);
  const ratios = Object.fromEntries(kinds.map((k) => [k, hundred.rssKiB / (sidecarRss[k]! * WORKLOADS)]));
  for (const k of kinds) {
    console.log(`agent (${WORKLOADS} workloads) / (${k} x ${WORKLOADS}): ${ratios[k]!.toFixed(3)}`);
  }
  console.log(`run took ${((performance.now() - started) / 1000).toFixed(1)} s`);

  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(
    new URL("./results/memory.json", import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), database: api.database, workloads: WORKLOADS, agent: { idle, one, hundred }, entries, sidecarRssKiB: sidecarRss, ratios }, null, 2)}\n`,
  );
});
