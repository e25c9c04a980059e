// Two transport processes on loopback carry a workload's connection over
// mutual TLS: the payload arrives from the source's own address, the bytes
// between the transports are TLS records only, the key exchange is
// X25519MLKEM768, an SVID rotation mid-transfer drops nothing, and with a
// transport gone nothing passes in plaintext.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { createSecureServer } from "node:http2";
import { connect, type AddressInfo } from "node:net";
import type { TransportConfig } from "../../nodeagent/src/transport/control-schema.ts";
import { mintCa, mintSvid, type TestSvid } from "./pki.ts";
import { connectVia, echoWorkload, exchange, recordingRelay, sample, startTransport, tlsRecords, type RunningTransport, skipTransport } from "./support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const CLIENT = { id: "spiffe://a.test/ns/shop/sa/web", address: "127.0.10.1" };
const SERVER = { id: "spiffe://a.test/ns/shop/sa/api", address: "127.0.20.1" };
/** A second workload on A's node: its connections must present its own SVID, not the first one's. */
const BATCH = { id: "spiffe://a.test/ns/shop/sa/batch", address: "127.0.10.2" };
const MARKER = "weft-plaintext-marker-7f3a";

const ca = mintCa("a.test");
/** The trust domain's bundle: one CA, then during the rotation test the old and the next. */
let bundlePem = ca.pem;
let a: RunningTransport;
let b: RunningTransport;
let echo: Awaited<ReturnType<typeof echoWorkload>>;
let relay: Awaited<ReturnType<typeof recordingRelay>>;
let clientSvid: TestSvid = mintSvid(ca, CLIENT.id);
let serverSvid: TestSvid = mintSvid(ca, SERVER.id);
const batchSvid: TestSvid = mintSvid(ca, BATCH.id);

