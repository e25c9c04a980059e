// SPDX-License-Identifier: Apache-2.0
/**
 * The agent as a command and a service, without a kernel: the `weft-agent`
 * bin and its join token sources, GET /healthz and /readyz on the metrics
 * port against a scripted API, and the Prometheus names on /metrics.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collectDefaultMetrics, Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { AgentLoop } from "../../nodeagent/src/agent/agent.ts";
import { ApiError, type DatapathAnswer, type DatapathQuery } from "../../nodeagent/src/agent/client.ts";
import { HELP, joinTokenOf, parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import type { DesiredMaps } from "../../nodeagent/src/agent/desired.ts";
import { AgentMetrics, PROCESS_METRICS_PREFIX, type VerdictCount } from "../../nodeagent/src/agent/metrics.ts";
import { MANAGED_MAPS, type MapTargets } from "../../nodeagent/src/apply/index.ts";
import { nodeState } from "./fixtures.ts";
import { full, memoryMaps, MemoryMap, scriptedClient } from "./scripted.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);
const noLog = () => undefined;
const A = nodeState() as unknown as DesiredMaps;
const B = nodeState({ allowPort: 9090 }) as unknown as DesiredMaps;
const TOKEN = "weft_join_0123456789abcdefSECRET";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "weft-agentpkg-"));
  dirs.push(d);
  return d;
}

describe("join token sources", () => {
  const base = ["--api", "http://127.0.0.1:8080", "--name", "n1"];

  it("takes the token from --join-token-file or WEFT_JOIN_TOKEN_FILE, read without the trailing newline, or from WEFT_JOIN_TOKEN", () => {
    const file = join(tempDir(), "token");
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    expect(parseArgs([...base, "--join-token-file", file], {})).toMatchObject({ joinToken: undefined, joinTokenFile: file });
    expect(joinTokenOf(parseArgs([...base, "--join-token-file", file], {}))).toBe(TOKEN);
    expect(joinTokenOf(parseArgs(base, { WEFT_JOIN_TOKEN_FILE: file }))).toBe(TOKEN);
    expect(joinTokenOf(parseArgs(base, { WEFT_JOIN_TOKEN: TOKEN }))).toBe(TOKEN);
    expect(joinTokenOf(parseArgs(base, {}))).toBeUndefined();
  });

  it("reads the file only when asked: a spent token's file may be gone once the node is registered", () => {
    const missing = join(tempDir(), "gone");
    expect(() => parseArgs([...base, "--join-token-file", missing], {})).not.toThrow();
  });

  it("refuses a token given twice", () => {
    const file = join(tempDir(), "token");
    for (const [argv, env] of [
      [["--join-token", TOKEN, "--join-token-file", file], {}],
      [["--join-token", TOKEN], { WEFT_JOIN_TOKEN_FILE: file }],
      [["--join-token-file", file], { WEFT_JOIN_TOKEN: TOKEN }],
    ] as [string[], Record<string, string>][]) {
      expect(() => parseArgs([...base, ...argv], env)).toThrow(UsageError);
      expect(() => parseArgs([...base, ...argv], env)).toThrow(/give the join token once/);
    }
  });

  it.each([
    ["a file that does not exist", (f: string) => `${f}.missing`, /failed to read the join token file .*ENOENT/],
    ["an empty file", (f: string) => (writeFileSync(f, "\n"), f), /is empty/],
    ["a file of two tokens", (f: string) => (writeFileSync(f, "one\ntwo\n"), f), /holds more than one token/],
  ] as const)("says so for %s", (_what, make, why) => {
    const file = join(tempDir(), "token");
    writeFileSync(file, TOKEN);
    expect(() => joinTokenOf({ joinToken: undefined, joinTokenFile: make(file) })).toThrow(why);
  });
});

describe("the weft-agent bin", () => {
  const run = (cmd: string, args: string[], env: Record<string, string> = {}) =>
    spawnSync(cmd, args, { encoding: "utf8", env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 60_000 });

  it("runs through npx from the package's bin with --help, naming every flag and its variable", () => {
    const r = run("npx", ["--no-install", "weft-agent", "--help"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(HELP);
    for (const flag of ["--api", "--join-token-file", "--metrics-port", "--uplink"]) expect(r.stdout).toContain(flag);
    expect(r.stdout).toContain("WEFT_JOIN_TOKEN_FILE");
  });

  it("exits 2 with one line on a bad invocation", () => {
    const r = run(process.execPath, ["bin/weft-agent.mjs", "--api", "http://127.0.0.1:1", "--nmae", "n1"]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^weft-agent: unknown argument "--nmae"/);
  });

  // Port 1 on loopback refuses: registration fails before the kernel is touched.
  const register = (dir: string) => ["--api", "http://127.0.0.1:1", "--name", "n1", "--zone", "z1", "--state-dir", join(dir, "state"), "--pin-dir", join(dir, "pins")];

  it("npm run agent with --join-token-file: neither npm's banner nor the agent's log shows the token", () => {
    const dir = tempDir();
    const file = join(dir, "token");
    writeFileSync(file, TOKEN, { mode: 0o600 });
    const r = run("npm", ["run", "agent", "--", ...register(dir), "--join-token-file", file]);
    expect(r.status).toBe(1);
    // It got as far as spending the token: the registration is what failed.
    expect(r.stderr).toContain("failed to POST");
    expect(r.stdout).toContain("--join-token-file");
    expect(`${r.stdout}${r.stderr}`).not.toContain(TOKEN);
  });

  it("a first start without its token file fails (exit 1) saying which file, before touching the kernel", () => {
    const dir = tempDir();
    const r = run(process.execPath, ["bin/weft-agent.mjs", ...register(dir), "--join-token-file", join(dir, "nope")]);
    expect(r.status).toBe(1);
    const last = JSON.parse(r.stderr.trim().split("\n").at(-1)!) as { level: string; msg: string };
    expect(last).toEqual(expect.objectContaining({ level: "error", msg: `failed to register node n1: failed to read the join token file ${JSON.stringify(join(dir, "nope"))}: ENOENT` }));
  });

  it("warns when the token is on the command line, and never echoes it itself", () => {
    const dir = tempDir();
    const r = run(process.execPath, ["bin/weft-agent.mjs", ...register(dir), "--join-token", TOKEN]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as { level: string; msg: string });
    expect(lines[0]).toMatchObject({ level: "warn", msg: expect.stringMatching(/join token was given on the command line.*--join-token-file/) });
    expect(r.stderr).not.toContain(TOKEN);
  });
});

/** An API whose datapath answers come from the test, one per poll, each held until given. */
function steppedClient() {
  const pending: ((a: DatapathAnswer | Error) => void)[] = [];
  const polls: DatapathQuery[] = [];
  return {
    polls,
    /** Answers the poll in flight (waiting for it to arrive). */
    async answer(a: DatapathAnswer | Error): Promise<void> {
      while (pending.length === 0) await new Promise((r) => setTimeout(r, 2));
      pending.shift()!(a);
    },
    client: {
      datapath(_node: string, q: DatapathQuery = {}): Promise<DatapathAnswer> {
        polls.push({ ...q, signal: undefined });
        return new Promise((resolve, reject) => {
          pending.push((a) => (a instanceof Error ? reject(a) : resolve(a)));
          q.signal?.addEventListener("abort", () => reject(new ApiError("aborted", 0)), { once: true });
        });
      },
      async putStatus() {},
      async nodeWorkloads() {
        return null;
      },
    },
  };
}

