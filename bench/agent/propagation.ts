/**
 * Propagation benchmark, one command (as root): npm run bench:propagation
 *
 * REST write -> kernel map changed. The real API in its own
 * process (Postgres when DATABASE_URL is set, else embedded PGlite), the real
 * agent process (`nodeagent/src/main.ts`) with a cgroup, pin directory and
 * state directory of the bench's own, three workloads behind veths in
 * network namespaces (the agent puts its tc programs on them; no traffic is
 * sent). The writes alternate between a policy flip (allow <-> deny: the
 * policy map) and a service weight change (3:1 <-> 1:3: the lb_slot map).
 *
 * Each write is timed from its REST response to the moment the pinned kernel
 * map holds the new entries, read by this process through the agent's own
 * libbpf binding (nodeagent/src/kernel) every millisecond, 3 s at most per
 * write. The expected bytes of each map are the ones the agent wrote for the
 * same configuration during warm-up.
 *
 * Two pacings: 100 writes "at rest" (each after the agent has reported the
 * previous one, so it is parked in its long poll: a node where writes come
 * seconds apart; the goal's figure), then 50 "back to back" (the next write
 * as soon as the kernel changed, while the agent still does its post-apply
 * work: workload list, tc attachments, SVIDs, status report).
 *
 * Baselines in the same run: the API's own write latency (the PUT's round
 * trip) and the long-poll wake-up latency: a bare HTTP client holding
 * GET /v1/nodes/{node}/datapath?since=REV&wait=30 with the agent's node
 * credential, exactly as the agent polls, timed to its answer. What the
 * agent adds is the kernel time minus the wake-up time. Goal (issue 6):
 * p99 < 250 ms.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { maps as mapSpecs } from "@weft/codec";
import { closeFd, openPinnedMap, type BpfMap } from "../../nodeagent/src/kernel/index.ts";
import { cgroupUnavailableReason } from "../../test/support/kernel.ts";
import { withCleanup } from "../support/cleanup.ts";
import { addRoute, makeCgroup, makeNetns, makePinDir, makeVeth, type Veth } from "../support/netns.ts";
import { ascending, benchTenant, http, percentile, revisionOf, startAgentProcess, startWeftApi, waitConverged, type Answer } from "../support/weft.ts";

const WRITES = Number(process.env.BENCH_WRITES ?? 100);
const BACK_TO_BACK = Number(process.env.BENCH_BACK_TO_BACK ?? 50);
const BOUND_MS = 3_000;
const POLL_MS = 1;
const GOAL_P99_MS = 250;
/** BENCH_TRACE=1: the agent's HTTP calls, timed, kept in the results (bench/support/trace-fetch.mjs, or a preload of your own by path). */
const TRACE = process.env.BENCH_TRACE === "1" ? new URL("../support/trace-fetch.mjs", import.meta.url).pathname : process.env.BENCH_TRACE;
/** Pause (at rest) after the agent has reported a write, so it and the bare client are back in their long polls; random against lock-step. */
const GAP_MS = [20, 60] as const;

const W = {
  a: { label: "pa", host: "198.18.101.1", addr: "198.18.101.2" },
  b1: { label: "pb1", host: "198.18.102.1", addr: "198.18.102.2" },
  b2: { label: "pb2", host: "198.18.103.1", addr: "198.18.103.2" },
} as const;
type WName = keyof typeof W;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const policyB = (action: "allow" | "deny") => ({
  subject: { identity: "b" },
  ingress: [{ peers: [{ identity: "a" }], ports: [{ port: 8080, protocol: "tcp" }], action }],
});
const service = (w1: number, w2: number) => ({
  ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
  backends: { explicit: [{ workload: "b-1", weight: w1 }, { workload: "b-2", weight: w2 }] },
});

/** A map's whole content as one comparable string (entries as key=value hex, sorted). */
function contentOf(map: BpfMap): string {
  const { keys, values, count } = map.dump();
  const { keySize } = map.shape;
  const { valueBytes } = map;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    lines.push(`${Buffer.from(keys.subarray(i * keySize, (i + 1) * keySize)).toString("hex")}=${Buffer.from(values.subarray(i * valueBytes, (i + 1) * valueBytes)).toString("hex")}`);
  }
  return lines.sort().join("\n");
}

