/**
 * The agent's pure parts without a kernel or an API: command line, backoff,
 * the state directory's modes, validation and delta patching of datapath
 * answers, and the loop's decisions (refuse, keep, back off, patch, refetch
 * on 410) against in-memory maps and a scripted API.
 */
import { spawnSync } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeEntries, decodeKeys, encodeEntries, maps as mapSpecs, type Entry } from "@weft/codec";
import { afterEach, describe, expect, it } from "vitest";
import { AgentLoop, REVISION_RECORD_LIMIT } from "../../nodeagent/src/agent/agent.ts";
import { Backoff } from "../../nodeagent/src/agent/backoff.ts";
import { ApiError, type DatapathAnswer, type DatapathQuery, type NodeWorkload, type StatusReport } from "../../nodeagent/src/agent/client.ts";
import { DEFAULT_CGROUP, DEFAULT_STATE_DIR, DEFAULT_WORKLOAD_API_SOCKET, parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import { DEFAULT_FLOW_CONFIG } from "../../nodeagent/src/flows/config.ts";
import { InvalidDatapath, patch, validateDelta, validateFull, type DesiredMaps } from "../../nodeagent/src/agent/desired.ts";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import { inPodCidr, parsePodCidr } from "../../nodeagent/src/agent/pod-cidr.ts";
import { VethReconciler, type Link } from "../../nodeagent/src/agent/veths.ts";
import { loadRegistration, saveRegistration } from "../../nodeagent/src/agent/state.ts";
import { MANAGED_MAPS, type MapTarget, type MapTargets } from "../../nodeagent/src/apply/index.ts";
import { canonical, nodeState, W } from "./fixtures.ts";
import { emptyMaps, full, memoryMaps, MemoryMap, scriptedClient, snapshot } from "./scripted.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);
const HASH_C = "c".repeat(64);
const noLog = () => undefined;

describe("command line", () => {
  const base = ["--api", "http://127.0.0.1:8080/", "--name", "n1"];

  it("reads flags, then the environment, then defaults", () => {
    const cfg = parseArgs([...base, "--zone=z1", "--metrics-port", "0"], { WEFT_JOIN_TOKEN: "jt", WEFT_PIN_DIR: "/sys/fs/bpf/x", WEFT_ZONE: "ignored" });
    expect(cfg).toEqual({
      command: "run",
      api: "http://127.0.0.1:8080",
      apis: ["http://127.0.0.1:8080"],
      joinToken: "jt",
      name: "n1",
      zone: "z1",
      cgroup: DEFAULT_CGROUP,
      pinDir: "/sys/fs/bpf/x",
      stateDir: DEFAULT_STATE_DIR,
      metricsPort: 0,
      hostRouting: true,
      lbHostTraffic: false,
      statusInterval: 5,
      workloadApiSocket: DEFAULT_WORKLOAD_API_SOCKET,
      svidFiles: false,
      flows: DEFAULT_FLOW_CONFIG,
      // The L7 proxy is on by default (it reports off when no haproxy is installed).
      l7: true,
    });
    expect(parseArgs([], { WEFT_API: "https://api.example:1", WEFT_NODE_NAME: "n2" }).name).toBe("n2");
    // The Workload API: on by default at /run/weft/agent.sock; another absolute path, or off.
    expect(parseArgs([...base, "--workload-api-socket", "/tmp/w.sock"], {}).workloadApiSocket).toBe("/tmp/w.sock");
    expect(parseArgs(base, { WEFT_WORKLOAD_API_SOCKET: "off" }).workloadApiSocket).toBeNull();
    expect(() => parseArgs([...base, "--workload-api-socket", "w.sock"], {})).toThrow(/absolute path/);
    // SVID files: off by default; a switch like --lb-host-traffic.
    expect(parseArgs([...base, "--svid-files"], {}).svidFiles).toBe(true);
    expect(parseArgs(base, { WEFT_SVID_FILES: "on" }).svidFiles).toBe(true);
    expect(() => parseArgs([...base, "--svid-files", "yes"], {})).toThrow(/on or off/);
    expect(parseArgs([...base, "--host-routing", "off"], {}).hostRouting).toBe(false);
    expect(parseArgs(base, { WEFT_HOST_ROUTING: "off" }).hostRouting).toBe(false);
    // --lb-host-traffic: a switch (alone, or before another flag, means on), or on|off; off by default.
    expect(parseArgs([...base, "--lb-host-traffic"], {}).lbHostTraffic).toBe(true);
    expect(parseArgs(["--lb-host-traffic", ...base], {})).toMatchObject({ lbHostTraffic: true, name: "n1" });
    expect(parseArgs([...base, "--lb-host-traffic", "off"], { WEFT_LB_HOST_TRAFFIC: "on" }).lbHostTraffic).toBe(false);
    expect(parseArgs([...base, "--lb-host-traffic=on"], {}).lbHostTraffic).toBe(true);
    expect(parseArgs(base, { WEFT_LB_HOST_TRAFFIC: "on" }).lbHostTraffic).toBe(true);
    // --status-interval: seconds between heartbeats, 1..60.
    expect(parseArgs([...base, "--status-interval", "1"], { WEFT_STATUS_INTERVAL: "30" }).statusInterval).toBe(1);
    expect(parseArgs(base, { WEFT_STATUS_INTERVAL: "60" }).statusInterval).toBe(60);
  });

  it("shows the socket LB's host-traffic setting in the status counters and /metrics", async () => {
    const m = new AgentMetrics();
    expect(m.statusCounters()["agent.lb_host_traffic"]).toBeUndefined();
    m.sockConfig(false);
    expect(m.statusCounters()["agent.lb_host_traffic"]).toBe(0);
    m.sockConfig(true);
    expect(m.statusCounters()["agent.lb_host_traffic"]).toBe(1);
    expect(await m.registry.metrics()).toMatch(/^weft_agent_lb_host_traffic 1$/m);
  });

  it("takes the API's CA as a file or as the SHA-256 of the operator CA, for an https API only", () => {
    const https = ["--api", "https://weft.example:8443", "--name", "n1"];
    expect(parseArgs([...https, "--api-ca", "/etc/weft/ca.pem"], {}).apiCa).toBe("/etc/weft/ca.pem");
    expect(parseArgs(https, { WEFT_API_CA: "/etc/weft/ca.pem" }).apiCa).toBe("/etc/weft/ca.pem");
    const pin = "AB:".repeat(31) + "CD";
    expect(parseArgs([...https, "--api-ca-sha256", pin], {}).apiCaSha256).toBe(pin);
    expect(parseArgs(https, { WEFT_API_CA_SHA256: "ab".repeat(32) }).apiCaSha256).toBe("ab".repeat(32));
    expect(parseArgs(https, {})).not.toHaveProperty("apiCa");
    expect(() => parseArgs([...base, "--api-ca", "/etc/weft/ca.pem"], {})).toThrow("--api-ca needs an https:// --api");
    expect(() => parseArgs([...base, "--api-ca-sha256", "ab".repeat(32)], {})).toThrow("--api-ca-sha256 needs an https:// --api");
    expect(() => parseArgs([...https, "--api-ca", "/c.pem", "--api-ca-sha256", "ab".repeat(32)], {})).toThrow("exclude each other");
    for (const bad of ["ab".repeat(31), "zz".repeat(32), "ab".repeat(33)]) {
      expect(() => parseArgs([...https, "--api-ca-sha256", bad], {}), bad).toThrow("--api-ca-sha256 must be 64 hex digits");
    }
  });

  it("cleanup needs only the pin directory", () => {
    expect(parseArgs(["cleanup", "--pin-dir", "/sys/fs/bpf/t"], {})).toMatchObject({ command: "cleanup", pinDir: "/sys/fs/bpf/t" });
  });

  it.each([
    [["--api", "http://x", "--name"], "--name needs a value"],
    [["--bogus", "1"], "unknown argument"],
    [["--name", "n"], "--api (or WEFT_API) is required"],
    [["--api", "ftp://x", "--name", "n"], "must be http(s)"],
    [["--api", "not a url", "--name", "n"], "is not a URL"],
    [[...base, "--metrics-port", "70000"], "is not a port"],
    [[...base, "--lb-host-traffic", "yes"], "--lb-host-traffic \"yes\" is not on or off"],
    [[...base, "--host-routing", "yes"], "is not on or off"],
    [[...base, "--status-interval", "0"], "--status-interval \"0\" is not 1..60 seconds"],
    [[...base, "--status-interval", "61"], "is not 1..60 seconds"],
    [[...base, "--status-interval", "2.5"], "is not 1..60 seconds"],
    [[...base, "--name", "again"], "given twice"],
    [["--api", "http://x", "--name", "--zone", "z"], "--name needs a value"],
  ])("refuses %j", (argv, message) => {
    expect(() => parseArgs(argv, {})).toThrow(UsageError);
    expect(() => parseArgs(argv, {})).toThrow(message);
  });
});

describe("the agent command", () => {
  const agent = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", "nodeagent/src/main.ts", ...args], { encoding: "utf8", env: { PATH: process.env.PATH }, timeout: 30_000 });

  it("exits 2 with one line on a bad invocation", () => {
    const r = agent("--api", "http://127.0.0.1:1", "--nmae", "n1");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^weft-agent: unknown argument "--nmae"/);
  });

  it("cleanup of a pin directory that does not exist succeeds and says so", () => {
    const r = agent("cleanup", "--pin-dir", join(tmpdir(), `weft-none-${process.pid}`));
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ links: 0, maps: 0, removedDir: true });
  });

  it("fails to start (exit 1) without a registration or a join token, before touching the kernel", () => {
    const stateDir = mkdtempSync(join(tmpdir(), "weft-state-"));
    try {
      const r = agent("--api", "http://127.0.0.1:1", "--name", "n1", "--state-dir", stateDir, "--pin-dir", join(stateDir, "pins"));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("failed to register node n1: no registration in");
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe("backoff", () => {
  it("grows by the factor, stays within [initial/2, max), and resets", () => {
    const low = new Backoff({ initialMs: 500, maxMs: 15_000, random: () => 0 });
    expect(Array.from({ length: 8 }, () => low.next())).toEqual([250, 500, 1000, 2000, 4000, 7500, 7500, 7500]);
    const high = new Backoff({ initialMs: 500, maxMs: 15_000, random: () => 0.999999 });
    const delays = Array.from({ length: 12 }, () => high.next());
    expect(Math.max(...delays)).toBeLessThan(15_000);
    expect(delays.at(-1)).toBeGreaterThan(14_999);
    high.reset();
    expect(high.next()).toBeLessThan(500);
  });

  it("jitters: two agents failing together do not retry in step", () => {
    const a = new Backoff();
    const samples = new Set(Array.from({ length: 20 }, () => (a.reset(), a.next())));
    expect(samples.size).toBeGreaterThan(10);
  });
});

describe("state directory", () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps the registration with modes 0700/0600 and tightens looser ones", () => {
    // A directory the agent makes itself, inside one the test removes.
    dir = mkdtempSync(join(tmpdir(), "weft-state-"));
    const state = join(dir, "state");
    expect(loadRegistration(state)).toBeNull();
    const reg = { api: "http://a", node: "n1", credential: "weft_node_secret", registeredAt: "2030-01-01T00:00:00.000Z" };
    saveRegistration(state, reg);
    expect(statSync(state).mode & 0o777).toBe(0o700);
    expect(statSync(join(state, "node.json")).mode & 0o777).toBe(0o600);
    expect(loadRegistration(state)).toEqual(reg);
    chmodSync(join(state, "node.json"), 0o644);
    chmodSync(state, 0o755);
    expect(loadRegistration(state)).toEqual(reg);
    expect(statSync(join(state, "node.json")).mode & 0o777).toBe(0o600);
    saveRegistration(state, reg);
    expect(statSync(state).mode & 0o777).toBe(0o700);
  });

  it("keeps the node's pod CIDR block with the registration; a file without one loads as unknown", () => {
    dir = mkdtempSync(join(tmpdir(), "weft-state-"));
    const reg = { api: "http://a", node: "n1", credential: "weft_node_secret", registeredAt: "2030-01-01T00:00:00.000Z", podCidr: "10.0.3.0/24" };
    saveRegistration(dir, reg);
    expect(loadRegistration(dir)).toEqual(reg);
    writeFileSync(join(dir, "node.json"), JSON.stringify({ api: "http://a", node: "n1", credential: "c", registeredAt: "" }), { mode: 0o600 });
    expect(loadRegistration(dir)!.podCidr).toBeUndefined();
  });

  it("refuses a file that is not a registration, saying what to do", () => {
    dir = mkdtempSync(join(tmpdir(), "weft-state-"));
    writeFileSync(join(dir, "node.json"), "{\"node\":1}", { mode: 0o600 });
    expect(() => loadRegistration(dir)).toThrow(/failed to read registration .*register again/);
  });
});