/** A loop on a stepped API with /healthz and /readyz served; the clock moves only when the test says. */
async function probedLoop(maps: MapTargets = memoryMaps()) {
  const api = steppedClient();
  let now = 1_000_000;
  const metrics = new AgentMetrics();
  const loop = new AgentLoop({ node: "n1", client: api.client, maps, metrics, waitSeconds: 30, backoff: { initialMs: 1, maxMs: 2 }, clock: () => now, log: noLog });
  metrics.readyWhen(() => loop.readiness());
  metrics.aliveWhen(() => loop.liveness());
  const port = await metrics.listen(0);
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, body: (await res.json()) as { ready?: boolean; alive?: boolean; reasons?: string[] } };
  };
  const abort = new AbortController();
  let running: Promise<void> | null = null;
  return {
    api,
    loop,
    port,
    get,
    start: () => (running = loop.run(abort.signal)),
    advance: (ms: number) => (now += ms),
    /** Waits until the loop sent its next poll (it handled the answer before). */
    polled: async (n: number) => {
      while (api.polls.length < n) await new Promise((r) => setTimeout(r, 2));
    },
    stop: async () => {
      abort.abort();
      await running;
      await metrics.close();
    },
  };
}

describe("GET /readyz: ready when the kernel holds the latest revision fetched", () => {
  it("goes ready with the first apply, unready while a newer revision is refused, ready again when one applies", async () => {
    const p = await probedLoop();
    try {
      p.start();
      expect(await p.get("/readyz")).toEqual({ status: 503, body: { ready: false, reasons: ["no datapath state applied yet"] } });
      await p.api.answer(full(A, 5, HASH_A));
      await p.polled(2);
      expect(await p.get("/readyz")).toEqual({ status: 200, body: { ready: true } });
      // Revision 6 is fetched but malformed: the kernel keeps 5, which is no longer the latest.
      const bad: DatapathAnswer = { kind: "full", etag: `"${HASH_B}"`, body: { revision: 6, hash: HASH_B, maps: { ...B, policy: [{ key: {}, value: {} }] } } };
      await p.api.answer(bad);
      await p.polled(3);
      const unready = await p.get("/readyz");
      expect(unready.status).toBe(503);
      expect(unready.body.reasons![0]).toBe("datapath revision 6 was fetched but the kernel holds revision 5");
      expect(unready.body.reasons!.join("\n")).toMatch(/failed to validate datapath revision 6/);
      await p.api.answer(full(B, 7, HASH_B));
      await p.polled(4);
      expect(await p.get("/readyz")).toEqual({ status: 200, body: { ready: true } });
    } finally {
      await p.stop();
    }
  });

  it("is unready after a 410 until the full state is applied", async () => {
    const p = await probedLoop();
    try {
      p.start();
      await p.api.answer(full(A, 5, HASH_A));
      await p.polled(2);
      await p.api.answer({ kind: "gone" });
      await p.polled(3);
      expect(await p.get("/readyz")).toEqual({ status: 503, body: { ready: false, reasons: ["the API keeps no changes since revision 5: fetching its full state"] } });
      expect(p.api.polls[2]).toMatchObject({ since: null, etag: null });
      await p.api.answer(full(A, 9, HASH_A));
      await p.polled(4);
      expect(await p.get("/readyz")).toEqual({ status: 200, body: { ready: true } });
    } finally {
      await p.stop();
    }
  });

  it("is unready while the kernel refuses the fetched revision", async () => {
    const maps = memoryMaps();
    const p = await probedLoop(maps);
    try {
      p.start();
      await p.api.answer(full(A, 5, HASH_A));
      await p.polled(2);
      const policy = maps.policy as MemoryMap;
      policy.updateBatch = () => {
        throw new Error("failed to update map weft_policy: ENOSPC");
      };
      await p.api.answer(full(B, 6, HASH_B));
      await p.polled(3);
      const r = await p.get("/readyz");
      expect(r.status).toBe(503);
      expect(r.body.reasons).toEqual(["datapath revision 6 was fetched but the kernel holds revision 5", "failed to update map weft_policy: ENOSPC"]);
    } finally {
      await p.stop();
    }
  });
});