interface Sample {
  kind: "policy" | "weights";
  revision: number;
  writeMs: number;
  /** from the PUT's response; null when not seen within the bound */
  kernelMs: number | null;
  kernelFromSendMs: number | null;
  wakeMs: number | null;
  wakeFromSendMs: number | null;
  /** the agent's engine time for the apply that carried this revision (its own log) */
  applyMs: number | null;
  /** epoch ms of the write's send and answer, the kernel change and the bare client's wake (to line up with agent traces) */
  epoch: { sent: number; answered: number; kernel: number | null; wake: number | null };
}

const reason = cgroupUnavailableReason();
if (reason !== null) {
  console.error(`bench:propagation needs the kernel: ${reason}`);
  process.exit(1);
}

await withCleanup("bench:propagation", async (cleanup) => {
  const started = performance.now();
  const api = await startWeftApi(cleanup);
  console.log(`bench:propagation: API process on ${api.database}; ${WRITES} writes`);
  const { tenant, auth } = await benchTenant(cleanup, api, "prop");
  const put = (path: string, body: unknown) => api.call("PUT", `/v1/tenants/${tenant}${path}`, auth, body);

  const pinDir = makePinDir(cleanup, "prop");
  const cgroup = makeCgroup(cleanup, "prop");
  const veths = {} as Record<WName, Veth>;
  for (const [name, w] of Object.entries(W) as [WName, (typeof W)[WName]][]) {
    const ns = makeNetns(cleanup, w.label);
    veths[name] = makeVeth(cleanup, w.label, ns, `${w.host}/30`, `${w.addr}/30`);
    addRoute(ns, "198.18.0.0/15", w.host);
  }

  // The agent's "applied datapath" log lines: revision and engine time of each apply.
  const applies: { revision: number; elapsedMs: number; at: number }[] = [];
  const node = `wbench-prop-${process.pid}`;
  const traces: unknown[] = [];
  const agent = await startAgentProcess(cleanup, api, {
    node,
    cgroup,
    pinDir,
    ...(TRACE ? { nodeArgs: ["--import", TRACE] } : {}),
    onLine: (line, at) => {
      if (line.startsWith('{"trace"')) traces.push(JSON.parse(line));
      if (!line.includes('"applied datapath"')) return;
      const f = JSON.parse(line) as { revision: number; elapsedMs: number };
      applies.push({ revision: f.revision, elapsedMs: f.elapsedMs, at });
    },
  });

  for (const id of ["a", "b"]) await put(`/identities/${id}`, { path: `/ns/bench/${id}` });
  await put("/workloads/a-1", { identity: "a", node, addresses: [W.a.addr] });
  await put("/workloads/b-1", { identity: "b", node, addresses: [W.b1.addr] });
  await put("/workloads/b-2", { identity: "b", node, addresses: [W.b2.addr] });
  await put("/services/web", service(3, 1));
  let last = await put("/policies/b-in", policyB("allow"));
  await waitConverged(api, node, revisionOf(last));

  // The agent must have put tc programs on our veths and nowhere else.
  const ours = new Set(Object.values(veths).map((v) => v.hostIfindex));
  const tcLinks = () => readdirSync(join(pinDir, "links")).filter((l) => l.startsWith("tcx-"));
  for (let i = 0; i < 100 && tcLinks().length < 2 * ours.size; i++) await sleep(50);
  const stray = tcLinks().filter((l) => !ours.has(Number(l.split("-")[1])));
  if (stray.length) throw new Error(`the agent attached tc programs outside the bench's veths: ${stray.join(", ")}`);

  const open = (id: "policy" | "lb_slot") => {
    const spec = mapSpecs[id];
    const m = openPinnedMap(join(pinDir, spec.name), { name: spec.name, keySize: spec.keySize, valueSize: spec.valueSize });
    cleanup.add(`close ${spec.name}`, () => closeFd(m.fd));
    return m;
  };
  const maps = { policy: open("policy"), weights: open("lb_slot") };

  // Warm-up: the bytes the agent writes for each configuration are the targets.
  const target = { policy: {} as Record<string, string>, weights: {} as Record<string, string> };
  target.policy.allow = contentOf(maps.policy);
  target.weights["3:1"] = contentOf(maps.weights);
  last = await put("/policies/b-in", policyB("deny"));
  await waitConverged(api, node, revisionOf(last));
  target.policy.deny = contentOf(maps.policy);
  last = await put("/services/web", service(1, 3));
  await waitConverged(api, node, revisionOf(last));
  target.weights["1:3"] = contentOf(maps.weights);
  if (target.policy.allow === target.policy.deny) throw new Error("allow and deny left the same policy map: nothing to observe");
  if (target.weights["3:1"] === target.weights["1:3"]) throw new Error("3:1 and 1:3 left the same lb_slot map: nothing to observe");

  // The bare long-poll client, with the agent's credential, asking as the agent does (?since=REV&wait=30).
  const pollAuth = { authorization: `Bearer ${agent.credential()}` };
  const first = await http(`${api.base}/v1/nodes/${node}/datapath`, "GET", pollAuth);
  let pollRevision = Number(first.headers["x-weft-revision"]);
  const wakes: { revision: number; at: number }[] = [];
  const stopPolling = new AbortController();
  const poller = (async () => {
    while (!stopPolling.signal.aborted) {
      let res: Answer;
      try {
        res = await http(`${api.base}/v1/nodes/${node}/datapath?since=${pollRevision}&wait=30`, "GET", pollAuth, undefined, stopPolling.signal);
      } catch (err) {
        if (stopPolling.signal.aborted) return;
        throw err;
      }
      if (res.status !== 200) throw new Error(`bare long poll: ${res.status} ${res.body.slice(0, 300)}`);
      const revision = (JSON.parse(res.body) as { revision: number }).revision;
      if (revision > pollRevision) wakes.push({ revision, at: res.at });
      pollRevision = revision;
    }
  })();
  cleanup.add("stop the bare long poll", async () => {
    stopPolling.abort();
    await poller.catch(() => undefined);
  });
  await sleep(200);

  const state = { policy: "deny" as "allow" | "deny", weights: "1:3" as "3:1" | "1:3" };
  /**
   * `count` writes, alternating policy flips and weight changes. "at rest":
   * after each write has reached the kernel, wait until the agent has
   * reported it (its status PUT is the last thing it does before polling
   * again) and the bare client has its answer, then a short random pause: the
   * agent is parked in its long poll when the next write comes, as on a node
   * where writes are seconds apart. "back to back": the next write goes out
   * as soon as the kernel changed, while the agent is still reporting.
   */
  async function measure(count: number, pacing: "at rest" | "back to back"): Promise<Sample[]> {
    const samples: Sample[] = [];
    for (let i = 0; i < count; i++) {
      const kind = i % 2 === 0 ? "policy" : "weights";
      let res: Answer;
      let want: string;
      if (kind === "policy") {
        state.policy = state.policy === "allow" ? "deny" : "allow";
        want = target.policy[state.policy]!;
        res = await put("/policies/b-in", policyB(state.policy));
      } else {
        state.weights = state.weights === "3:1" ? "1:3" : "3:1";
        want = target.weights[state.weights]!;
        res = await put("/services/web", state.weights === "3:1" ? service(3, 1) : service(1, 3));
      }
      const revision = revisionOf(res);
      let kernelAt: number | null = null;
      while (performance.now() < res.at + BOUND_MS) {
        if (contentOf(maps[kind]) === want) {
          kernelAt = performance.now();
          break;
        }
        await sleep(POLL_MS);
      }
      // The bare client's answer for this revision (it may come after the kernel changed).
      let wake: { at: number } | undefined;
      for (let t = 0; t < BOUND_MS / 5 && !(wake = wakes.find((w) => w.revision >= revision)); t++) await sleep(5);
      samples.push({
        kind,
        revision,
        writeMs: res.at - res.sentAt,
        kernelMs: kernelAt === null ? null : kernelAt - res.at,
        kernelFromSendMs: kernelAt === null ? null : kernelAt - res.sentAt,
        wakeMs: wake ? wake.at - res.at : null,
        wakeFromSendMs: wake ? wake.at - res.sentAt : null,
        applyMs: null,
        epoch: { sent: performance.timeOrigin + res.sentAt, answered: performance.timeOrigin + res.at, kernel: kernelAt === null ? null : performance.timeOrigin + kernelAt, wake: wake ? performance.timeOrigin + wake.at : null },
      });
      if (kernelAt === null) console.error(`write ${i} (${kind}, revision ${revision}): the kernel map did not change within ${BOUND_MS} ms`);
      if (pacing === "at rest" || kernelAt === null) {
        await waitConverged(api, node, revision);
        await sleep(GAP_MS[0] + Math.random() * (GAP_MS[1] - GAP_MS[0]));
      }
    }
    return samples;
  }

  const phases = { atRest: await measure(WRITES, "at rest"), backToBack: await measure(BACK_TO_BACK, "back to back") };

  // The agent's log lines may arrive after the kernel changed: matched once every write is done.
  await sleep(200);
  const all = [...phases.atRest, ...phases.backToBack];
  for (const s of all) s.applyMs = applies.find((a) => a.revision >= s.revision)?.elapsedMs ?? null;
  const stat = (xs: (number | null)[]) => {
    const v = ascending(xs.filter((x): x is number => x !== null));
    return v.length ? { n: v.length, p50: percentile(v, 50), p99: percentile(v, 99), max: v[v.length - 1]! } : null;
  };
  const summarize = (samples: Sample[]) => ({
    missed: samples.filter((s) => s.kernelMs === null).length,
    write: stat(samples.map((s) => s.writeMs)),
    wake: stat(samples.map((s) => s.wakeMs)),
    kernel: stat(samples.map((s) => s.kernelMs)),
    kernelPolicy: stat(samples.filter((s) => s.kind === "policy").map((s) => s.kernelMs)),
    kernelWeights: stat(samples.filter((s) => s.kind === "weights").map((s) => s.kernelMs)),
    kernelFromSend: stat(samples.map((s) => s.kernelFromSendMs)),
    agentShare: stat(samples.map((s) => (s.kernelMs !== null && s.wakeMs !== null ? s.kernelMs - s.wakeMs : null))),
    apply: stat(samples.map((s) => s.applyMs)),
  });
  const results = { atRest: summarize(phases.atRest), backToBack: summarize(phases.backToBack) };
  const f = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(1));
  const cells = (s: ReturnType<typeof stat>) => `${s?.n ?? 0} | ${f(s?.p50)} | ${f(s?.p99)} | ${f(s?.max)}`;
  const r = results;
  console.log(`| measure (ms) | at rest: n | p50 | p99 | max | back to back: n | p50 | p99 | max |`);
  console.log(`|---|---|---|---|---|---|---|---|---|`);
  const line = (what: string, k: keyof (typeof results)["atRest"]) =>
    k !== "missed" && console.log(`| ${what} | ${cells(r.atRest[k])} | ${cells(r.backToBack[k])} |`);
  line("API write, PUT round trip (baseline)", "write");
  line("long-poll wake, bare client, from the PUT's response (baseline)", "wake");
  line(`**kernel map changed, from the PUT's response** (goal p99 < ${GOAL_P99_MS})`, "kernel");
  line("  policy flips", "kernelPolicy");
  line("  weight changes", "kernelWeights");
  line("kernel map changed, from the PUT's send", "kernelFromSend");
  line("agent's share: kernel - wake, per write", "agentShare");
  line("agent engine apply (encode, read back, diff, write; its log)", "apply");
  const ratio = (x: ReturnType<typeof summarize>) =>
    x.kernel && x.wake ? { p50: x.kernel.p50 / Math.max(x.wake.p50, 0.1), p99: x.kernel.p99 / Math.max(x.wake.p99, 0.1) } : null;
  const ratios = { atRest: ratio(r.atRest), backToBack: ratio(r.backToBack) };
  for (const [k, v] of Object.entries(ratios)) if (v) console.log(`kernel / long-poll wake, ${k === "atRest" ? "at rest" : "back to back"}: p50 ${v.p50.toFixed(2)}x, p99 ${v.p99.toFixed(2)}x`);
  const met = r.atRest.kernel !== null && r.atRest.missed === 0 && r.atRest.kernel.p99 < GOAL_P99_MS;
  const missed = r.atRest.missed + r.backToBack.missed;
  console.log(
    `goal p99 < ${GOAL_P99_MS} ms (at rest): ${met ? "met" : "NOT met"}${missed ? ` (${missed} writes never reached the kernel within ${BOUND_MS} ms)` : ""}; ` +
      `run took ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(
    new URL("./results/propagation.json", import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), database: api.database, goalP99Ms: GOAL_P99_MS, met, results, ratios, samples: phases, ...(traces.length ? { traces } : {}) }, null, 2)}\n`,
  );
});
