// The node proxy's hop through two transports on loopback (issue 21): the
// L7 proxy hands a connection for a backend on another node to a unix
// socket of its node's transport, which carries it presenting the node
// proxy's own SVID; the receiving transport lets a node proxy reach only the
// workloads its proxy entries name, and delivers from its own node's proxy
// address. What the proxy cannot do: borrow a workload's path to a backend,
// pass a workload's SVID off as a proxy's, or reach what its entries omit.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { mkdtempSync, rmSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import type { TransportConfig } from "../../nodeagent/src/transport/control-schema.ts";
import { proxyTargetPath } from "../../nodeagent/src/transport/proxy-targets.ts";
import { mintCa, mintSvid } from "./pki.ts";
import { dialInbound, echoWorkload, exchange, recordingRelay, sample, skipTransport, startTransport, tlsRecords, type RunningTransport } from "./support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const SERVER = { id: "spiffe://a.test/ns/shop/sa/api", address: "127.0.21.1" };
const CLIENT = { id: "spiffe://a.test/ns/shop/sa/web", address: "127.0.11.1" };
const PROXY_A = { id: "spiffe://a.test/weft/node/node-a/proxy", address: "127.0.31.1" };
/** Node B's own proxy address: where B's transport delivers proxied streams from. */
const PROXY_B_ADDRESS = "127.0.41.1";
const MARKER = "weft-proxy-hop-marker-5c1e";

const ca = mintCa("a.test");
const otherCa = mintCa("b.test");
const serverSvid = mintSvid(ca, SERVER.id);
const clientSvid = mintSvid(ca, CLIENT.id);
const proxySvid = mintSvid(ca, PROXY_A.id);
let dir: string;
let a: RunningTransport;
let b: RunningTransport;
let echo: Awaited<ReturnType<typeof echoWorkload>>;
let relay: Awaited<ReturnType<typeof recordingRelay>>;
let target: string;

