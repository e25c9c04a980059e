// The agent drives the node's transport (issue #18): it starts the real
// transport process, configures it from the node's transport document (served
// here by a small HTTP server standing in for GET /v1/nodes/{node}/transport,
// whose API route is built on another branch, with ETag and If-None-Match)
// plus the SVIDs it holds, restarts it after a SIGKILL and configures it
// again, re-sends the configuration on an SVID rotation without dropping an
// established stream, follows a changed document, puts its metrics on the
// agent's /metrics and its endpoint in the status report. Loopback only.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Registry } from "prom-client";
import { AgentLoop } from "../../nodeagent/src/agent/agent.ts";
import { ApiClient } from "../../nodeagent/src/agent/client.ts";
import { parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import type { HeldSvid, WorkloadSvidRef } from "../../nodeagent/src/agent/svid.ts";
import type { TransportDocument } from "../../nodeagent/src/agent/transport-config.ts";
import { TransportDriver } from "../../nodeagent/src/agent/transport-driver.ts";
import { until as untilDefined } from "../support/until.ts";
import { mintCa, mintSvid, type TestSvid } from "../transport/pki.ts";
import { connectVia, echoWorkload, exchange, sample, skipTransport, startTransport, type RunningTransport } from "../transport/support.ts";
import { memoryMaps, scriptedClient } from "./scripted.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const CLIENT = { tenant: "acme", workload: "web", identity: "web", id: "spiffe://acme.test/ns/shop/sa/web", address: "127.0.50.1" };
const SERVER = { id: "spiffe://acme.test/ns/shop/sa/api", address: "127.0.60.1" };
/** A tenant with a workload here but no mtls rule: no bundle in the document, so its SVID stays out of the transport. */
const OTHER = { tenant: "globex", workload: "db", identity: "db", id: "spiffe://globex.test/ns/x/sa/db", address: "127.0.50.9" };
const CREDENTIAL = "node-credential-n1";
const noLog = () => undefined;

/** Polls until `cond` holds (support/until.ts). */
const until = (cond: () => boolean | Promise<boolean>, o: { what: string; timeoutMs?: number }) => untilDefined(o.what, o.timeoutMs ?? 10_000, async () => ((await cond()) ? true : undefined));

/** The agent's SVIDs, held as svid.ts holds them, from the test PKI. */
class HeldSvids {
  private readonly refs: WorkloadSvidRef[] = [];
  private readonly held = new Map<string, HeldSvid>();
  private readonly listeners = new Set<() => void>();
  workloads = () => this.refs;
  svidOf = (key: string) => this.held.get(key);
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** Holds `svid` for the workload (a rotation when it held one) and tells the listeners, as SvidManager does. */
  hold(w: { tenant: string; workload: string; identity: string; id: string; address: string }, svid: TestSvid): void {
    const chain = svid.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/).filter((p) => p.trim());
    const leaf = new X509Certificate(chain[0]!);
    if (!this.refs.some((r) => r.workload === w.workload && r.tenant === w.tenant)) this.refs.push({ tenant: w.tenant, identity: w.identity, workload: w.workload, spiffeId: w.id, addresses: [w.address] });
    this.held.set(`${w.tenant}/${w.workload}`, {
      ref: { tenant: w.tenant, identity: w.identity, workload: w.workload },
      spiffeId: w.id,
      trustDomain: new URL(w.id).host,
      keyDer: createPrivateKey(svid.keyPem).export({ type: "pkcs8", format: "der" }),
      chainDer: chain.map((c) => new X509Certificate(c).raw),
      serial: leaf.serialNumber,
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
    });
    for (const l of this.listeners) l();
  }
}