describe("validation and delta patching", () => {
  const state = nodeState() as unknown as DesiredMaps;

  it("accepts a compiler-shaped answer and refuses malformed ones with the reason", () => {
    expect(validateFull({ revision: 3, hash: HASH_A, maps: state }).maps.policy).toHaveLength(state.policy.length);
    const bad: [unknown, RegExp][] = [
      [null, /not a JSON object/],
      [{ revision: -1, hash: HASH_A, maps: state }, /revision -1/],
      [{ revision: 1, hash: "nothex", maps: state }, /not a sha256/],
      [{ revision: 1, hash: HASH_A }, /no maps object/],
      [{ revision: 1, hash: HASH_A, maps: { ...state, svc: "x" } }, /map svc is not an array/],
      [{ revision: 1, hash: HASH_A, maps: { ...state, backend: [{ key: { backendId: 1 } }] } }, /backend\[0\] is not \{key, value\}/],
      [{ revision: 1, hash: HASH_A, maps: { ...state, backend: [{ key: { backendId: 1 }, value: { address: "300.1.1.1", port: 1 } }] } }, /backend/],
      [{ revision: 1, hash: HASH_A, maps: { ...state, backend: [...state.backend, state.backend[0]] } }, /repeats a key/],
      [{ revision: 1, hash: HASH_A, maps: { ...state, ct: [] } }, /unknown maps ct/],
    ];
    for (const [body, why] of bad) expect(() => validateFull(body), JSON.stringify(body)?.slice(0, 80)).toThrow(why);
    expect(() => validateFull(null)).toThrow(InvalidDatapath);
  });

  it("patches deletes then upserts by encoded key, leaving the base untouched", () => {
    const base = validateFull({ revision: 1, hash: HASH_A, maps: state });
    const movedBackend = { key: state.backend[0]!.key, value: { address: "198.18.30.9", port: 9090 } };
    const delta = validateDelta({
      revision: 2,
      hash: HASH_B,
      upserts: { backend: [movedBackend] },
      // The same key deleted and upserted: the upsert wins (a key moving between owners).
      deletes: { backend: [state.backend[0]!.key, state.backend[1]!.key], ipcache: [state.ipcache[1]!.key] },
    });
    const next = patch(base, delta);
    expect(next.revision).toBe(2);
    expect(next.hash).toBe(HASH_B);
    expect(canonical(next.maps.backend)).toEqual(canonical([movedBackend]));
    expect(canonical(next.maps.ipcache)).toEqual(canonical([state.ipcache[0]!]));
    expect(canonical(next.maps.policy)).toEqual(canonical(state.policy));
    expect(base.maps.backend).toHaveLength(2);
    expect(() => validateDelta({ revision: 2, hash: HASH_B, upserts: {}, deletes: { svc: [{ vip: "x", port: 1, protocol: 6 }] } })).toThrow(/deletes/);
  });
});

