// The transport's stream outcomes, drained with the `events` control op (the
// agent turns them into flow events): a carried stream on both transports
// with its addresses, identities and bytes; a refused one with its reason;
// a refused handshake; and past the buffer's bound the outcomes dropped are
// counted, not kept.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { connect } from "node:net";
import type { TransportConfig, TransportOutcome } from "../../nodeagent/src/transport/control-schema.ts";
import { OUTCOMES_MAX, OutcomeBuffer } from "../../nodeagent/src/transport/outcomes.ts";
import { untilHolds } from "../support/until.ts";
import { mintCa, mintSvid } from "./pki.ts";
import { connectVia, dialInbound, echoWorkload, exchange, startTransport, type RunningTransport, skipTransport } from "./support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const CLIENT = { id: "spiffe://a.test/ns/shop/sa/web", address: "127.0.12.1" };
const SERVER = { id: "spiffe://a.test/ns/shop/sa/api", address: "127.0.22.1" };

const ca = mintCa("a.test");
const clientSvid = mintSvid(ca, CLIENT.id);
const serverSvid = mintSvid(ca, SERVER.id);
let a: RunningTransport;
let b: RunningTransport;
let echo: Awaited<ReturnType<typeof echoWorkload>>;
let closed: Awaited<ReturnType<typeof echoWorkload>>;

