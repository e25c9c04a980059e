// Every socket a transport listens on or opens carries SO_MARK =
// MARK_TRANSPORT, read back from the kernel (ss -e prints each socket's
// fwmark), while the workload's own socket stays unmarked: the receiving tc
// tells transport deliveries from fabric packets by it, and the sending tc
// never steers the transport's own connections back into it. And where a
// steered connection's origin comes from: the accepted socket itself.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import type { Socket } from "node:net";
import { constants } from "@weft/codec";
import { OriginTable, originResolver, steeredOrigin } from "../../nodeagent/src/transport/origins.ts";
import { mintCa, mintSvid } from "./pki.ts";
import { connectVia, echoWorkload, exchange, startTransport, type RunningTransport, skipTransport } from "./support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const CLIENT = { id: "spiffe://m.test/ns/a/sa/client", address: "127.0.41.1" };
const SERVER = { id: "spiffe://m.test/ns/a/sa/server", address: "127.0.42.1" };

interface SocketRow {
  local: string;
  peer: string;
  mark: number;
}

/** Established TCP sockets with `port` at either end, with their marks (0: none). */
function socketsOn(port: number): SocketRow[] {
  const out = execFileSync("ss", ["-Htne", "state", "established", `( sport = :${port} or dport = :${port} )`], { encoding: "utf8" });
  return out
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const [, , local, peer] = l.trim().split(/\s+/);
      const mark = /fwmark:(0x[0-9a-f]+)/.exec(l);
      return { local: local!, peer: peer!, mark: mark ? Number(mark[1]) : 0 };
    });
}

describe("the transport's sockets are marked", () => {
  const ca = mintCa("m.test");
  let a: RunningTransport;
  let b: RunningTransport;
  let echo: Awaited<ReturnType<typeof echoWorkload>>;

  beforeAll(async () => {
    echo = await echoWorkload(SERVER.address);
    [a, b] = await Promise.all([startTransport(), startTransport()]);
    const bundles = [{ trustDomain: "m.test", caPem: ca.pem }];
    expect(
      await b.configure({
        workloads: [{ spiffeId: SERVER.id, addresses: [SERVER.address], ...mintSvid(ca, SERVER.id) }],
        bundles,
        remotes: [{ address: CLIENT.address, spiffeId: CLIENT.id, node: `127.0.0.1:${a.inbound}` }],
        allow: [{ source: CLIENT.id, destination: SERVER.id }],
      }),
    ).toMatchObject({ ok: true });
    expect(
      await a.configure({
        workloads: [{ spiffeId: CLIENT.id, addresses: [CLIENT.address], ...mintSvid(ca, CLIENT.id) }],
        bundles,
        remotes: [{ address: SERVER.address, spiffeId: SERVER.id, node: `127.0.0.1:${b.inbound}` }],
        allow: [],
      }),
    ).toMatchObject({ ok: true });
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await echo?.close();
  });

  it("marks the accepted workload connection, the TLS connection both ends and the delivery; not the workload's socket", async () => {
    let workload: Socket | null = null;
    try {
      workload = await connectVia(a, CLIENT.address, `${SERVER.address}:${echo.port}`);
      // An echoed byte: the stream is up end to end, every socket exists.
      const echoed = new Promise<void>((resolve) => workload!.once("data", () => resolve()));
      workload.write("x");
      await echoed;
      const wl = `${workload.localAddress}:${workload.localPort}`;

      const toOutbound = socketsOn(a.outbound);
      expect(toOutbound).toContainEqual({ local: wl, peer: `127.0.0.1:${a.outbound}`, mark: 0 });
      expect(toOutbound).toContainEqual({ local: `127.0.0.1:${a.outbound}`, peer: wl, mark: constants.MARK_TRANSPORT });

      const tls = socketsOn(b.inbound);
      expect(tls.length).toBeGreaterThanOrEqual(2);
      for (const s of tls) expect(s, `${s.local} -> ${s.peer}`).toMatchObject({ mark: constants.MARK_TRANSPORT });

      // The delivery: from the client's own address (transparent), marked; the echo's accepted end is the workload's, unmarked.
      const delivery = socketsOn(echo.port).filter((s) => s.peer === `${SERVER.address}:${echo.port}`);
      expect(delivery).toEqual([{ local: expect.stringMatching(new RegExp(`^${CLIENT.address.replace(/\./g, "\\.")}:`)), peer: `${SERVER.address}:${echo.port}`, mark: constants.MARK_TRANSPORT }]);
    } finally {
      if (workload) await exchange(workload, "");
    }
  });
});

describe("a steered connection's origin is the accepted socket's own addresses", () => {
  const listener = { address: "127.0.0.1", port: 15001 };
  const sock = (localAddress: string, localPort: number, remoteAddress: string, remotePort = 40000) => ({ localAddress, localPort, remoteAddress, remotePort }) as unknown as Socket;

  it("reads the source from the remote end and the original destination from the local end", () => {
    expect(steeredOrigin(sock("198.18.9.20", 8080, "198.18.1.10"), listener)).toEqual({ source: "198.18.1.10", destination: { address: "198.18.9.20", port: 8080 } });
  });

  it("does not take a connection made to the listener's own address for a steered one", () => {
    expect(steeredOrigin(sock("127.0.0.1", 15001, "198.18.1.10"), listener)).toBeNull();
  });

  it("takes the agent's record only for a connection nobody steered, and only once", () => {
    const table = new OriginTable();
    const resolver = originResolver(() => listener, table);
    // No record: a local process that dials the listener directly gets no origin.
    expect(resolver.resolve(sock("127.0.0.1", 15001, "198.18.1.10"))).toBeNull();
    table.record("198.18.1.10:40000", { source: "198.18.1.10", destination: { address: "198.18.9.20", port: 80 } });
    expect(resolver.resolve(sock("127.0.0.1", 15001, "198.18.1.10"))).toEqual({ source: "198.18.1.10", destination: { address: "198.18.9.20", port: 80 } });
    expect(resolver.resolve(sock("127.0.0.1", 15001, "198.18.1.10"))).toBeNull();
    // A steered socket is never overridden by a record for its peer.
    table.record("198.18.1.10:40000", { source: "198.18.1.66", destination: { address: "198.18.9.66", port: 1 } });
    expect(resolver.resolve(sock("198.18.9.20", 8080, "198.18.1.10"))).toEqual({ source: "198.18.1.10", destination: { address: "198.18.9.20", port: 8080 } });
  });
});