async function runScript(script: (DatapathAnswer | Error)[], maps = memoryMaps()) {
  const api = scriptedClient(script);
  const loop = new AgentLoop({ node: "n1", client: api.client, maps, metrics: new AgentMetrics(), backoff: { initialMs: 1, maxMs: 4 }, log: noLog });
  const abort = new AbortController();
  const running = loop.run(abort.signal);
  await api.finished;
  abort.abort();
  await running;
  return { ...api, loop, maps };
}

describe("the loop", () => {
  const A = nodeState() as unknown as DesiredMaps;
  const B = nodeState({ allowPort: 9090 }) as unknown as DesiredMaps;

  it("applies, then long-polls with the ETag and asks deltas from its revision", async () => {
    const r = await runScript([full(A, 5, HASH_A), { kind: "unchanged" }]);
    expect(r.queries[0]).toMatchObject({ etag: null, since: null, waitSeconds: 0 });
    expect(r.queries[1]).toMatchObject({ etag: `"${HASH_A}"`, since: 5, waitSeconds: 30 });
    expect(r.loop.applied?.revision).toBe(5);
    expect(r.statuses.at(-1)).toMatchObject({ appliedRevision: 5, hash: HASH_A, errors: [] });
    expect(r.statuses.at(-1)!.counters["entries.policy"]).toBe(A.policy.length);
  });

  it("refuses a malformed answer: the kernel keeps the last good state, status says why, the next poll waits past it", async () => {
    const maps = memoryMaps();
    const bad: DatapathAnswer = { kind: "full", etag: `"${HASH_B}"`, body: { revision: 6, hash: HASH_B, maps: { ...B, policy: [{ key: { localIdentity: 0 }, value: {} }] } } };
    const r = await runScript([full(A, 5, HASH_A), bad], maps);
    const afterGood = snapshot(maps);
    expect(r.loop.applied?.revision).toBe(5);
    expect(snapshot(r.maps)).toEqual(afterGood);
    expect(r.statuses.at(-1)).toMatchObject({ appliedRevision: 5, hash: HASH_A });
    expect(r.statuses.at(-1)!.errors[0]).toMatch(/failed to validate datapath revision 6/);
    expect(r.statuses.at(-1)!.counters["agent.refused"]).toBe(1);
    // Waits for something newer than the refused answer, asking the full state.
    expect(r.queries.at(-1)).toMatchObject({ etag: `"${HASH_B}"`, since: null });
  });

  it("keeps the kernel while the API is down, backs off, and converges when it returns", async () => {
    const maps = memoryMaps();
    const down = new ApiError("failed to GET /v1/nodes/n1/datapath: ECONNREFUSED", 0);
    const r = await runScript([full(A, 5, HASH_A), down, down, down, full(B, 7, HASH_B)], maps);
    expect(r.loop.applied?.revision).toBe(7);
    expect(r.statuses.at(-1)!.counters["agent.api_errors"]).toBe(3);
    // Between the outage and the new state nothing was deleted: only B's changes were written.
    const writes = r.loop.history.map((h) => h.upserts + h.deletes);
    expect(writes[0]).toBeGreaterThan(0);
    expect(r.loop.history).toHaveLength(2);
  });

  it("patches deltas onto the good state, and answers 410 with a full fetch", async () => {
    const maps = memoryMaps();
    const delta: DatapathAnswer = {
      kind: "delta",
      etag: `"${HASH_B}"`,
      body: { revision: 6, hash: HASH_B, upserts: { policy: B.policy }, deletes: { policy: A.policy.filter((a) => !B.policy.some((b) => JSON.stringify(b.key) === JSON.stringify(a.key))).map((e) => e.key) } },
    };
    const r = await runScript([full(A, 5, HASH_A), delta, { kind: "gone" }, full(B, 9, HASH_C)], maps);
    expect(r.queries[2]).toMatchObject({ since: 6, etag: `"${HASH_B}"` });
    expect(r.queries[3]).toMatchObject({ since: null, etag: null });
    expect(canonical(r.loop.applied!.maps.policy)).toEqual(canonical(B.policy));
    // The 410's full state equals what the delta produced: nothing to write.
    expect(r.loop.history.at(-1)).toMatchObject({ revision: 9, upserts: 0, deletes: 0 });
  });

  it("records every revision step: full, delta from the one before, advance, and a full after a 410", async () => {
    const delta: DatapathAnswer = { kind: "delta", etag: `"${HASH_B}"`, body: { revision: 6, hash: HASH_B, upserts: { policy: B.policy }, deletes: {} } };
    const empty: DatapathAnswer = { kind: "delta", etag: `"${HASH_B}"`, body: { revision: 8, hash: HASH_B, upserts: {}, deletes: {} } };
    const r = await runScript([full(A, 5, HASH_A), delta, empty, { kind: "gone" }, full(B, 9, HASH_C)]);
    expect(r.loop.revisions).toEqual([
      { revision: 5, hash: HASH_A, kind: "full", base: null, after: "start" },
      { revision: 6, hash: HASH_B, kind: "delta", base: 5 },
      { revision: 8, hash: HASH_B, kind: "advance", base: 6 },
      { revision: 9, hash: HASH_C, kind: "full", base: null, after: "gone" },
    ]);
  });

  it("keeps only the latest revision steps", async () => {
    const script: DatapathAnswer[] = [full(A, 1, HASH_A)];
    for (let rev = 2; rev <= REVISION_RECORD_LIMIT + 10; rev++) script.push({ kind: "delta", etag: `"${HASH_A}"`, body: { revision: rev, hash: HASH_A, upserts: {}, deletes: {} } });
    const r = await runScript(script);
    expect(r.loop.revisions).toHaveLength(REVISION_RECORD_LIMIT);
    expect(r.loop.revisions.at(-1)).toMatchObject({ revision: REVISION_RECORD_LIMIT + 10, kind: "advance", base: REVISION_RECORD_LIMIT + 9 });
  });

  it("an empty delta (a long poll's timeout) moves its revision on without writing", async () => {
    const empty: DatapathAnswer = { kind: "delta", etag: `"${HASH_A}"`, body: { revision: 8, hash: HASH_A, upserts: {}, deletes: {} } };
    const r = await runScript([full(A, 5, HASH_A), empty]);
    expect(r.queries[2]).toMatchObject({ since: 8 });
    expect(r.loop.history).toHaveLength(1);
  });

  it("refuses a delta when it holds no full state", async () => {
    const r = await runScript([{ kind: "delta", etag: null, body: { revision: 2, hash: HASH_A, upserts: {}, deletes: {} } }]);
    expect(r.loop.applied).toBeNull();
    expect(r.statuses.at(-1)).toMatchObject({ appliedRevision: 0, hash: "none" });
    expect(r.statuses.at(-1)!.errors[0]).toMatch(/no full state/);
  });
});