const configA = (): TransportConfig => ({
  workloads: [{ spiffeId: CLIENT.id, addresses: [CLIENT.address], ...clientSvid }],
  bundles: [{ trustDomain: "a.test", caPem: ca.pem }],
  remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${b.inbound}` }],
  allow: [],
});
const configB = (): TransportConfig => ({
  workloads: [{ spiffeId: SERVER.id, addresses: [SERVER.address], ...serverSvid }],
  bundles: [{ trustDomain: "a.test", caPem: ca.pem }],
  remotes: [{ address: CLIENT.address, spiffeId: CLIENT.id, node: `127.0.0.1:${a.inbound}` }],
  allow: [{ source: CLIENT.id, destination: SERVER.id, ports: [echo.port] }],
});

/** One `events` drain. */
async function drain(t: RunningTransport): Promise<{ events: TransportOutcome[]; lost: number }> {
  const answer = await t.request({ op: "events" });
  expect(answer.ok).toBe(true);
  return { events: answer.events!, lost: answer.lost! };
}

/** Drains until `want` outcomes came (a carried stream's ends when both sides closed, a moment after the client saw it). */
async function drainUntil(t: RunningTransport, want: number): Promise<TransportOutcome[]> {
  const got: TransportOutcome[] = [];
  await untilHolds(`${want} outcomes`, async () => (got.push(...(await drain(t)).events), got), (g) => g.length >= want, 5_000, 50);
  return got;
}

beforeAll(async () => {
  if (skipTransport) return;
  [echo, closed] = await Promise.all([echoWorkload(SERVER.address), echoWorkload(SERVER.address)]);
  [a, b] = await Promise.all([startTransport(), startTransport()]);
  expect((await b.configure(configB())).ok).toBe(true);
  expect((await a.configure(configA())).ok).toBe(true);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([echo?.close(), closed?.close()]);
});

describe("the events op", () => {
  it("answers nothing, nothing lost, before any stream", async () => {
    const x = await startTransport();
    try {
      expect(await drain(x)).toEqual({ events: [], lost: 0 });
    } finally {
      await x.stop();
    }
  });

  it("reports a carried stream on both transports: addresses, SPIFFE IDs, bytes each way, start before end", async () => {
    await Promise.all([drain(a), drain(b)]);
    const before = Date.now();
    const sock = await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`);
    const clientPort = sock.localPort!;
    const { data } = await exchange(sock, "twelve bytes");
    expect(data.toString()).toBe("twelve bytes");
    const [out] = await drainUntil(a, 1);
    expect(out).toEqual({
      direction: "outbound",
      handshake: false,
      result: "carried",
      source: { address: CLIENT.address, port: clientPort, spiffeId: CLIENT.id },
      destination: { address: SERVER.address, port: echo.port },
      bytes: { toPeer: 12, fromPeer: 12 },
      start: expect.any(Number),
      end: expect.any(Number),
    });
    expect(out!.start).toBeGreaterThanOrEqual(before);
    expect(out!.end).toBeGreaterThanOrEqual(out!.start);
    expect(out!.end).toBeLessThanOrEqual(Date.now());
    const [into] = await drainUntil(b, 1);
    // Inbound the source port never crosses (HBONE names the address only); its address is the one the peer proved.
    expect(into).toEqual({
      direction: "inbound",
      handshake: false,
      result: "carried",
      source: { address: CLIENT.address, spiffeId: CLIENT.id },
      destination: { address: SERVER.address, port: echo.port },
      bytes: { toPeer: 12, fromPeer: 12 },
      start: expect.any(Number),
      end: expect.any(Number),
    });
    // Drained once: a second drain has none of them.
    expect((await drain(a)).events).toEqual([]);
  });

  it("reports a stream to a port the pair does not allow as refused (forbidden) on both sides, with no bytes", async () => {
    await Promise.all([drain(a), drain(b)]);
    const r = await exchange(await connectVia(a, CLIENT.address, `${SERVER.address}:${closed.port}`), "never delivered");
    expect(r.data.length).toBe(0);
    const [out] = await drainUntil(a, 1);
    expect(out).toMatchObject({
      direction: "outbound",
      handshake: false,
      result: "forbidden",
      source: { address: CLIENT.address, spiffeId: CLIENT.id },
      destination: { address: SERVER.address, port: closed.port },
      bytes: { toPeer: 0, fromPeer: 0 },
    });
    const [into] = await drainUntil(b, 1);
    expect(into).toMatchObject({
      direction: "inbound",
      handshake: false,
      result: "forbidden",
      source: { spiffeId: CLIENT.id },
      destination: { address: SERVER.address, port: closed.port },
      bytes: { toPeer: 0, fromPeer: 0 },
    });
    expect(closed.peers).toEqual([]);
  });

  it("reports a refused handshake as an outcome without a stream, naming the peer's socket and the reason", async () => {
    await drain(b);
    const rogue = mintCa("a.test");
    const r = await dialInbound(b.inbound, mintSvid(rogue, CLIENT.id), { destinationId: SERVER.id, authority: `${SERVER.address}:${echo.port}`, caPem: ca.pem });
    expect(r.status).toBeNull();
    const [refused] = await drainUntil(b, 1);
    expect(refused).toMatchObject({ direction: "inbound", handshake: true, source: { address: "127.0.0.1" }, destination: { address: "127.0.0.1", port: b.inbound } });
    expect(["unknown_ca", "untrusted_chain"]).toContain(refused!.result);
    expect(refused!.source.spiffeId).toBeUndefined();
  });

  it("keeps at most its bound and counts the outcomes past it as lost", async () => {
    const x = await startTransport();
    try {
      const n = OUTCOMES_MAX + 25;
      // Connections with no origin record: each refused at once (no_origin), each an outcome.
      for (let sent = 0; sent < n; sent += 200) {
        await Promise.all(
          Array.from({ length: Math.min(200, n - sent) }, () => new Promise<void>((resolve) => {
            const s = connect({ host: "127.0.0.1", port: x.outbound });
            s.on("error", () => resolve());
            s.on("close", () => resolve());
          })),
        );
      }
      const counted = await untilHolds("every connection refused", async () => (await x.metrics()).match(/weft_transport_streams_total\{direction="outbound",result="no_origin"\} (\d+)/)?.[1], (v) => Number(v) === n, 10_000, 50);
      expect(Number(counted)).toBe(n);
      const d = await drain(x);
      expect(d.events).toHaveLength(OUTCOMES_MAX);
      expect(d.lost).toBe(25);
      expect(d.events.every((e) => e.result === "no_origin" && e.direction === "outbound" && e.source.address === "127.0.0.1")).toBe(true);
      expect(await drain(x)).toEqual({ events: [], lost: 0 });
    } finally {
      await x.stop();
    }
  });
});

vitestDescribe("the outcome buffer", () => {
  it("keeps the first `capacity`, drops and counts the rest until drained, then starts over", () => {
    let now = 1_000;
    const buf = new OutcomeBuffer(2, () => now);
    const one = (port: number) => ({ direction: "outbound" as const, handshake: false, result: "no_origin" as const, source: { address: "198.18.0.1", port }, bytes: { toPeer: 0, fromPeer: 0 }, start: 900 });
    for (const p of [1, 2, 3, 4]) buf.record(one(p));
    expect(buf.drain()).toEqual({ events: [{ ...one(1), end: 1_000 }, { ...one(2), end: 1_000 }], lost: 2 });
    now = 800; // a wall clock stepped back: end never before start
    buf.record(one(5));
    expect(buf.drain()).toEqual({ events: [{ ...one(5), end: 900 }], lost: 0 });
  });
});