/** GET /v1/nodes/n1/transport as the API answers it: the node credential only, an ETag, 304 on If-None-Match. */
async function documentServer(initial: TransportDocument) {
  let document = initial;
  const seen: { status: number; ifNoneMatch: string | null }[] = [];
  const server: Server = createServer((req, res) => {
    const etag = `"${createHash("sha256").update(JSON.stringify(document)).digest("hex").slice(0, 16)}"`;
    const answer = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      seen.push({ status, ifNoneMatch: (req.headers["if-none-match"] as string | undefined) ?? null });
      res.writeHead(status, headers).end(body === undefined ? undefined : JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${CREDENTIAL}`) return answer(401, { title: "no node credential" }, { "content-type": "application/problem+json" });
    if (req.method !== "GET" || req.url !== "/v1/nodes/n1/transport") return answer(404, { title: "not found" }, { "content-type": "application/problem+json" });
    if (req.headers["if-none-match"] === etag) return answer(304);
    answer(200, document, { "content-type": "application/json", etag });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    set: (d: TransportDocument) => (document = d),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The driver's running transport as test/transport's helpers take one (connectVia records the origin over `steer`). */
const asRunning = (driver: TransportDriver) => ({ outbound: driver.ports!.outbound, request: (r: never) => driver.request(r) }) as unknown as RunningTransport;

/** Reads one echo of `text` on an open connection. */
function echoOnce(s: Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) {
        s.off("data", onData);
        resolve(got);
      }
    };
    s.on("data", onData);
    s.once("close", () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
    s.write(text);
  });
}

describe("the agent's transport driver", () => {
  const ca = mintCa("acme.test");
  const globex = mintCa("globex.test");
  const svids = new HeldSvids();
  const registry = new Registry();
  let peer: RunningTransport;
  let echo: Awaited<ReturnType<typeof echoWorkload>>;
  let api: Awaited<ReturnType<typeof documentServer>>;
  let driver: TransportDriver;
  /** A sample of the driver's own metrics; one without labels is written without braces. */
  const metric = async (name: string, labels: Record<string, string> = {}) => {
    const text = await registry.metrics();
    if (Object.keys(labels).length) return sample(text, name, labels);
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
  };
  const transportMetric = async (name: string, labels: Record<string, string> = {}) => sample(await driver.metricsText(), name, labels);
  let documentFor: () => TransportDocument;

  beforeAll(async () => {
    echo = await echoWorkload(SERVER.address);
    peer = await startTransport();
    svids.hold(CLIENT, mintSvid(ca, CLIENT.id));
    svids.hold(OTHER, mintSvid(globex, OTHER.id));
    documentFor = () => ({
      bundles: [{ trustDomain: "acme.test", caPem: ca.pem }],
      remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${peer.inbound}` }],
      allow: [],
    });
    api = await documentServer(documentFor());
    const client = new ApiClient(api.url, CREDENTIAL);
    driver = new TransportDriver({
      address: "127.0.0.1",
      inboundPort: 0,
      outbound: { address: "127.0.0.1", port: 0 },
      document: (etag) => client.nodeTransport("n1", etag),
      svids,
      registry,
      pollMs: 200,
      backoff: { initialMs: 100, maxMs: 400 },
      log: noLog,
    });
    driver.start();
    await until(() => driver.status().state === "running", { timeoutMs: 20_000, what: "the transport to run configured" });
    // The peer node's transport takes the client's streams once it knows where the client's node is.
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
    await Promise.all([echo?.close(), api?.close()]);
  });

  it("starts the transport and configures it with the document and the SVIDs of the tenants it names", async () => {
    expect(driver.status()).toEqual({ endpoint: `127.0.0.1:${driver.ports!.inbound}`, state: "running" });
    expect(await metric("weft_agent_transport_up")).toBe(1);
    expect(await metric("weft_agent_transport_configures_total", { result: "ok" })).toBeGreaterThanOrEqual(1);
    expect(await metric("weft_agent_transport_configures_total", { result: "refused" })).toBe(0);
    // One workload: globex's SVID is held but globex has no bundle in the document (no mtls rule).
    expect(await transportMetric("weft_transport_configured", { part: "workloads" })).toBe(1);
    expect(await transportMetric("weft_transport_configured", { part: "bundles" })).toBe(1);
    expect(await transportMetric("weft_transport_configured", { part: "remotes" })).toBe(1);
    expect(driver.errors).toEqual([]);
  });

  it("puts the transport's metrics on the agent's /metrics, the negotiated group among them", async () => {
    expect((await exchange(await connectVia(asRunning(driver), CLIENT.address, `${SERVER.address}:${echo.port}`), "hello")).data.toString()).toBe("hello");
    const metrics = new AgentMetrics();
    metrics.append(() => driver.metricsText());
    const port = await metrics.listen(0);
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(sample(text, "weft_transport_connections_total", { direction: "outbound", group: "X25519MLKEM768" })).toBeGreaterThanOrEqual(1);
      expect(sample(text, "weft_transport_configured", { part: "workloads" })).toBe(1);
      expect(text).toMatch(/^weft_agent_applied_revision /m);
    } finally {
      await metrics.close();
    }
  });

  it("re-sends the configuration when an SVID rotates, and an established stream keeps going", async () => {
    const stream = await connectVia(asRunning(driver), CLIENT.address, `${SERVER.address}:${echo.port}`);
    try {
      expect(await echoOnce(stream, "before")).toBe("before");
      const okBefore = await metric("weft_agent_transport_configures_total", { result: "ok" });
      const inboundBefore = sample(await peer.metrics(), "weft_transport_connections_total", { direction: "inbound", group: "X25519MLKEM768" });
      svids.hold(CLIENT, mintSvid(ca, CLIENT.id));
      await until(async () => (await metric("weft_agent_transport_configures_total", { result: "ok" })) > okBefore, { what: "a configure after the rotation" });
      expect(await echoOnce(stream, "after")).toBe("after");
      // A new connection presents the new SVID: a new TLS session to the peer.
      expect((await exchange(await connectVia(asRunning(driver), CLIENT.address, `${SERVER.address}:${echo.port}`), "fresh")).data.toString()).toBe("fresh");
      expect(sample(await peer.metrics(), "weft_transport_connections_total", { direction: "inbound", group: "X25519MLKEM768" })).toBe(inboundBefore + 1);
    } finally {
      await exchange(stream, "");
    }
  });

  it("follows the document: polled with If-None-Match (304 while unchanged), configured again on a new ETag", async () => {
    await until(() => api.seen.some((s) => s.status === 304 && s.ifNoneMatch !== null), { what: "a 304 to a conditional poll" });
    const extra = { address: "127.0.60.2", spiffeId: "spiffe://acme.test/ns/shop/sa/cache", node: `127.0.0.1:${peer.inbound}` };
    api.set({ ...documentFor(), remotes: [...documentFor().remotes, extra] });
    await until(async () => (await transportMetric("weft_transport_configured", { part: "remotes" })) === 2, { what: "the second remote configured" });
    api.set(documentFor());
    await until(async () => (await transportMetric("weft_transport_configured", { part: "remotes" })) === 1, { what: "back to one remote" });
  });

  it("keeps the running configuration when the document is malformed, and says why", async () => {
    api.set({ ...documentFor(), remotes: [{ address: "not-an-address", spiffeId: SERVER.id, node: "x" }] } as TransportDocument);
    await until(() => driver.errors.some((e) => /refused the transport document: \/remotes\/0\/address/.test(e)), { what: "the refusal reported" });
    expect(driver.status().state).toBe("running");
    expect(await transportMetric("weft_transport_configured", { part: "remotes" })).toBe(1);
    api.set(documentFor());
    await until(() => driver.errors.length === 0, { what: "the error cleared by a good document" });
  });

  it("restarts a transport killed with SIGKILL and configures it again", async () => {
    const before = driver.ports!;
    const pid = (driver as unknown as { process: { pid: number } }).process.pid;
    const restarts = await metric("weft_agent_transport_restarts_total");
    process.kill(pid, "SIGKILL");
    await until(() => driver.status().state === "down", { what: "the driver to see the transport gone", timeoutMs: 5_000 });
    expect(await metric("weft_agent_transport_up")).toBe(0);
    await until(() => driver.status().state === "running", { what: "the transport restarted and configured", timeoutMs: 20_000 });
    expect(await metric("weft_agent_transport_restarts_total")).toBe(restarts + 1);
    expect(await metric("weft_agent_transport_up")).toBe(1);
    expect(driver.ports).not.toEqual(before);
    expect(await transportMetric("weft_transport_configured", { part: "workloads" })).toBe(1);
    expect(await transportMetric("weft_transport_configured", { part: "bundles" })).toBe(1);
    // Streams flow again, through the new process.
    expect((await exchange(await connectVia(asRunning(driver), CLIENT.address, `${SERVER.address}:${echo.port}`), "again")).data.toString()).toBe("again");
  }, 30_000);

  it("reports the transport's endpoint and state in the agent's status report", async () => {
    const scripted = scriptedClient([]);
    const loop = new AgentLoop({ node: "n1", client: scripted.client, maps: memoryMaps(), metrics: new AgentMetrics(), transport: driver, log: noLog });
    await loop.report();
    expect(scripted.statuses.at(-1)).toMatchObject({ transport: { endpoint: `127.0.0.1:${driver.ports!.inbound}`, state: "running" } });
    const without = new AgentLoop({ node: "n1", client: scripted.client, maps: memoryMaps(), metrics: new AgentMetrics(), log: noLog });
    await without.report();
    expect(scripted.statuses.at(-1)).toMatchObject({ transport: { endpoint: null, state: "off" } });
  });
});

