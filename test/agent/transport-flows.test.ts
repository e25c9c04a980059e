// The transport's stream outcomes become flows (issue #18 item 7): the
// agent's driver drains the real transport process every second and feeds
// the flows pipeline (the collector the kernel's events go through), as
// hook "transport": a carried stream is forwarded (transport-carried), a
// refused one dropped (transport-refused), identities and tenants looked up
// in the ipcache the agent applied, 0 when it holds no prefix for the
// address. The batch the API receives carries them, and the outcomes the
// transport could not keep count as the agent's losses. Loopback only.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Registry } from "prom-client";
import type { Entry } from "@weft/codec";
import type { FlowSample } from "../../nodeagent/src/agent/client.ts";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import type { HeldSvid, WorkloadSvidRef } from "../../nodeagent/src/agent/svid.ts";
import { TransportDriver } from "../../nodeagent/src/agent/transport-driver.ts";
import { SystemClock } from "../../nodeagent/src/flows/clock.ts";
import { FlowCollector } from "../../nodeagent/src/flows/collector.ts";
import { identitiesOf, outcomeEvents } from "../../nodeagent/src/flows/index.ts";
import { FlowMetrics } from "../../nodeagent/src/flows/metrics.ts";
import { FlowUploader } from "../../nodeagent/src/flows/uploader.ts";
import type { OutcomeDrain } from "../../nodeagent/src/transport/control-schema.ts";
import { untilHolds } from "../support/until.ts";
import { flowBatchReceiver } from "./flows-support.ts";
import { mintCa, mintSvid } from "../transport/pki.ts";
import { connectVia, echoWorkload, exchange, skipTransport, startTransport, type RunningTransport } from "../transport/support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const CLIENT = { tenant: "acme", workload: "web", identity: "web", id: "spiffe://acme.test/ns/shop/sa/web", address: "127.0.51.1" };
const SERVER = { id: "spiffe://acme.test/ns/shop/sa/api", address: "127.0.61.1" };
/** The node's applied ipcache: the client as its /32, the server's node block as a /24, a wider block under it that must lose. */
const IPCACHE: Entry<"ipcache">[] = [
  { key: { prefix: "127.0.51.1/32" }, value: { identity: 4101, tenant: 7 } },
  { key: { prefix: "127.0.61.0/24" }, value: { identity: 4202, tenant: 7 } },
  { key: { prefix: "127.0.0.0/8" }, value: { identity: 2, tenant: 0 } },
];

/** One SVID held the way svid.ts holds it. */
function heldSvids(svid: { keyPem: string; chainPem: string }) {
  const chain = svid.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/).filter((p) => p.trim());
  const leaf = new X509Certificate(chain[0]!);
  const refs: WorkloadSvidRef[] = [{ tenant: CLIENT.tenant, identity: CLIENT.identity, workload: CLIENT.workload, spiffeId: CLIENT.id, addresses: [CLIENT.address] }];
  const held: HeldSvid = {
    ref: { tenant: CLIENT.tenant, identity: CLIENT.identity, workload: CLIENT.workload },
    spiffeId: CLIENT.id,
    trustDomain: "acme.test",
    keyDer: createPrivateKey(svid.keyPem).export({ type: "pkcs8", format: "der" }),
    chainDer: chain.map((c) => new X509Certificate(c).raw),
    serial: leaf.serialNumber,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
  };
  return { workloads: () => refs, svidOf: (key: string) => (key === `${CLIENT.tenant}/${CLIENT.workload}` ? held : undefined), subscribe: () => () => undefined };
}

/** A flows pipeline as startFlows builds it, without the kernel: its ring is empty, its batches go to a local server. */
async function flowsPipeline() {
  const { received, client, close: closeReceiver } = await flowBatchReceiver();
  const agentMetrics = new AgentMetrics();
  const metrics = new FlowMetrics(agentMetrics.registry);
  const uploader = new FlowUploader({ send: (b, s) => client.postFlows("n1", b, s), metrics, log: () => undefined });
  const collector = new FlowCollector({
    source: { drain: () => [], stats: () => ({ rateLimited: 0n, ringFull: 0n }) },
    clock: new SystemClock(),
    metrics,
    uploader,
    buffer: 64,
    intervalMs: 60_000,
    log: () => undefined,
  });
  return {
    received,
    collector,
    agentMetrics,
    close: async () => {
      await uploader.close();
      await closeReceiver();
    },
  };
}