const configA = (): TransportConfig => ({
  workloads: [
    { spiffeId: CLIENT.id, addresses: [CLIENT.address], ...clientSvid },
    { spiffeId: BATCH.id, addresses: [BATCH.address], ...batchSvid },
  ],
  bundles: [{ trustDomain: "a.test", caPem: bundlePem }],
  remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${relay.port}` }],
  allow: [],
});
const configB = (): TransportConfig => ({
  workloads: [{ spiffeId: SERVER.id, addresses: [SERVER.address], ...serverSvid }],
  bundles: [{ trustDomain: "a.test", caPem: bundlePem }],
  remotes: [
    { address: CLIENT.address, spiffeId: CLIENT.id, node: `127.0.0.1:${a.inbound}` },
    { address: BATCH.address, spiffeId: BATCH.id, node: `127.0.0.1:${a.inbound}` },
  ],
  allow: [
    { source: CLIENT.id, destination: SERVER.id, ports: [echo.port] },
    { source: BATCH.id, destination: SERVER.id, ports: [echo.port] },
  ],
});

beforeAll(async () => {
  if (skipTransport) return;
  echo = await echoWorkload(SERVER.address);
  [a, b] = await Promise.all([startTransport(), startTransport()]);
  relay = await recordingRelay(b.inbound);
  expect(await b.configure(configB())).toEqual({ id: expect.any(Number), ok: true });
  expect(await a.configure(configA())).toEqual({ id: expect.any(Number), ok: true });
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([relay?.close(), echo?.close()]);
});

describe("carrying a connection between two transports", () => {
  it("delivers the payload from the source workload's address, with only TLS records on the wire", async () => {
    const payload = `${MARKER} ${randomBytes(32).toString("hex")}`;
    const before = echo.peers.length;
    const { data, error } = await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`), payload);
    expect(error).toBeNull();
    expect(data.toString()).toBe(payload);
    // The original source address, not the node's: the destination's policy sees the real peer.
    expect(echo.peers.slice(before)).toEqual([CLIENT.address]);

    expect(relay.connections.length).toBeGreaterThan(0);
    for (const c of relay.connections) {
      for (const way of [Buffer.concat(c.toServer), Buffer.concat(c.toClient)]) {
        expect(way.includes(MARKER)).toBe(false);
        const parsed = tlsRecords(way);
        expect(parsed).toEqual({ records: expect.any(Number), types: expect.any(Set) });
        if ("types" in parsed) expect(parsed.types.has(23)).toBe(true); // application data: the payload went this way, encrypted
      }
    }
  });

  it("carries only to the ports the pair allows: another port of the same workload is refused at the destination", async () => {
    const other = await echoWorkload(SERVER.address);
    try {
      const before = sample(await a.metrics(), "weft_transport_streams_total", { direction: "outbound", result: "forbidden" });
      const r = await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${other.port}`), MARKER);
      expect(r.data.length).toBe(0);
      expect(other.peers).toEqual([]);
      expect(sample(await a.metrics(), "weft_transport_streams_total", { direction: "outbound", result: "forbidden" })).toBe(before + 1);
    } finally {
      await other.close();
    }
  });

  it("negotiates X25519MLKEM768 and says so in the metrics", async () => {
    const ma = await a.metrics();
    expect(sample(ma, "weft_transport_connections_total", { direction: "outbound", group: "X25519MLKEM768" })).toBeGreaterThanOrEqual(1);
    expect(ma).not.toMatch(/weft_transport_connections_total\{[^}]*group="(?!X25519MLKEM768)/);
    const mb = await b.metrics();
    expect(sample(mb, "weft_transport_connections_total", { direction: "inbound", group: "X25519MLKEM768" })).toBeGreaterThanOrEqual(1);
    expect(sample(mb, "weft_transport_streams_total", { direction: "inbound", result: "carried" })).toBeGreaterThanOrEqual(1);
    expect(sample(mb, "weft_transport_bytes_total", { direction: "inbound", way: "to_peer" })).toBeGreaterThan(0);
  });

  it("pools: many connections of one source share one TLS connection", async () => {
    const before = relay.connections.length;
    const results = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => (await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`), `n${i}`)).data.toString()),
    );
    expect(results).toEqual(Array.from({ length: 8 }, (_, i) => `n${i}`));
    expect(relay.connections.length).toBe(before);
  });

  it("presents each source workload's own SVID: one TLS connection per source identity", async () => {
    // Warm both pools, then count: the receiver believes a source address only from the identity that owns it,
    // so the batch workload's address arriving proves its connection presented the batch SVID.
    await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`), "web");
    const before = relay.connections.length;
    const peersBefore = echo.peers.length;
    const r = await exchange(await connectVia(a, BATCH.address, `${SERVER.address}:${echo.port}`), "batch");
    expect(r.data.toString()).toBe("batch");
    expect(echo.peers.slice(peersBefore)).toEqual([BATCH.address]);
    expect(relay.connections.length).toBe(before + 1);
    const again = await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`), "web again");
    expect(again.data.toString()).toBe("web again");
    expect(relay.connections.length).toBe(before + 1);
  });

  it("keeps carrying on the pooled connection across a configure that changes neither SVIDs nor bundles", async () => {
    const before = relay.connections.length;
    expect((await b.configure({ ...configB(), allow: [...configB().allow, { source: CLIENT.id, destination: "spiffe://a.test/ns/shop/sa/other" }] })).ok).toBe(true);
    expect((await a.configure(configA())).ok).toBe(true);
    const r = await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`), "same session");
    expect(r.data.toString()).toBe("same session");
    expect(relay.connections.length).toBe(before);
  });

  it("rotates the CA and the SVIDs during a long transfer: the transfer completes, new connections use the new certificates", async () => {
    const total = 24 << 20;
    const chunk = randomBytes(64 << 10);
    const s = await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`);
    let received = 0;
    const done = new Promise<{ error: string | null }>((resolve) => {
      let error: string | null = null;
      s.on("data", (d: Buffer) => (received += d.length));
      s.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      s.on("end", () => s.end());
      s.on("close", () => resolve({ error }));
    });
    let sent = 0;
    let rotated = false;
    const relayBefore = relay.connections.length;
    while (sent < total) {
      if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
      sent += chunk.length;
      if (!rotated && received > total / 4) {
        rotated = true;
        // A CA rotation as the API does it: the next CA joins the bundle, then issues the SVIDs.
        const next = mintCa("a.test");
        bundlePem = ca.pem + next.pem;
        clientSvid = mintSvid(next, CLIENT.id);
        serverSvid = mintSvid(next, SERVER.id);
        expect((await b.configure(configB())).ok).toBe(true);
        expect((await a.configure(configA())).ok).toBe(true);
        // A new connection during the transfer goes through a new TLS connection with the new SVIDs.
        const fresh = await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`), "after rotation");
        expect(fresh.data.toString()).toBe("after rotation");
        expect(relay.connections.length).toBe(relayBefore + 1);
      }
    }
    s.end();
    expect(await done).toEqual({ error: null });
    expect(rotated).toBe(true);
    expect(received).toBe(total);
  }, 60_000);
});

describe("the peer transport must be the destination", () => {
  it("refuses a peer that presents another workload's valid SVID, before any byte of the stream", async () => {
    // A rogue node: a real SVID of the same trust domain, answering every CONNECT.
    const rogueSvid = mintSvid(ca, "spiffe://a.test/ns/shop/sa/rogue");
    const streams: string[] = [];
    const rogue = createSecureServer({ key: rogueSvid.keyPem, cert: rogueSvid.chainPem, ca: ca.pem, requestCert: true, minVersion: "TLSv1.3", ecdhCurve: "X25519MLKEM768" }, () => {});
    rogue.on("stream", (stream, headers) => {
      streams.push(String(headers[":authority"]));
      stream.respond({ ":status": 200 });
    });
    await new Promise<void>((r) => rogue.listen(0, "127.0.0.1", r));
    const x = await startTransport();
    try {
      await x.configure({ ...configA(), remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${(rogue.address() as AddressInfo).port}` }] });
      const r = await exchange(await connectVia(x, CLIENT.address, `${SERVER.address}:${echo.port}`), MARKER);
      expect(r.data.length).toBe(0);
      expect(streams).toEqual([]);
      expect(sample(await x.metrics(), "weft_transport_handshake_failures_total", { direction: "outbound", reason: "server_identity" })).toBe(1);
    } finally {
      await x.stop();
      rogue.close();
    }
  });
});