vitestDescribe("--transport and --transport-address", () => {
  const base = ["--api", "http://127.0.0.1:1", "--name", "n1"];
  const root = process.getuid?.() === 0;

  it("is off without an address on the fabric, whoever runs the agent: nothing to start", () => {
    expect(parseArgs(base, {}).transport).toBeUndefined();
    expect(parseArgs([...base, "--uplink", "eth0", "--transport", "off"], {}).transport).toBeUndefined();
  });

  it("is on by default as root with an uplink or an address", () => {
    expect(parseArgs([...base, "--uplink", "eth0"], {}).transport ?? false).toBe(root);
    expect(parseArgs([...base, "--transport-address", "198.18.0.10"], {})).toMatchObject({ transportAddress: "198.18.0.10", ...(root ? { transport: true } : {}) });
    expect(parseArgs([...base, "--transport", "on"], { WEFT_TRANSPORT_ADDRESS: "198.18.0.11" })).toMatchObject({ transport: true, transportAddress: "198.18.0.11" });
  });

  it("refuses what cannot run", () => {
    expect(() => parseArgs([...base, "--transport", "on"], {})).toThrow(UsageError);
    expect(() => parseArgs([...base, "--transport", "yes", "--uplink", "eth0"], {})).toThrow(/--transport "yes" is not on or off/);
    expect(() => parseArgs([...base, "--transport-address", "198.18.0.300"], {})).toThrow(/not an IPv4 address/);
    expect(() => parseArgs([...base, "--transport-address", "fab0"], {})).toThrow(UsageError);
  });
});