const configA = (over: Partial<TransportConfig> = {}): TransportConfig => ({
  workloads: [],
  bundles: [{ trustDomain: "a.test", caPem: ca.pem }],
  remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${relay.port}` }],
  allow: [],
  proxy: { address: PROXY_A.address, targets: [target], allow: [] },
  proxySvids: [{ spiffeId: PROXY_A.id, ...proxySvid }],
  ...over,
});
const configB = (allow: { destination: string; ports?: number[] }[]): TransportConfig => ({
  workloads: [{ spiffeId: SERVER.id, addresses: [SERVER.address], ...serverSvid }],
  bundles: [{ trustDomain: "a.test", caPem: ca.pem }],
  remotes: [{ address: CLIENT.address, spiffeId: CLIENT.id, node: "127.0.0.1:1" }],
  allow: [],
  proxy: { address: PROXY_B_ADDRESS, targets: [], allow },
});

/** Connects to the proxy's socket for the target, as HAProxy does. */
const viaProxySocket = (): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = connect({ path: proxyTargetPath(dir, { address: SERVER.address, port: echo.port }), allowHalfOpen: true });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });

beforeAll(async () => {
  if (skipTransport) return;
  dir = join(mkdtempSync(join(tmpdir(), "weft-proxy-hop-")), "hops");
  echo = await echoWorkload(SERVER.address);
  target = `${SERVER.address}:${echo.port}`;
  [a, b] = await Promise.all([startTransport(["--proxy-dir", dir]), startTransport()]);
  relay = await recordingRelay(b.inbound);
  expect(await b.configure(configB([{ destination: SERVER.id, ports: [echo.port] }]))).toMatchObject({ ok: true });
  expect(await a.configure(configA())).toMatchObject({ ok: true });
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([relay?.close(), echo?.close()]);
  if (dir) rmSync(join(dir, ".."), { recursive: true, force: true });
});

describe("the node proxy's hop through the transports", () => {
  it("carries the proxy's connection as the proxy, in TLS records only, delivered from the receiving node's proxy address", async () => {
    const payload = `${MARKER} ${randomBytes(16).toString("hex")}`;
    const before = echo.peers.length;
    const connectionsBefore = relay.connections.length;
    const { data, error } = await exchange(await viaProxySocket(), payload);
    expect(error).toBeNull();
    expect(data.toString()).toBe(payload);
    expect(echo.peers.slice(before)).toEqual([PROXY_B_ADDRESS]);
    expect(relay.connections.length).toBeGreaterThan(connectionsBefore);
    for (const c of relay.connections.slice(connectionsBefore)) {
      for (const way of [Buffer.concat(c.toServer), Buffer.concat(c.toClient)]) {
        expect(way.includes(MARKER)).toBe(false);
        expect(tlsRecords(way)).toEqual({ records: expect.any(Number), types: expect.any(Set) });
      }
    }
    const metrics = await b.metrics();
    expect(sample(metrics, "weft_transport_streams_total", { direction: "inbound", result: "carried" })).toBeGreaterThan(0);
    const events = await b.request({ op: "events" });
    expect(events.events?.some((e) => e.direction === "inbound" && e.result === "carried" && e.source.spiffeId === PROXY_A.id && e.source.address === PROXY_B_ADDRESS)).toBe(true);
  });

  it("keeps the target's socket for root alone, in a directory only root enters", () => {
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(proxyTargetPath(dir, { address: SERVER.address, port: echo.port })).mode & 0o777).toBe(0o600);
  });

  it("refuses a node proxy the receiving node's proxy entries do not name (another port, no entry)", async () => {
    const forbiddenBefore = sample(await b.metrics(), "weft_transport_streams_total", { direction: "inbound", result: "forbidden" });
    const before = echo.peers.length;
    expect(await b.configure(configB([{ destination: SERVER.id, ports: [echo.port + 1] }]))).toMatchObject({ ok: true });
    const refused = await exchange(await viaProxySocket(), MARKER);
    expect(refused.data.length).toBe(0);
    expect(await b.configure(configB([]))).toMatchObject({ ok: true });
    const none = await exchange(await viaProxySocket(), MARKER);
    expect(none.data.length).toBe(0);
    expect(echo.peers.length).toBe(before);
    expect(sample(await b.metrics(), "weft_transport_streams_total", { direction: "inbound", result: "forbidden" })).toBe(forbiddenBefore + 2);
    expect(await b.configure(configB([{ destination: SERVER.id, ports: [echo.port] }]))).toMatchObject({ ok: true });
  });

  it("lets no workload SVID in on the proxy's entries, and no proxy in on a workload's", async () => {
    // B allows node proxies to SERVER, and no workload pair: a workload's SVID is not a proxy's.
    const asWorkload = await dialInbound(b.inbound, clientSvid, { destinationId: SERVER.id, authority: target, caPem: ca.pem });
    expect(asWorkload).toEqual({ status: 403, error: null });
    // A proxy's SVID signed by another trust domain's CA is refused at the handshake.
    const foreign = mintSvid(otherCa, PROXY_A.id);
    const forged = await dialInbound(b.inbound, foreign, { destinationId: SERVER.id, authority: target, caPem: ca.pem });
    expect(forged.status).toBeNull();
    // The proxy's claimed source is never believed: B delivers from its own proxy address whatever it says.
    const before = echo.peers.length;
    const claimed = await dialInbound(b.inbound, proxySvid, { destinationId: SERVER.id, authority: target, caPem: ca.pem, forwarded: `for=${CLIENT.address}` });
    expect(claimed).toEqual({ status: 200, error: null });
    await new Promise((r) => setTimeout(r, 200));
    expect(echo.peers.slice(before).every((p) => p === PROXY_B_ADDRESS)).toBe(true);
  });

  it("refuses a configuration whose proxy SVID is not a node proxy's SPIFFE ID", async () => {
    const answer = await a.configure(configA({ proxySvids: [{ spiffeId: CLIENT.id, ...clientSvid }] }));
    expect(answer.ok).toBe(false);
    expect(answer.error).toMatch(/not a node proxy's SPIFFE ID/);
  });

  it("closes a target's socket when the configuration drops it, and refuses a target it has no proxy SVID for", async () => {
    const path = proxyTargetPath(dir, { address: SERVER.address, port: echo.port });
    expect(await a.configure(configA({ proxySvids: [] }))).toMatchObject({ ok: true });
    const noSvid = await exchange(await viaProxySocket(), MARKER);
    expect(noSvid.data.length).toBe(0);
    expect(await a.configure(configA({ proxy: { address: PROXY_A.address, targets: [], allow: [] } }))).toMatchObject({ ok: true });
    expect(existsSync(path)).toBe(false);
    expect(await a.configure(configA())).toMatchObject({ ok: true });
    expect(existsSync(path)).toBe(true);
  });
});
