/**
 * Agent memory with flows, one command (as root): npm run bench:agent-memory
 *
 * The node agent process's VmRSS (median of 5 samples over 2 s, as
 * bench:memory takes it) in three runs of the same agent (same node, state
 * directory and pins; restarted with other flags), each after the same
 * drop traffic: flows off, flows on with the default buffer of 4096 flows
 * held full, and flows on with a buffer ten times that, held full. Printed
 * as ratios to the flows-off run (the issue's goal: <= 1.2x with the
 * buffer full), with the anonymous part (the heaps) and the peak.
 *
 * Traffic: UDP from workload a's namespace to workload b, which a policy on
 * b refuses; every datagram goes to another port, so the aggregates are as
 * varied as the flows. Flows off and the defaults see the same traffic
 * (twice what fills 4096 flows at the default rate); the big buffer's run
 * raises the kernel's rate (--flow-rate 10000) so that it fills in
 * seconds, which also makes its upload batches full ones; the uploads are
 * answered 202 by a pass-through proxy in front of the API (the API's
 * flows route is on another branch), which counts what it receives.
 *
 * AGENT_NODE_ARGS passes Node flags to the agent process (all three runs),
 * e.g. AGENT_NODE_ARGS=--max-semi-space-size=1: most of what flows add is
 * V8's heaps under thousands of flows a second (an interval's rows, a batch
 * being serialised), and that caps the young generation.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { flowEventSize } from "@weft/codec";
import type { FlowBatch } from "../../nodeagent/src/agent/client.ts";
import { DEFAULT_FLOW_CONFIG } from "../../nodeagent/src/flows/config.ts";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { withCleanup, type BenchCleanup } from "../support/cleanup.ts";
import { addRoute, anonKiB, hwmKiB, inNetns, makeCgroup, makeNetns, makePinDir, makeVeth, rssKiB } from "../support/netns.ts";
import { benchTenant, median, startAgentProcess, startWeftApi, waitConverged, revisionOf, type AgentProcess, type WeftApi } from "../support/weft.ts";

const reason = cgroupUnavailableReason();
if (reason !== null) {
  console.error(`bench:agent-memory needs the kernel: ${reason}`);
  process.exit(1);
}

const SETTLE_MS = 3_000;
const TRAFFIC_PPS = 20_000;
const BIG_BUFFER = DEFAULT_FLOW_CONFIG.buffer * 10;
const BIG_RATE = 10_000;
/** At the default 1000 events/s per CPU, from one sender: about twice what 4096 flows take. */
const DEFAULT_SECONDS = Math.ceil((2 * DEFAULT_FLOW_CONFIG.buffer) / DEFAULT_FLOW_CONFIG.rate);
const BIG_SECONDS = Math.ceil((2 * BIG_BUFFER) / BIG_RATE);
const A = { host: "198.18.60.1", addr: "198.18.60.2" };
const B = { host: "198.18.61.1", addr: "198.18.61.2" };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Node flags for the agent process, e.g. AGENT_NODE_ARGS=--max-semi-space-size=1 (V8's young generation, which flows grow). */
const nodeArgs = (process.env.AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);

/** Forwards everything to the API but POST /v1/nodes/{node}/flows, which it counts and answers 202. */
async function apiFront(cleanup: BenchCleanup, api: WeftApi): Promise<{ base: string; received: { batches: number; flows: number; aggregates: number } }> {
  const target = new URL(api.base);
  const received = { batches: 0, flows: 0, aggregates: 0 };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === "POST" && /^\/v1\/nodes\/[^/]+\/flows$/.test(req.url ?? "")) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const batch = JSON.parse(Buffer.concat(chunks).toString()) as FlowBatch;
        received.batches++;
        received.flows += batch.flows.length;
        received.aggregates += batch.aggregates.length;
        res.writeHead(202, { "content-type": "application/json" }).end("{}");
      });
      return;
    }
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", (err) => res.writeHead(502).end(err.message));
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.add("close the API front", () => new Promise<void>((resolve) => server.close(() => resolve())));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

/** UDP from `ns` to host, every datagram to the next port, `pps` a second for `seconds`. */
function udpFlood(cgroup: string, ns: string, host: string, pps: number, seconds: number): Promise<void> {
  const script = `
const s=require("node:dgram").createSocket("udp4");const buf=Buffer.alloc(32);let port=1;const end=Date.now()+${seconds * 1000};
const tick=()=>{for(let i=0;i<${Math.ceil(pps / 100)};i++){s.send(buf,port,${JSON.stringify(host)});port=port%65535+1}if(Date.now()<end)setTimeout(tick,10);else setTimeout(()=>s.close(),100)};tick();`;
  const argv = [...inNetns(ns, cgroup), process.execPath, "-e", script];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "ignore" });
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`UDP sender exited with ${code}`))));
  });
}

async function sampleRss(pid: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    xs.push(rssKiB(pid) ?? Number.NaN);
    await sleep(400);
  }
  return median(xs);
}

const metricsPortOf = (agent: AgentProcess): number => {
  const m = /"metrics":"127\.0\.0\.1:(\d+)"/.exec(agent.output());
  if (!m) throw new Error(`the agent did not log its metrics port: ${agent.output().slice(-1000)}`);
  return Number(m[1]);
};

