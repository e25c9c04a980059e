/**
 * Flows end to end on the real kernel with a real agent (startAgent, as
 * agent-e2e.test.ts runs it, on the real API in-process): workloads a and b
 * in network namespaces, b's policy denying a on one port and allowing it
 * on another. A denied connection must show up in the agent's GET /flows
 * with the identities, tenant, reason and rule the API compiled, in
 * weft_drops_total, and in a batch the agent POSTs. The API's flows route
 * is built on another branch: batches go to a real HTTP server of this
 * test (RuntimeOptions.flowsApi), which records them and answers 202.
 * With --flows off the agent writes rate 0 and the kernel emits nothing.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeValue, encodeKey, type Entry } from "@weft/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import type { FlowBatch, FlowSample } from "../../nodeagent/src/agent/client.ts";
import type { AgentConfig } from "../../nodeagent/src/agent/config.ts";
import { startAgent, uninstall, type RunningAgent } from "../../nodeagent/src/agent/runtime.ts";
import { DEFAULT_FLOW_CONFIG } from "../../nodeagent/src/flows/config.ts";
import { bearer, operator, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { Cleanup, makeCgroup, makeNetns, makePinDir, makeVeth, type VethPair, toolsUnavailableReason } from "../support/kernel.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { until } from "../support/until.ts";
import { echoServer, routeWorkload, tcpProbe } from "./netns-traffic.ts";

const unavailable = (): string | null => toolsUnavailableReason([["ip", "-V"]]);

const reason = unavailable();
const quiet = () => undefined;
const W = {
  a: { label: "fa", host: "198.18.26.1", addr: "198.18.26.2" },
  b: { label: "fb", host: "198.18.27.1", addr: "198.18.27.2" },
} as const;
const DENIED_PORT = 8080;
const ALLOWED_PORT = 8081;

describe.skipIf(skipWithout("flows end to end (root, bpf, cgroup2, iproute2)", reason))("flows from the kernel through a real agent", () => {
  const cleanup = new Cleanup();
  const node = uniqueName("node");
  let app: WeftApp;
  let cfg: AgentConfig;
  let agent: RunningAgent | null = null;
  let cgroup: string;
  let pinDir: string;
  const netns = {} as Record<keyof typeof W, string>;
  const veths = {} as Record<keyof typeof W, VethPair>;
  let tenant: string;
  let token: string;
  /** Batches the agent POSTed, with the credential it sent. */
  const received: { authorization: string | undefined; path: string; batch: FlowBatch }[] = [];
  let flowsApi: string;

  const rest = async (path: string, payload: unknown) => {
    const res = await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}${path}`, headers: bearer(token), payload: payload as object });
    expect(res.statusCode, `PUT ${path}: ${res.body}`).toBeLessThan(300);
  };
  const datapath = async (a: RunningAgent) =>
    (await app.inject({ method: "GET", url: `/v1/nodes/${node}/datapath`, headers: bearer(a.registration.credential) })).json() as {
      hash: string;
      maps: { endpoint: Entry<"endpoint">[]; policy: Entry<"policy">[] };
    };
  const converged = (a: RunningAgent) => until("the agent to apply the API's hash", 5_000, async () => {
    const want = await datapath(a);
    return a.loop.applied?.hash === want.hash ? want : undefined;
  });
  const localFlows = async (a: RunningAgent, query = "") => {
    const res = await fetch(`http://127.0.0.1:${a.metricsPort}/flows${query}`);
    return { status: res.status, type: res.headers.get("content-type"), body: (await res.json()) as { flows: FlowSample[] } };
  };
  const metricsText = async (a: RunningAgent) => (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();

  beforeAll(async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "weft-flows-state-"));
    cleanup.add("remove the state dir", () => rmSync(stateDir, { recursive: true, force: true }));
    pinDir = makePinDir(cleanup, "flows");
    cleanup.add("uninstall the agent's pins and links", () => void uninstall({ ...cfg, pinDir }));
    cgroup = makeCgroup(cleanup, "flows");
    for (const [name, w] of Object.entries(W) as [keyof typeof W, (typeof W)[keyof typeof W]][]) {
      netns[name] = makeNetns(cleanup, `flows-${name}`);
      veths[name] = makeVeth(cleanup, w.label, netns[name], `${w.host}/30`, `${w.addr}/30`);
      routeWorkload(netns[name], veths[name].host, w.host);
    }
    await echoServer(cleanup, netns.b, "b", DENIED_PORT);
    await echoServer(cleanup, netns.b, "b", ALLOWED_PORT);

    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({ authorization: req.headers.authorization, path: req.url ?? "", batch: JSON.parse(Buffer.concat(chunks).toString()) as FlowBatch });
        res.writeHead(202, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanup.add("close the flows server", () => new Promise<void>((resolve) => server.close(() => resolve())));
    flowsApi = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    app = await startApi("pglite", { serviceCidr: "198.18.40.0/24", podCidr: "198.18.0.0/19", podCidrNodePrefix: 19 });
    await app.listen({ port: 0, host: "127.0.0.1" });
    cleanup.add("close the API", () => app.close());
    cleanup.add("stop the agent", async () => void (await agent?.stop()));
    ({ tenant, token } = await tenantWithToken(app, ["admin"]));

    const jt = await app.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload: {} });
    expect(jt.statusCode, jt.body).toBe(201);
    const api = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    cfg = { command: "run", api, joinToken: jt.json().token, name: node, zone: "zone-a", cgroup, pinDir, stateDir, metricsPort: 0, hostRouting: true, lbHostTraffic: false, statusInterval: 5, workloadApiSocket: null, flows: DEFAULT_FLOW_CONFIG };
    agent = await startAgent(cfg, { waitSeconds: 5, backoff: { initialMs: 50, maxMs: 400 }, log: quiet, flowsApi });

    for (const id of ["a", "b"]) await rest(`/identities/${id}`, { path: `/ns/flows/${id}` });
    await rest("/workloads/a-1", { identity: "a", node, addresses: [W.a.addr] });
    await rest("/workloads/b-1", { identity: "b", node, addresses: [W.b.addr] });
    await rest("/policies/b-in", {
      subject: { identity: "b" },
      ingress: [
        { peers: [{ identity: "a" }], ports: [{ port: DENIED_PORT, protocol: "tcp" }], action: "deny" },
        { peers: [{ identity: "a" }], ports: [{ port: ALLOWED_PORT, protocol: "tcp" }], action: "allow" },
      ],
    });
    await converged(agent);
    // tc programs on both veths before any traffic (the veth sync follows the apply).
    await until("tc links on both veths", 5_000, () => {
      const links = readdirSync(join(pinDir, "links"));
      return Object.values(veths).every((v) => links.includes(`tcx-${v.hostIfindex}-ingress`) && links.includes(`tcx-${v.hostIfindex}-egress`)) ? true : undefined;
    });
  });
  afterAll(() => cleanup.run());

  it("writes weft_flow_cfg from the flags at start", () => {
    const bytes = agent!.datapath.maps.flow_cfg.lookup(encodeKey("flow_cfg", { index: 0 }));
    expect(decodeValue("flow_cfg", bytes!)).toEqual({ intervalNs: BigInt(1e9 / DEFAULT_FLOW_CONFIG.rate), burst: DEFAULT_FLOW_CONFIG.burst, allowed: true });
  });

  it("a denied connection: in GET /flows with the compiled identities, tenant and rule, in weft_drops_total, and POSTed to the API", async () => {
    const a = agent!;
    const want = await datapath(a);
    const endpoint = (addr: string) => want.maps.endpoint.find((e) => e.key.address === addr)!.value;
    const [ea, eb] = [endpoint(W.a.addr), endpoint(W.b.addr)];
    expect(ea.tenant).toBe(eb.tenant);
    const denyRule = want.maps.policy.find((e) => e.key.localIdentity === eb.identity && e.key.remoteIdentity === ea.identity && e.key.port === DENIED_PORT && e.key.direction === "ingress")!.value;
    expect(denyRule).toMatchObject({ action: "deny" });
    expect(denyRule.ruleId).toBeGreaterThan(0);

    const t0 = Date.now();
    expect(await tcpProbe(netns.a, cgroup, W.b.addr, DENIED_PORT, 1)).toEqual({ timeout: 1 });
    const t1 = Date.now();
    const isDenied = (f: FlowSample) => f.verdict === "dropped" && f.src.address === W.a.addr && f.dst.address === W.b.addr && f.dst.port === DENIED_PORT;
    // Drained within 100 ms; 2 s is the bound to the API, far more than the agent needs.
    const shown = await until("the drop in GET /flows", 2_000, async () => (await localFlows(a)).body.flows.find(isDenied));
    // Host routing ([R10]): the sender's veth program makes both decisions, so the drop is on its ingress hook.
    expect(shown).toEqual({
      time: expect.any(String),
      hook: "ingress",
      verdict: "dropped",
      reason: "policy-deny",
      ruleId: denyRule.ruleId,
      protocol: 6,
      src: { address: W.a.addr, port: expect.any(Number), identity: ea.identity, tenant: ea.tenant },
      dst: { address: W.b.addr, port: DENIED_PORT, identity: eb.identity, tenant: eb.tenant },
    });
    // The kernel's CLOCK_MONOTONIC stamp, converted: within the probe's window (ms rounding either side).
    const time = Date.parse(shown.time);
    expect(time).toBeGreaterThanOrEqual(t0 - 2);
    expect(time).toBeLessThanOrEqual(t1 + 2);

    // The kernel's own count (weft_flow_stats, summed over CPUs) saw at least what the agent shows, and lost nothing.
    const stats = a.datapath.flowStats();
    expect(stats.emitted).toBeGreaterThanOrEqual(BigInt((await localFlows(a)).body.flows.length));
    expect({ rateLimited: stats.rateLimited, ringFull: stats.ringFull }).toEqual({ rateLimited: 0n, ringFull: 0n });
    console.log(`GET /flows?limit=1: ${JSON.stringify((await localFlows(a, "?limit=1")).body)}`);

    const text = await metricsText(a);
    expect(Number(/^weft_drops_total\{reason="policy-deny"\} (\d+)$/m.exec(text)?.[1] ?? 0)).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^weft_flows_total\{verdict="dropped",reason="policy-deny",hook="ingress"\} [1-9]/m);

    // The batch: the same sample, and an aggregate row for it, under the node's credential.
    const posted = await until("the drop in a POSTed batch", 5_000, () => received.find((r) => r.batch.flows.some(isDenied)));
    expect(posted.authorization).toBe(`Bearer ${a.registration.credential}`);
    expect(posted.path).toBe(`/v1/nodes/${node}/flows`);
    expect(posted.batch.flows.find(isDenied)).toEqual(shown);
    const row = posted.batch.aggregates.find((g) => g.verdict === "dropped" && g.dstPort === DENIED_PORT);
    expect(row).toMatchObject({ srcIdentity: ea.identity, srcTenant: ea.tenant, dstIdentity: eb.identity, dstTenant: eb.tenant, protocol: 6, reason: "policy-deny", ruleId: denyRule.ruleId });
    expect(row!.count).toBeGreaterThanOrEqual(1);
    expect(row!.bytes).toBeGreaterThanOrEqual(40 * row!.count);
    expect(posted.batch.lost).toEqual({ kernel: 0, agent: 0 });
  });

  it("an allowed new connection is a forwarded flow (--flow-allowed on); a bad limit is a 400 problem", async () => {
    const a = agent!;
    expect(await tcpProbe(netns.a, cgroup, W.b.addr, ALLOWED_PORT, 1)).toEqual({ b: 1 });
    const allowed = await until("the allowed connection in GET /flows", 2_000, async () =>
      (await localFlows(a)).body.flows.find((f) => f.verdict === "forwarded" && f.reason === "policy-allow" && f.dst.port === ALLOWED_PORT),
    );
    expect(allowed).toMatchObject({ hook: "ingress", src: { address: W.a.addr }, dst: { address: W.b.addr } });
    expect((await localFlows(a, "?limit=1")).body.flows).toHaveLength(1);
    for (const bad of ["0", "-1", "abc", String(DEFAULT_FLOW_CONFIG.buffer + 1)]) {
      const res = await localFlows(a, `?limit=${bad}`);
      expect(res.status, bad).toBe(400);
      expect(res.type).toBe("application/problem+json");
    }
  });

  it("--flows off: rate 0 in weft_flow_cfg, the kernel emits nothing, no GET /flows", async () => {
    await agent!.stop();
    agent = await startAgent({ ...cfg, joinToken: undefined, flows: { ...DEFAULT_FLOW_CONFIG, enabled: false } }, { waitSeconds: 5, log: quiet, flowsApi });
    const a = agent;
    await converged(a);
    expect(decodeValue("flow_cfg", a.datapath.maps.flow_cfg.lookup(encodeKey("flow_cfg", { index: 0 }))!)).toMatchObject({ intervalNs: 0n });
    const before = a.datapath.flowStats();
    expect(await tcpProbe(netns.a, cgroup, W.b.addr, DENIED_PORT, 1)).toEqual({ timeout: 1 });
    expect(a.datapath.flowStats()).toEqual(before);
    expect((await fetch(`http://127.0.0.1:${a.metricsPort}/flows`)).status).toBe(404);
    expect(await metricsText(a)).not.toMatch(/^weft_flows_total/m);
  });
});