describe("GET /healthz: alive while the loop moves", () => {
  it("is alive while starting and within a long poll's bound; dead when a poll outlasts it; alive again when it moves", async () => {
    const p = await probedLoop();
    try {
      expect(await p.get("/healthz")).toEqual({ status: 200, body: { alive: true } });
      p.start();
      await p.api.answer(full(A, 5, HASH_A));
      await p.polled(2);
      // A 30 s long poll has 30 + 10 s of the client's slack + 10 s of grace.
      p.advance(49_000);
      expect(await p.get("/healthz")).toEqual({ status: 200, body: { alive: true } });
      p.advance(2_000);
      expect(await p.get("/healthz")).toEqual({ status: 503, body: { alive: false, reasons: ["the agent loop is stuck waiting for the API's datapath answer: 51 s, bound 50 s"] } });
      // Readiness is another question: the kernel still holds the latest revision.
      expect((await p.get("/readyz")).status).toBe(200);
      await p.api.answer({ kind: "unchanged" });
      await p.polled(3);
      expect(await p.get("/healthz")).toEqual({ status: 200, body: { alive: true } });
    } finally {
      await p.stop();
    }
  });

  it("a failing API: the backoff and each retry have their own bounds (a poll without wait: 0 + 10 + 10 s)", async () => {
    const p = await probedLoop();
    try {
      p.start();
      await p.api.answer(new ApiError("failed to GET /v1/nodes/n1/datapath: ECONNREFUSED", 0));
      await p.polled(2);
      p.advance(15_000);
      expect(await p.get("/healthz")).toEqual({ status: 200, body: { alive: true } });
      p.advance(30_000);
      // The new poll (the first again, wait 0) is bounded by 0 + 10 + 10 s.
      expect((await p.get("/healthz")).body.reasons).toEqual(["the agent loop is stuck waiting for the API's datapath answer: 45 s, bound 20 s"]);
    } finally {
      await p.stop();
    }
  });

  it("is dead once the loop has stopped", async () => {
    const p = await probedLoop();
    p.start();
    await p.api.answer(full(A, 5, HASH_A));
    await p.polled(2);
    const metricsStillUp = p.loop.liveness();
    expect(metricsStillUp.alive).toBe(true);
    await p.stop();
    expect(p.loop.liveness()).toEqual({ alive: false, reasons: ["the agent loop has stopped"] });
  });

  it("answers HEAD like GET, and 404 to other methods and paths", async () => {
    const p = await probedLoop();
    try {
      const status = async (method: string, path: string) => (await fetch(`http://127.0.0.1:${p.port}${path}`, { method })).status;
      expect(await status("HEAD", "/healthz")).toBe(200);
      expect(await status("HEAD", "/readyz")).toBe(503);
      expect(await status("POST", "/healthz")).toBe(404);
      expect(await status("GET", "/healthz/x")).toBe(404);
      expect(await status("GET", "/")).toBe(404);
    } finally {
      await p.stop();
    }
  });
});

