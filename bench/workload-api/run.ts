/**
 * Workload API benchmark, one command (as root): npm run bench:workload-api
 *
 * 100 workloads on one node, each in a network namespace of its own behind
 * its own veth, each with a Workload API client (test/workload-api/
 * wapi-client.cjs `watch`: @grpc/grpc-js and the published proto) holding a
 * FetchX509SVID stream open, against the real agent process and the real API
 * process. Two rotations, each timed from the clients' side (the time each
 * client read its new message):
 *
 *   bundle: a CA is prepared (POST .../ca/prepare): every stream must get a
 *           message with one more CA. Reported: from the first stream updated
 *           to the last (the agent's fan-out; the agent reads bundles every
 *           5 s, so the time from the POST is reported apart).
 *   SVID:   every SVID (60 s life) renewed at half-life: each stream's new
 *           SVID, from its old one's half-life to the client reading it
 *           (issue through the API + push), and from the first to the last.
 *
 * Goal: all 100 streams updated within 1 s. Agent CPU (utime + stime of the
 * agent process over the window) per update is reported.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { withCleanup } from "../support/cleanup.ts";
import { ipBatch, makeCgroup, makeNetns, makePinDir, vethNames } from "../support/netns.ts";
import { ascending, benchTenant, percentile, repoRoot, revisionOf, startAgentProcess, startWeftApi, waitConverged } from "../support/weft.ts";

const WORKLOADS = Number(process.env.WAPI_WORKLOADS ?? 100);
const TTL_SECONDS = 60;
const GOAL_MS = 1_000;
const CLIENT = `${repoRoot}test/workload-api/wapi-client.cjs`;
const PROTO = `${repoRoot}nodeagent/src/workload-api/workload.proto`;

const reason = cgroupUnavailableReason();
if (reason !== null) {
  console.error(`bench:workload-api needs the kernel: ${reason}`);
  process.exit(1);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Workload i: 198.18.128.0/18 cut into /30s; the host end takes .1, the workload .2. */
const addressOf = (i: number, host: boolean) => {
  const n = 128 * 256 + i * 4 + (host ? 1 : 2);
  return `198.18.${n >> 8}.${n & 255}`;
};
/** utime + stime of a process, in ms. */
const cpuMs = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
};

interface Message {
  at: number;
  serial: string;
  notBefore: number;
  notAfter: number;
  cas: number;
  error?: string;
}