describe("the client's first bytes travel with the CONNECT", () => {
  /**
   * A client's connection through a transport of its own to a peer node that presents the destination's
   * own SVID, reads the stream before it answers, then answers `status`: what the peer saw, what the
   * client got back, and the transport's metrics after.
   */
  async function throughHoldingPeer(status: number) {
    const seen: { data: string; beforeAnswer: boolean }[] = [];
    const peer = createSecureServer({ key: serverSvid.keyPem, cert: serverSvid.chainPem, ca: bundlePem, requestCert: true, minVersion: "TLSv1.3", ecdhCurve: "X25519MLKEM768" });
    peer.on("stream", (stream) => {
      let answered = false;
      stream.on("data", (d: Buffer) => {
        seen.push({ data: d.toString(), beforeAnswer: !answered });
        if (answered) return;
        answered = true;
        stream.respond({ ":status": status }, { endStream: status !== 200 });
        if (status === 200) stream.end(`echo:${d.toString()}`);
      });
      stream.on("error", () => stream.destroy());
    });
    await new Promise<void>((r) => peer.listen(0, "127.0.0.1", r));
    const x = await startTransport();
    try {
      await x.configure({ ...configA(), remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${(peer.address() as AddressInfo).port}` }] });
      const received = await exchange(await connectVia(x, CLIENT.address, `${SERVER.address}:${echo.port}`), MARKER);
      return { seen, received, metrics: await x.metrics() };
    } finally {
      await x.stop();
      peer.close();
    }
  }

  it("sends them before the peer's answer, and carries the answer back", async () => {
    const { seen, received, metrics } = await throughHoldingPeer(200);
    expect(seen).toEqual([{ data: MARKER, beforeAnswer: true }]);
    expect(received.data.toString()).toBe(`echo:${MARKER}`);
    expect(sample(metrics, "weft_transport_streams_total", { direction: "outbound", result: "carried" })).toBe(1);
    expect(sample(metrics, "weft_transport_bytes_total", { direction: "outbound", way: "to_peer" })).toBe(MARKER.length);
  });

  it("a refusal after them closes the client's connection without a byte, and they are not counted as carried", async () => {
    const { seen, received, metrics } = await throughHoldingPeer(403);
    expect(seen.map((s) => s.beforeAnswer)).toEqual([true]);
    expect(received.data.length).toBe(0);
    expect(sample(metrics, "weft_transport_streams_total", { direction: "outbound", result: "forbidden" })).toBe(1);
    expect(sample(metrics, "weft_transport_streams_total", { direction: "outbound", result: "carried" })).toBe(0);
    expect(sample(metrics, "weft_transport_bytes_total", { direction: "outbound", way: "to_peer" })).toBe(0);
  });
});

describe("with a transport gone", () => {
  it("refuses at the outbound listener when the transport is killed, and never delivers around it", async () => {
    const x = await startTransport();
    const peersBefore = echo.peers.length;
    try {
      await x.configure({ ...configA(), remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${b.inbound}` }] });
      const ok = await exchange(await connectVia(x, CLIENT.address, `${SERVER.address}:${echo.port}`), "alive");
      expect(ok.data.toString()).toBe("alive");
      // A long-lived connection open when the process dies is cut, not finished in clear.
      const open = await connectVia(x, CLIENT.address, `${SERVER.address}:${echo.port}`);
      open.write("first");
      await new Promise((r) => open.once("data", r));
      const cut = new Promise<string>((resolve) => {
        open.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        open.on("end", () => resolve("closed"));
        open.on("close", () => resolve("closed"));
      });
      await x.stop();
      expect(["ECONNRESET", "closed"]).toContain(await cut);
      const refused = await new Promise<string>((resolve) => {
        const s = connect({ host: "127.0.0.1", port: x.outbound });
        s.on("connect", () => resolve("connected"));
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      expect(refused).toBe("ECONNREFUSED");
      expect(echo.peers.length - peersBefore).toBe(2);
    } finally {
      await x.stop();
    }
  });

  it("closes a carried connection without a byte when the peer transport is down", async () => {
    const x = await startTransport();
    try {
      // A peer node whose transport does not listen: a port just released.
      const gone = await startTransport();
      const port = gone.inbound;
      await gone.stop();
      await x.configure({ ...configA(), remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${port}` }] });
      const peersBefore = echo.peers.length;
      const r = await exchange(await connectVia(x, CLIENT.address, `${SERVER.address}:${echo.port}`), MARKER);
      expect(r.data.length).toBe(0);
      expect(echo.peers.length).toBe(peersBefore);
      expect(sample(await x.metrics(), "weft_transport_streams_total", { direction: "outbound", result: "transport_failed" })).toBe(1);
    } finally {
      await x.stop();
    }
  });

  it("refuses a connection with no origin record: the listener takes no one's word for where it goes", async () => {
    const r = await exchange(
      await new Promise((resolve) => {
        const s = connect({ host: "127.0.0.1", port: a.outbound, localAddress: CLIENT.address, allowHalfOpen: true }, () => resolve(s));
      }),
      `CONNECT ${SERVER.address}:${echo.port}\r\n\r\n${MARKER}`,
    );
    expect(r.data.length).toBe(0);
    expect(sample(await a.metrics(), "weft_transport_streams_total", { direction: "outbound", result: "no_origin" })).toBeGreaterThanOrEqual(1);
  });
});