describe("pod CIDR block", () => {
  it("parses IPv4 blocks and tells addresses inside from outside", () => {
    const block = parsePodCidr("10.0.3.0/24")!;
    expect(block).toEqual({ cidr: "10.0.3.0/24", base: 10 * 2 ** 24 + 3 * 256, size: 256 });
    expect(inPodCidr(block, "10.0.3.0")).toBe(true);
    expect(inPodCidr(block, "10.0.3.255")).toBe(true);
    expect(inPodCidr(block, "10.0.4.0")).toBe(false);
    expect(inPodCidr(block, "10.0.2.255")).toBe(false);
    expect(inPodCidr(block, "10.0.3.256")).toBe(false);
    expect(inPodCidr(block, "fd00::1")).toBe(false);
    expect(inPodCidr(parsePodCidr("0.0.0.0/0")!, "255.255.255.255")).toBe(true);
    for (const bad of ["10.0.3.1/24", "10.0.3.0", "10.0.3.0/33", "10.0.3/24", "fd00::/64", ""]) expect(parsePodCidr(bad), bad).toBeNull();
  });

  /** The local_veth map in memory, as address -> ifindex. */
  function localVethMap() {
    const entries = new Map<string, number>();
    const target: MapTarget = {
      dump: () => encodeEntries("local_veth", [...entries].map(([address, ifindex]): Entry<"local_veth"> => ({ key: { address }, value: { ifindex } }))),
      updateBatch(keys, values) {
        for (const e of decodeEntries("local_veth", keys, values)) entries.set(e.key.address, e.value.ifindex);
      },
      deleteBatch(keys) {
        const gone = decodeKeys("local_veth", keys);
        for (const k of gone) entries.delete(k.address);
        return gone.length;
      },
    };
    return { target, entries };
  }

  /**
   * Every address routes to "lo", which the reconciler is told is a veth
   * (ifindex 1) whose peer is in another namespace: no kernel needed, and
   * every address would get a host-routing entry but for the block.
   */
  const fakeVeths = () =>
    new VethReconciler(
      { attachVeth: () => undefined, detachVethIndex: () => 1, attachedVethIndexes: () => [] },
      async () => ({ dev: "lo" }),
      async () => new Map([["lo", { ifindex: 1, ifname: "lo", kind: "veth", peerInOtherNetns: true }]]),
    );

  const INSIDE = W.address; // 198.18.20.2
  const OUTSIDE = "198.18.99.2";
  const withOutsider = (): DesiredMaps => {
    const A = nodeState() as unknown as DesiredMaps;
    return { ...A, endpoint: [...A.endpoint, { key: { address: OUTSIDE }, value: { identity: W.identity, tenant: W.tenant } }] };
  };

  async function runWithBlock(opts: { saved?: string | null; answer?: string | null | undefined | Error; hostRouting?: boolean }) {
    const api = scriptedClient([full(withOutsider(), 5, HASH_A)]);
    const asked: string[] = [];
    const client =
      "answer" in opts
        ? {
            ...api.client,
            async node(name: string) {
              asked.push(name);
              if (opts.answer instanceof Error) throw opts.answer;
              return { name, podCidr: opts.answer };
            },
          }
        : api.client;
    const local = localVethMap();
    const metrics = new AgentMetrics();
    const learned: string[] = [];
    const loop = new AgentLoop({
      node: "n1",
      client,
      maps: memoryMaps(),
      metrics,
      veths: fakeVeths(),
      localVeths: local.target,
      hostRouting: opts.hostRouting ?? true,
      podCidr: opts.saved ?? null,
      onPodCidr: (c) => learned.push(c),
      backoff: { initialMs: 1, maxMs: 4 },
      log: noLog,
    });
    const abort = new AbortController();
    const running = loop.run(abort.signal);
    await api.finished;
    abort.abort();
    await running;
    await loop.report();
    return { loop, local, metrics, learned, asked, status: api.statuses.at(-1)! };
  }

  it("gives no host-routing shortcut to a desired address outside the node's block, and reports it", async () => {
    const ifindexLo = 1;
    const r = await runWithBlock({ answer: "198.18.20.0/24" });
    expect(r.asked).toEqual(["n1"]);
    expect(r.loop.podCidrBlock).toBe("198.18.20.0/24");
    // The outsider's address is another node's: this node's BPF must not redirect traffic for it.
    expect(Object.fromEntries(r.local.entries)).toEqual({ [INSIDE]: ifindexLo });
    expect(r.status.errors).toEqual([`workload address ${OUTSIDE} is outside this node's pod CIDR block 198.18.20.0/24: no host routing for it`]);
    expect(r.status.counters).toMatchObject({ "agent.pod_cidr_known": 1, "agent.local_veth_outside_block": 1, "entries.local_veth": 1 });
    // The state is applied all the same: the block limits host routing, not the API's maps.
    expect(r.loop.applied?.revision).toBe(5);
    expect(r.learned).toEqual(["198.18.20.0/24"]);
    const text = await r.metrics.registry.metrics();
    expect(text).toMatch(/^weft_agent_pod_cidr_info\{cidr="198\.18\.20\.0\/24"\} 1$/m);
    expect(text).toMatch(/^weft_agent_local_veth_outside_block 1$/m);
  });

  it("with the block unknown (an API that assigns none) keeps naming every address, and says so", async () => {
    for (const opts of [{}, { answer: undefined }, { answer: new ApiError("failed to GET /v1/nodes/n1: 403", 403) }]) {
      const r = await runWithBlock(opts);
      expect(r.loop.podCidrBlock).toBeNull();
      expect([...r.local.entries.keys()].sort()).toEqual([INSIDE, OUTSIDE]);
      expect(r.status.errors).toEqual([]);
      expect(r.status.counters).toMatchObject({ "agent.pod_cidr_known": 0, "agent.local_veth_outside_block": 0, "entries.local_veth": 2 });
      expect(await r.metrics.registry.metrics()).not.toMatch(/^weft_agent_pod_cidr_info\{/m);
    }
  });

  it("a node without a block yet (null) asks again; a failed read is reported and retried", async () => {
    const none = await runWithBlock({ answer: null });
    expect(none.loop.podCidrBlock).toBeNull();
    expect(none.local.entries.size).toBe(2);
    const down = await runWithBlock({ answer: new ApiError("failed to GET /v1/nodes/n1: ECONNREFUSED", 0) });
    expect(down.status.errors.join()).toMatch(/failed to read the pod CIDR block of node n1: .*ECONNREFUSED/);
    expect(down.local.entries.size).toBe(2);
  });

  it("keeps the block it holds when the API names another, and reports the mismatch", async () => {
    const r = await runWithBlock({ saved: "198.18.20.0/24", answer: "198.18.99.0/24" });
    expect(r.loop.podCidrBlock).toBe("198.18.20.0/24");
    expect([...r.local.entries.keys()]).toEqual([INSIDE]);
    expect(r.status.errors).toContain("the API names pod CIDR block 198.18.99.0/24 for node n1, but the node holds 198.18.20.0/24 (state directory): keeping 198.18.20.0/24");
    expect(r.learned).toEqual([]);
  });

  it("uses the saved block while the API cannot be asked", async () => {
    const r = await runWithBlock({ saved: "198.18.20.0/24", answer: new ApiError("failed to GET /v1/nodes/n1: ECONNREFUSED", 0) });
    expect([...r.local.entries.keys()]).toEqual([INSIDE]);
    expect(r.status.counters["agent.local_veth_outside_block"]).toBe(1);
  });
});

describe("status: unresolved workloads, readiness, the heartbeat, health", () => {
  const SECOND = "198.18.20.3";
  const A = nodeState() as unknown as DesiredMaps;
  const twoWorkloads: DesiredMaps = { ...A, endpoint: [...A.endpoint, { key: { address: SECOND }, value: { identity: W.identity, tenant: W.tenant } }] };
  const listing = (over: Partial<NodeWorkload>[] = []): NodeWorkload[] => [
    { tenant: "acme", name: "web-1", identity: "web", addresses: [W.address] },
    { tenant: "acme", name: "web-2", identity: "web", addresses: [SECOND] },
    ...over.map((o) => ({ tenant: "acme", name: "x", identity: "web", addresses: [], ...o })),
  ];
  const NO_ROUTE = "no route to it in the agent's network namespace";

  /** Veths over a link list the test edits: address a.b.c.N routes to "vN" while that link exists. */
  function fakeLinks(...present: number[]) {
    const links = new Map<string, Link>();
    const add = (n: number) => links.set(`v${n}`, { ifindex: 100 + n, ifname: `v${n}`, kind: "veth", peerInOtherNetns: true });
    present.forEach(add);
    const veths = new VethReconciler(
      { attachVeth: () => undefined, detachVethIndex: () => 1, attachedVethIndexes: () => [] },
      async (address) => {
        const dev = `v${address.split(".")[3]}`;
        return links.has(dev) ? { dev } : { dev: null, reason: NO_ROUTE };
      },
      async () => new Map(links),
    );
    return { add, veths };
  }

  async function start(opts: { workloads: NodeWorkload[] | null; veths?: VethReconciler; statusIntervalMs: number; msPerSecond?: number }) {
    const api = scriptedClient([full(twoWorkloads, 5, HASH_A)]);
    const metrics = new AgentMetrics();
    const loop = new AgentLoop({
      node: "n1",
      client: { ...api.client, nodeWorkloads: async () => opts.workloads },
      maps: memoryMaps(),
      metrics,
      ...(opts.veths ? { veths: opts.veths } : {}),
      statusIntervalMs: opts.statusIntervalMs,
      health: { msPerSecond: opts.msPerSecond ?? 1000 },
      backoff: { initialMs: 1, maxMs: 4 },
      log: noLog,
    });
    metrics.readyWhen(() => loop.readiness());
    const port = await metrics.listen(0);
    const abort = new AbortController();
    const running = loop.run(abort.signal);
    await api.finished;
    const readyz = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      return { status: res.status, body: (await res.json()) as unknown };
    };
    /** Resolves with the first report (from now on, or already sent) that `pick` accepts. */
    const report = async (what: string, pick: (s: StatusReport) => boolean): Promise<StatusReport> => {
      const end = Date.now() + 5_000;
      for (;;) {
        const found = api.statuses.find(pick);
        if (found) return found;
        if (Date.now() > end) throw new Error(`timed out waiting for a report with ${what}; got ${JSON.stringify(api.statuses.at(-1))}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const stop = async () => {
      abort.abort();
      await running;
      await metrics.close();
    };
    return { api, loop, metrics, readyz, report, stop };
  }

  it("reports every desired workload without a veth by tenant, name, address and reason; not ready until its veth appears", async () => {
    const links = fakeLinks(2);
    const r = await start({ workloads: listing(), veths: links.veths, statusIntervalMs: 50 });
    try {
      const first = await r.report("unresolved", (s) => s.unresolved !== undefined);
      expect(first.unresolved).toEqual([{ tenant: "acme", workload: "web-2", address: SECOND, reason: NO_ROUTE }]);
      expect(first.counters["agent.unresolved"]).toBe(1);
      // Applied, and still not converged or ready: the state is only half in force.
      expect(first.appliedRevision).toBe(5);
      expect(await r.readyz()).toEqual({ status: 503, body: { ready: false, reasons: [`unresolved workload acme/web-2 (${SECOND}): ${NO_ROUTE}`] } });
      expect(await r.metrics.registry.metrics()).toMatch(/^weft_agent_unresolved_workloads 1$/m);
      // The veth appears: the heartbeat looks again (no long poll has ended), and the next report is clean.
      links.add(3);
      const seen = r.api.statuses.length;
      await r.report("no unresolved", (s) => r.api.statuses.indexOf(s) >= seen && s.unresolved === undefined);
      expect(r.loop.unresolvedWorkloads).toEqual([]);
      expect(await r.readyz()).toEqual({ status: 200, body: { ready: true } });
    } finally {
      await r.stop();
    }
  });

  it("without the workload listing names an unresolved address by itself, and says why", async () => {
    const r = await start({ workloads: null, veths: fakeLinks(2).veths, statusIntervalMs: 50 });
    try {
      const s = await r.report("unresolved", (x) => x.unresolved !== undefined);
      expect(s.unresolved).toEqual([{ tenant: "", workload: "", address: SECOND, reason: `${NO_ROUTE} (workload unknown: the API does not list this node's workloads)` }]);
      expect((await r.readyz()).status).toBe(503);
    } finally {
      await r.stop();
    }
  });

  it("is not ready before it applied a state, nor while it starts", async () => {
    const metrics = new AgentMetrics();
    const port = await metrics.listen(0);
    try {
      const starting = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect({ status: starting.status, body: await starting.json() }).toEqual({ status: 503, body: { ready: false, reasons: ["the agent is starting"] } });
      const loop = new AgentLoop({ node: "n1", client: scriptedClient([]).client, maps: memoryMaps(), metrics, log: noLog });
      metrics.readyWhen(() => loop.readiness());
      const before = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect({ status: before.status, body: await before.json() }).toEqual({ status: 503, body: { ready: false, reasons: ["no datapath state applied yet"] } });
    } finally {
      await metrics.close();
    }
  });

  it("reports at least every status interval while nothing changes (a heartbeat), and stops with the loop", async () => {
    const r = await start({ workloads: listing(), statusIntervalMs: 40 });
    const before = r.api.statuses.length;
    await new Promise((resolve) => setTimeout(resolve, 400));
    // One answer and a long poll held since: the reports are the heartbeat's (about 400/40).
    const beats = r.api.statuses.length - before;
    expect(beats).toBeGreaterThanOrEqual(5);
    expect(beats).toBeLessThanOrEqual(12);
    expect(r.api.statuses.at(-1)).toMatchObject({ appliedRevision: 5, hash: HASH_A, errors: [] });
    expect(r.api.queries).toHaveLength(2);
    await r.stop();
    const after = r.api.statuses.length;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(r.api.statuses.length).toBe(after);
  });

  it("probes health checks, reports the states with every report and at once on a change; refuses a bad check", async () => {
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const check = { protocol: "tcp", port, intervalSeconds: 1, timeoutSeconds: 1, healthyThreshold: 1, unhealthyThreshold: 2 };
    const workloads = listing([
      { name: "probed", addresses: ["127.0.0.1"], healthCheck: check },
      { name: "bad", addresses: ["127.0.0.1"], healthCheck: { ...check, protocol: "udp" } },
    ]);
    // A heartbeat a minute away: a report with a new state can only be the transition's own. A "second" is 20 ms.
    const r = await start({ workloads, statusIntervalMs: 60_000, msPerSecond: 20 });
    try {
      const healthy = await r.report("healthy", (s) => s.health?.[0]?.state === "healthy");
      expect(healthy.health).toEqual([{ tenant: "acme", workload: "probed", state: "healthy", since: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) }]);
      expect(healthy.errors).toEqual(['workload acme/bad: health check not probed: protocol "udp" is not tcp or http']);
      expect(r.loop.readiness().ready).toBe(false);
      expect(await r.metrics.registry.metrics()).toMatch(/^weft_agent_workload_healthy\{tenant="acme",workload="probed"\} 1$/m);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      const unhealthy = await r.report("unhealthy", (s) => s.health?.[0]?.state === "unhealthy");
      expect(unhealthy.health).toEqual([{ tenant: "acme", workload: "probed", state: "unhealthy", since: expect.any(String) }]);
      expect(await r.metrics.registry.metrics()).toMatch(/^weft_agent_workload_healthy\{tenant="acme",workload="probed"\} 0$/m);
    } finally {
      await r.stop();
      if (server.listening) server.close();
    }
  });
});