describe("/metrics names (Prometheus conventions)", () => {
  const verdicts: VerdictCount[] = [
    { hook: "egress", reason: "policy-allow", packets: 12, bytes: 1500 },
    { hook: "ingress", reason: "default-deny", packets: 3, bytes: 180 },
  ];

  it("exports the datapath's verdict counts as counters ending in _total, read from the map at each scrape", async () => {
    let read = verdicts;
    const m = new AgentMetrics(() => read);
    let text = await m.registry.metrics();
    expect(text).toContain("# TYPE weft_datapath_packets_total counter");
    expect(text).toContain("# TYPE weft_datapath_bytes_total counter");
    expect(text).toMatch(/^weft_datapath_packets_total\{hook="egress",reason="policy-allow"\} 12$/m);
    expect(text).toMatch(/^weft_datapath_bytes_total\{hook="ingress",reason="default-deny"\} 180$/m);
    expect(text).not.toMatch(/^weft_datapath_packets[{ ]/m);
    read = [{ ...verdicts[0]!, packets: 20, bytes: 2600 }];
    text = await m.registry.metrics();
    expect(text).toMatch(/^weft_datapath_packets_total\{hook="egress",reason="policy-allow"\} 20$/m);
    expect(text).toMatch(/^weft_datapath_bytes_total\{hook="egress",reason="policy-allow"\} 2600$/m);
    // A failed map read does not fail the scrape.
    const m2 = new AgentMetrics(() => {
      throw new Error("EPERM");
    });
    expect(await m2.registry.metrics()).toContain("# TYPE weft_datapath_packets_total counter");
    // The status report carries the same numbers.
    const m3 = new AgentMetrics(() => verdicts);
    m3.refreshVerdicts();
    expect(m3.statusCounters()).toMatchObject({ "packets.egress.policy-allow": 12, "packets.ingress.default-deny": 3 });
  });

  it("every counter of the agent's own ends in _total and nothing else does; process metrics are there", async () => {
    const m = new AgentMetrics(() => verdicts);
    m.applied(3, 0.002, Object.fromEntries(MANAGED_MAPS.map((id) => [id, 1])), 6, 0);
    m.apiError();
    const all = await m.registry.getMetricsAsJSON();
    // prom-client's process metrics keep the names its dashboards know (its nodejs_active_handles_total is a gauge).
    const processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics, prefix: PROCESS_METRICS_PREFIX });
    const theirs = new Set((await processMetrics.getMetricsAsJSON()).map((x) => x.name));
    const ours = all.filter((x) => !theirs.has(x.name));
    expect(ours.length).toBeGreaterThan(15);
    const wrong = ours.filter((x) => (String(x.type) === "counter") !== x.name.endsWith("_total")).map((x) => `${x.name} (${x.type})`);
    expect(wrong).toEqual([]);
    const names = all.map((x) => x.name);
    for (const name of ["weft_agent_process_cpu_seconds_total", "weft_agent_process_resident_memory_bytes", "weft_agent_nodejs_eventloop_lag_seconds", "weft_agent_applies_total"]) {
      expect(names).toContain(name);
    }
  });
});