async function waitFor(what: string, boundMs: number, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${boundMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

const fmt = (ms: number) => `${ms.toFixed(0)} ms`;
function spread(label: string, times: number[]): { first: number; last: number } {
  const s = ascending(times);
  console.log(`  ${label}: first→last ${fmt(s.at(-1)! - s[0]!)} (p50 ${fmt(percentile(s, 50) - s[0]!)}, p99 ${fmt(percentile(s, 99) - s[0]!)} after the first)`);
  return { first: s[0]!, last: s.at(-1)! };
}

await withCleanup("bench:workload-api", async (cleanup) => {
  const api = await startWeftApi(cleanup, { podCidr: "198.18.128.0/18" });
  const { tenant, auth } = await benchTenant(cleanup, api, "wapi");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);

  const ns: string[] = [];
  for (let i = 0; i < WORKLOADS; i++) ns.push(makeNetns(cleanup, `wapi${i}`));
  const names = ns.map((_, i) => vethNames(`wa${i}`));
  for (const n of names) cleanup.track("veths", n.host);
  cleanup.add("delete the workload veths", () => ipBatch(names.filter((n) => existsSync(`/sys/class/net/${n.host}`)).map((n) => `link del ${n.host}`)));
  ipBatch(names.flatMap((n, i) => [`link add ${n.host} type veth peer name ${n.peer} netns ${ns[i]}`, `addr add ${addressOf(i, true)}/30 dev ${n.host}`, `link set ${n.host} up`]));
  names.forEach((n, i) => ipBatch([`addr add ${addressOf(i, false)}/30 dev ${n.peer}`, `link set ${n.peer} up`], ns[i]));

  const agent = await startAgentProcess(cleanup, api, { node: `wbench-wapi-${process.pid}`, cgroup: makeCgroup(cleanup, "wapi"), pinDir: makePinDir(cleanup, "wapi") });
  const socket = `${agent.stateDir}/workload-api.sock`;
  for (let k = 0; k < 10; k++) await put(`/identities/id-${k}`, { path: `/ns/bench/id-${k}`, x509SvidTtlSeconds: TTL_SECONDS });
  let last = 0;
  for (let i = 0; i < WORKLOADS; i++) last = revisionOf(await put(`/workloads/w-${i}`, { identity: `id-${i % 10}`, node: agent.node, addresses: [addressOf(i, false)] }));
  await waitConverged(api, agent.node, last, 60_000);

  // One watcher per workload, started a few at a time (each is a Node process loading grpc-js).
  const seen: Message[][] = ns.map(() => []);
  const clients: ChildProcess[] = [];
  cleanup.add("stop the clients", () => clients.forEach((c) => c.exitCode === null && c.kill("SIGKILL")));
  for (let i = 0; i < WORKLOADS; i++) {
    const c = spawn("ip", ["netns", "exec", ns[i]!, process.execPath, CLIENT, "watch"], {
      env: { ...process.env, SPIFFE_ENDPOINT_SOCKET: `unix://${socket}`, WORKLOAD_PROTO: PROTO },
      stdio: ["ignore", "pipe", "inherit"],
    });
    clients.push(c);
    let partial = "";
    c.stdout!.on("data", (d: Buffer) => {
      const lines = (partial + String(d)).split("\n");
      partial = lines.pop()!;
      for (const l of lines) if (l) seen[i]!.push(JSON.parse(l) as Message);
    });
    if (i % 10 === 9) await waitFor(`clients ${i - 9}..${i} to get their first SVID`, 60_000, () => seen.slice(i - 9, i + 1).every((m) => m.length > 0));
  }
  await waitFor("every client's first SVID", 60_000, () => seen.every((m) => m.length > 0));
  const errors = seen.flat().filter((m) => m.error);
  if (errors.length) throw new Error(`clients answered errors: ${JSON.stringify(errors.slice(0, 3))}`);
  console.log(`bench:workload-api: ${WORKLOADS} workloads, each its own namespace and FetchX509SVID stream; API on ${api.database}; agent pid ${agent.pid}`);
  await sleep(2_000);

  // 1. Bundle change.
  const casBefore = seen.map((m) => m.at(-1)!.cas);
  const cpu0 = cpuMs(agent.pid);
  const posted = performance.timeOrigin + performance.now();
  await api.call("POST", `/v1/tenants/${tenant}/ca/prepare`, auth, {});
  await waitFor("every stream to carry the prepared CA", 30_000, () => seen.every((m, i) => m.some((x) => x.cas === casBefore[i]! + 1)));
  const bundleAt = seen.map((m, i) => m.find((x) => x.cas === casBefore[i]! + 1)!.at);
  const b = spread("bundle change (prepared CA) reached every stream", bundleAt);
  console.log(`    from the POST: first ${fmt(b.first - posted)} (the agent reads bundles every 5 s), last ${fmt(b.last - posted)}`);
  await sleep(500);
  const bundleCpu = cpuMs(agent.pid) - cpu0;
  console.log(`    agent CPU ${fmt(bundleCpu)} over the window, ${(bundleCpu / WORKLOADS).toFixed(2)} ms per stream updated (includes its idle loop)`);

  // 2. SVID rotation at half-life.
  // From the SVIDs the streams hold now (setup may have outlasted a first half-life already).
  const from = seen.map((m) => m.length);
  const firstSerial = seen.map((m) => m.at(-1)!.serial);
  const halfLife = seen.map((m) => (m.at(-1)!.notBefore + m.at(-1)!.notAfter) / 2);
  const renewed = (m: Message[], i: number) => m.slice(from[i]).find((x) => x.serial !== firstSerial[i]);
  const wait = Math.max(...halfLife) - Date.now();
  console.log(`  waiting up to ${(wait / 1000).toFixed(0)} s for the SVIDs' half-life...`);
  await sleep(Math.max(0, Math.min(...halfLife) - Date.now() - 2_000));
  const cpu1 = cpuMs(agent.pid);
  await waitFor("every stream to carry a renewed SVID", TTL_SECONDS * 1000, () => seen.every((m, i) => renewed(m, i) !== undefined));
  const renewedAt = seen.map((m, i) => renewed(m, i)!.at);
  const lateness = ascending(renewedAt.map((t, i) => t - halfLife[i]!));
  const r = spread("SVID renewal reached every stream", renewedAt);
  console.log(`    each from its SVID's half-life: p50 ${fmt(percentile(lateness, 50))}, p99 ${fmt(percentile(lateness, 99))}, max ${fmt(lateness.at(-1)!)}`);
  const expiredFirst = seen.filter((m, i) => renewedAt[i]! >= m[from[i]! - 1]!.notAfter).length;
  await sleep(500);
  const rotateCpu = cpuMs(agent.pid) - cpu1;
  console.log(`    agent CPU ${fmt(rotateCpu)} over the window, ${(rotateCpu / WORKLOADS).toFixed(2)} ms per SVID renewed and pushed (key, CSR, API call, push)`);
  console.log(`    streams whose old SVID expired first: ${expiredFirst}`);
  const met = b.last - b.first <= GOAL_MS && lateness.at(-1)! <= GOAL_MS && expiredFirst === 0;
  console.log(`bench:workload-api: goal all ${WORKLOADS} streams updated within ${GOAL_MS} ms: ${met ? "met" : "not met"} (bundle fan-out ${fmt(b.last - b.first)}, renewal max ${fmt(lateness.at(-1)!)}; renewal first→last ${fmt(r.last - r.first)} follows the SVIDs' own issue times)`);
});