await withCleanup("bench:agent-memory", async (cleanup) => {
  const started = performance.now();
  const api = await startWeftApi(cleanup, { podCidr: "198.18.0.0/17" });
  const front = await apiFront(cleanup, api);
  const { tenant, auth } = await benchTenant(cleanup, api, "fmem");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);

  const nsA = makeNetns(cleanup, "fma");
  const nsB = makeNetns(cleanup, "fmb");
  makeVeth(cleanup, "fma", nsA, `${A.host}/30`, `${A.addr}/30`);
  makeVeth(cleanup, "fmb", nsB, `${B.host}/30`, `${B.addr}/30`);
  addRoute(nsA, "198.18.0.0/15", A.host);
  addRoute(nsB, "198.18.0.0/15", B.host);
  const pinDir = makePinDir(cleanup, "fmem");
  const cgroup = makeCgroup(cleanup, "fmem");
  const stateDir = mkdtempSync(join(tmpdir(), "wbench-fmem-"));
  cleanup.track("dirs", stateDir);
  cleanup.add(`remove ${stateDir}`, () => rmSync(stateDir, { recursive: true, force: true }));
  const node = `wbench-fmem-${process.pid}`;
  const frontApi: WeftApi = { ...api, base: front.base };

  // Flows off and the defaults see the same traffic; the big buffer gets a higher kernel rate to fill in seconds.
  const runs: { label: string; args: string[]; fill: number; seconds: number }[] = [
    { label: "flows off", args: ["--flows", "off"], fill: 0, seconds: DEFAULT_SECONDS },
    { label: `flows on, defaults, buffer ${DEFAULT_FLOW_CONFIG.buffer} full`, args: [], fill: DEFAULT_FLOW_CONFIG.buffer, seconds: DEFAULT_SECONDS },
    { label: `flows on, --flow-rate ${BIG_RATE}, buffer ${BIG_BUFFER} full`, args: ["--flow-rate", String(BIG_RATE), "--flow-burst", "2000", "--flow-buffer", String(BIG_BUFFER)], fill: BIG_BUFFER, seconds: BIG_SECONDS },
  ];
  const results: { label: string; rssKiB: number; anonKiB: number; hwmKiB: number; buffered: number }[] = [];
  let declared = false;
  for (const run of runs) {
    const agent = await startAgentProcess(cleanup, frontApi, { node, cgroup, pinDir, stateDir, agentArgs: run.args, nodeArgs });
    if (!declared) {
      for (const id of ["a", "b"]) await put(`/identities/${id}`, { path: `/ns/bench/${id}` });
      await put("/workloads/a-1", { identity: "a", node, addresses: [A.addr] });
      await put("/workloads/b-1", { identity: "b", node, addresses: [B.addr] });
      // b admits a on TCP port 1 only: the UDP a sends is dropped (default deny).
      const last = await put("/policies/b-in", { subject: { identity: "b" }, ingress: [{ peers: [{ identity: "a" }], ports: [{ port: 1, protocol: "tcp" }], action: "allow" }] });
      await waitConverged(api, node, revisionOf(last), 60_000);
      declared = true;
    } else {
      await waitConverged(api, node, 0, 60_000);
    }
    await sleep(1_000);
    const port = metricsPortOf(agent);
    const buffered = async () => (run.fill ? ((await (await fetch(`http://127.0.0.1:${port}/flows?limit=${run.fill}`)).json()) as { flows: unknown[] }).flows.length : 0);
    await udpFlood(cgroup, nsA, B.addr, TRAFFIC_PPS, run.seconds);
    const held = await buffered();
    if (held < run.fill) throw new Error(`${run.label}: the buffer holds ${held} flows, not ${run.fill}`);
    await sleep(SETTLE_MS);
    const rss = await sampleRss(agent.pid);
    results.push({ label: run.label, rssKiB: rss, anonKiB: anonKiB(agent.pid) ?? Number.NaN, hwmKiB: hwmKiB(agent.pid) ?? Number.NaN, buffered: held });
    await agent.stop();
  }

  const off = results[0]!.rssKiB;
  const mib = (kib: number) => (kib / 1024).toFixed(1);
  console.log(`agent: node ${nodeArgs.join(" ") || "(no extra flags)"} --import tsx nodeagent/src/main.ts`);
  console.log(`| agent | RSS MiB | vs flows off | of which anonymous | peak |`);
  console.log(`|---|---|---|---|---|`);
  for (const r of results) console.log(`| ${r.label} | ${mib(r.rssKiB)} | ${(r.rssKiB / off).toFixed(3)}x | ${mib(r.anonKiB)} | ${mib(r.hwmKiB)} |`);
  console.log(`the buffer itself: ${flowEventSize} bytes a flow (the kernel's record), ${mib((flowEventSize * DEFAULT_FLOW_CONFIG.buffer) / 1024)} MiB for ${DEFAULT_FLOW_CONFIG.buffer}, ${mib((flowEventSize * BIG_BUFFER) / 1024)} MiB for ${BIG_BUFFER}`);
  console.log(`uploads answered by the front: ${front.received.batches} batches, ${front.received.flows} flows, ${front.received.aggregates} aggregates`);
  console.log(`run took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(
    new URL("./results/flows-memory.json", import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), nodeArgs, runs: results.map((r) => ({ ...r, ratio: r.rssKiB / off })), uploads: front.received }, null, 2)}\n`,
  );
});