describe("the transport's outcomes as flows", () => {
  const ca = mintCa("acme.test");
  let peer: RunningTransport;
  let echo: Awaited<ReturnType<typeof echoWorkload>>;
  let other: Awaited<ReturnType<typeof echoWorkload>>;
  let driver: TransportDriver;
  let flows: Awaited<ReturnType<typeof flowsPipeline>>;
  let applied: Entry<"ipcache">[] | null = null;
  const drains: OutcomeDrain[] = [];
  let startedAt = 0;

  beforeAll(async () => {
    [echo, other] = await Promise.all([echoWorkload(SERVER.address), echoWorkload(SERVER.address)]);
    peer = await startTransport();
    flows = await flowsPipeline();
    const identify = identitiesOf(() => applied);
    driver = new TransportDriver({
      address: "127.0.0.1",
      inboundPort: 0,
      outbound: { address: "127.0.0.1", port: 0 },
      document: async (etag) =>
        etag === '"1"'
          ? { kind: "unchanged" }
          : {
              kind: "document",
              etag: '"1"',
              body: { bundles: [{ trustDomain: "acme.test", caPem: ca.pem }], remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${peer.inbound}` }], allow: [] },
            },
      svids: heldSvids(mintSvid(ca, CLIENT.id)),
      registry: new Registry(),
      outcomes: (d) => {
        drains.push(d);
        flows.collector.handleEvents(outcomeEvents(d.events, identify), d.lost);
      },
      log: () => undefined,
    });
    driver.start();
    startedAt = Date.now();
    await untilHolds("the transport to run configured", () => driver.status().state, (s) => s === "running", 20_000);
    expect(
      await peer.configure({
        workloads: [{ spiffeId: SERVER.id, addresses: [SERVER.address], ...mintSvid(ca, SERVER.id) }],
        bundles: [{ trustDomain: "acme.test", caPem: ca.pem }],
        remotes: [{ address: CLIENT.address, spiffeId: CLIENT.id, node: `127.0.0.1:${driver.ports!.inbound}` }],
        allow: [{ source: CLIENT.id, destination: SERVER.id, ports: [echo.port] }],
      }),
    ).toMatchObject({ ok: true });
  }, 30_000);

  afterAll(async () => {
    await driver?.stop();
    await peer?.stop();
    await flows?.close();
    await Promise.all([echo?.close(), other?.close()]);
  });

  const asRunning = () => ({ outbound: driver.ports!.outbound, request: (r: never) => driver.request(r) }) as unknown as RunningTransport;
  const transportFlows = (): FlowSample[] => flows.collector.last().filter((f) => f.hook === "transport");

  it("feeds a carried stream in as a forwarded flow within a poll, with the ipcache's identities and the stream's time", async () => {
    applied = IPCACHE;
    const before = Date.now();
    const sock = await connectVia(asRunning(), CLIENT.address, `${SERVER.address}:${echo.port}`);
    const sport = sock.localPort!;
    expect((await exchange(sock, "hello")).data.toString()).toBe("hello");
    const [carried] = await untilHolds("a transport flow", transportFlows, (f) => f.length >= 1, 5_000);
    expect(carried).toEqual({
      time: expect.any(String),
      hook: "transport",
      verdict: "forwarded",
      reason: "transport-carried",
      ruleId: 0,
      protocol: 6,
      src: { address: CLIENT.address, port: sport, identity: 4101, tenant: 7 },
      dst: { address: SERVER.address, port: echo.port, identity: 4202, tenant: 7 },
    });
    const at = Date.parse(carried!.time);
    expect(at).toBeGreaterThanOrEqual(before - 5);
    expect(at).toBeLessThanOrEqual(Date.now() + 5);
  });

  it("feeds a refused stream in as a dropped flow with reason transport-refused", async () => {
    const seen = transportFlows().length;
    const r = await exchange(await connectVia(asRunning(), CLIENT.address, `${SERVER.address}:${other.port}`), "refused");
    expect(r.data.length).toBe(0);
    const all = await untilHolds("the refused stream's flow", transportFlows, (f) => f.length > seen, 5_000);
    expect(all.slice(seen)).toEqual([
      expect.objectContaining({
        hook: "transport",
        verdict: "dropped",
        reason: "transport-refused",
        protocol: 6,
        src: expect.objectContaining({ address: CLIENT.address, identity: 4101, tenant: 7 }),
        dst: { address: SERVER.address, port: other.port, identity: 4202, tenant: 7 },
      }),
    ]);
    const text = await flows.agentMetrics.registry.metrics();
    expect(text).toMatch(/^weft_drops_total\{reason="transport-refused"\} 1$/m);
    expect(text).toMatch(/^weft_flows_total\{verdict="forwarded",reason="transport-carried",hook="transport"\} 1$/m);
  });

  it("gives identity 0 to an address no applied prefix holds (nothing applied yet, or the revision dropped it)", async () => {
    applied = null;
    const seen = transportFlows().length;
    expect((await exchange(await connectVia(asRunning(), CLIENT.address, `${SERVER.address}:${echo.port}`), "x")).data.toString()).toBe("x");
    const all = await untilHolds("the third flow", transportFlows, (f) => f.length > seen, 5_000);
    expect(all.at(-1)).toMatchObject({ src: { identity: 0, tenant: 0 }, dst: { identity: 0, tenant: 0 }, reason: "transport-carried" });
    applied = IPCACHE;
  });

  it("drained about once a second, and the transport lost nothing", () => {
    const seconds = (Date.now() - startedAt) / 1000;
    expect(drains.length).toBeGreaterThanOrEqual(3);
    expect(drains.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    expect(drains.every((d) => d.lost === 0)).toBe(true);
  });

  it("ships them to the API: the aggregates and samples of a sealed interval, and the transport's lost outcomes as the agent's", async () => {
    flows.collector.handleEvents([], 3);
    flows.collector.seal();
    const batch = await untilHolds("a batch", () => flows.received, (b) => b.length >= 1, 5_000).then((b) => b[0]!);
    expect(batch.lost).toEqual({ kernel: 0, agent: 3 });
    expect(batch.aggregates).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ srcIdentity: 4101, srcTenant: 7, dstIdentity: 4202, dstTenant: 7, dstPort: echo.port, protocol: 6, verdict: "forwarded", reason: "transport-carried", count: 1, bytes: 10 }),
        expect.objectContaining({ srcIdentity: 4101, dstIdentity: 4202, dstPort: other.port, verdict: "dropped", reason: "transport-refused", count: 1, bytes: 0 }),
      ]),
    );
    expect(batch.flows.filter((f) => f.hook === "transport").map((f) => f.reason).sort()).toEqual(["transport-carried", "transport-carried", "transport-refused"]);
    expect(await flows.agentMetrics.registry.metrics()).toMatch(/^weft_flow_events_lost_total\{cause="agent_buffer"\} 3$/m);
  });
});

vitestDescribe("outcome events", () => {
  const clock = { monotonicNs: () => 5_000_000_000n, nowMs: () => 1_000_000 };
  const base = { direction: "inbound" as const, handshake: false, bytes: { toPeer: 3_000_000_000, fromPeer: 3_000_000_000 }, start: 999_000, end: 999_750 };

  it("dates an outcome by its end on the kernel's clock, caps its bytes at the ABI's u32, and leaves unknown sides 0.0.0.0:0 and unknown", () => {
    const identify = identitiesOf(() => IPCACHE);
    const [e] = outcomeEvents([{ ...base, result: "unknown_ca", handshake: true, source: { spiffeId: CLIENT.id } }], identify, clock);
    expect(e).toEqual({
      timeNs: 5_000_000_000n - 250_000_000n,
      cookie: 0n,
      source: { address: "0.0.0.0", port: 0, identity: 0, tenant: 0 },
      destination: { address: "0.0.0.0", port: 0, identity: 0, tenant: 0 },
      protocol: 6,
      hook: "transport",
      reason: "transport-refused",
      verdict: "drop",
      ruleId: 0,
      originalDestination: null,
      ifindex: 0,
      length: 0xffffffff,
    });
  });

  it("looks addresses up by the longest prefix that holds them", () => {
    const identify = identitiesOf(() => IPCACHE);
    expect(identify("127.0.51.1")).toEqual({ identity: 4101, tenant: 7 });
    expect(identify("127.0.61.77")).toEqual({ identity: 4202, tenant: 7 });
    expect(identify("127.9.9.9")).toEqual({ identity: 2, tenant: 0 });
    expect(identify("198.18.0.1")).toEqual({ identity: 0, tenant: 0 });
  });
});
