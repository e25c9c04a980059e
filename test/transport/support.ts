// Running transports for the tests: each one a real process (main.ts) driven
// over its control channel as the agent will, plus the loopback pieces around
// them: an echo workload, a relay that records the bytes between two
// transports, and a raw HTTP/2 client that plays an attacker's transport.
import { spawn, type ChildProcess } from "node:child_process";
import { connect as h2connect, constants } from "node:http2";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { TRANSPORT_MAIN } from "../../nodeagent/src/agent/transport-process.ts";
import type { ControlAnswer, ControlRequest, TransportConfig } from "../../nodeagent/src/transport/control-schema.ts";
import { serverNameFor } from "../../nodeagent/src/transport/state.ts";
import { groupAvailable, POST_QUANTUM } from "../../nodeagent/src/transport/tls-policy.ts";
import { skipWithout } from "../support/prerequisites.ts";

/**
 * The transport runs with its defaults here: X25519MLKEM768 only (Node 24's
 * OpenSSL 3.5; Node 22's 3.0 lacks it) and delivery from the source address
 * (IP_TRANSPARENT needs CAP_NET_ADMIN: root on these machines).
 */
export const skipTransport = skipWithout(
  "the transport suites",
  !groupAvailable(POST_QUANTUM)
    ? `this Node's OpenSSL ${process.versions.openssl} has no ${POST_QUANTUM} (run on Node 24)`
    : process.getuid?.() !== 0
      ? "delivery from the source address needs root (IP_TRANSPARENT)"
      : null,
);

export { TRANSPORT_MAIN };

export interface RunningTransport {
  child: ChildProcess;
  inbound: number;
  outbound: number;
  request(r: Omit<ControlRequest, "id"> & Record<string, unknown>): Promise<ControlAnswer>;
  configure(config: TransportConfig): Promise<ControlAnswer>;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

export async function startTransport(args: string[] = []): Promise<RunningTransport> {
  const child = spawn(process.execPath, ["--import", "tsx", TRANSPORT_MAIN, "--inbound", "127.0.0.1:0", "--outbound", "127.0.0.1:0", ...args], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting = new Map<number | null, (a: ControlAnswer) => void>();
  let ready: (v: { inbound: number; outbound: number }) => void;
  const started = new Promise<{ inbound: number; outbound: number }>((r) => (ready = r));
  lines.on("line", (line) => {
    const msg = JSON.parse(line) as ControlAnswer & { ready?: boolean; inbound: number; outbound: number };
    if (msg.ready) return ready(msg);
    waiting.get(msg.id)?.(msg);
    waiting.delete(msg.id);
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const ports = await Promise.race([started, exited.then(() => Promise.reject(new Error("transport exited before it was ready")))]);
  let next = 1;
  const request = (r: Record<string, unknown>) =>
    new Promise<ControlAnswer>((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      child.stdin!.write(`${JSON.stringify({ ...r, id })}\n`);
    });
  return {
    child,
    ...ports,
    request,
    configure: (config) => request({ op: "configure", config }),
    metrics: async () => (await request({ op: "metrics" })).metrics!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** An echo server on `address` that also records who connected (remote address). */
export async function echoWorkload(address: string): Promise<{ server: Server; port: number; peers: string[]; close: () => Promise<void> }> {
  const peers: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
    peers.push(s.remoteAddress!);
    s.on("error", () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    peers,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** What a relay saw on one TCP connection, each way. */
export interface Recorded {
  toServer: Buffer[];
  toClient: Buffer[];
}

/** A TCP relay to `target` on 127.0.0.1 that keeps every byte it carried, per connection and way. */
export async function recordingRelay(target: number): Promise<{ port: number; connections: Recorded[]; close: () => Promise<void> }> {
  const connections: Recorded[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((a) => {
    const b = connect(target, "127.0.0.1");
    const rec: Recorded = { toServer: [], toClient: [] };
    connections.push(rec);
    for (const s of [a, b]) {
      sockets.add(s);
      s.on("error", () => (a.destroy(), b.destroy()));
      s.once("close", () => sockets.delete(s));
    }
    a.on("data", (d: Buffer) => rec.toServer.push(Buffer.from(d)));
    b.on("data", (d: Buffer) => rec.toClient.push(Buffer.from(d)));
    a.pipe(b).pipe(a);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A free port on `address` (bound then released: the steer record is made before the connection). */
async function freePort(address: string): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, address, r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Connects to a transport's outbound listener as the workload at `source`,
 * after telling the transport (as the kernel will) that this connection is
 * for `destination`. Resolves with the socket once connected.
 */
export async function connectVia(t: RunningTransport, source: string, destination: string): Promise<Socket> {
  const localPort = await freePort(source);
  const answer = await t.request({ op: "steer", peer: `${source}:${localPort}`, source, destination });
  if (!answer.ok) throw new Error(`steer refused: ${answer.error}`);
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: t.outbound, localAddress: source, localPort, allowHalfOpen: true });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Sends `payload`, half-closes, and resolves with everything read until the socket closes (and whether it was reset). */
export function exchange(s: Socket, payload: Buffer | string): Promise<{ data: Buffer; error: string | null }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let error: string | null = null;
    s.on("data", (d: Buffer) => got.push(d));
    s.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on("close", () => resolve({ data: Buffer.concat(got), error }));
    s.on("end", () => s.end());
    s.write(payload);
    s.end();
  });
}

/**
 * Plays a peer transport with whatever credentials a test gives it: opens a
 * mutual-TLS HTTP/2 session to an inbound port (on loopback, or `host`)
 * asking for `destinationId`, sends one CONNECT, and says what came back: a
 * status, or the TLS/session error that stopped it. Without `caPem` the
 * server is not checked (an attacker cares only whether it is let in).
 */
export function dialInbound(
  to: number | { host: string; port: number },
  creds: { keyPem: string; chainPem: string },
  opts: { destinationId: string; authority: string; caPem?: string; forwarded?: string; groups?: string; timeoutMs?: number },
): Promise<{ status: number | null; error: string | null }> {
  const { host, port } = typeof to === "number" ? { host: "127.0.0.1", port: to } : to;
  return new Promise((resolve) => {
    const session = h2connect(`https://${host}:${port}`, {
      key: creds.keyPem,
      cert: creds.chainPem,
      ...(opts.caPem === undefined ? { rejectUnauthorized: false } : { ca: opts.caPem, checkServerIdentity: () => undefined }),
      minVersion: "TLSv1.3",
      ecdhCurve: opts.groups ?? "X25519MLKEM768",
      servername: serverNameFor(opts.destinationId),
    });
    let done = false;
    const finish = (r: { status: number | null; error: string | null }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve(r);
    };
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => finish({ status: null, error: "timeout" }), opts.timeoutMs);
    session.on("error", (e: NodeJS.ErrnoException) => finish({ status: null, error: e.code ?? e.message }));
    session.on("close", () => finish({ status: null, error: "closed" }));
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: "CONNECT",
      [constants.HTTP2_HEADER_AUTHORITY]: opts.authority,
      ...(opts.forwarded !== undefined && { forwarded: opts.forwarded }),
    });
    stream.on("response", (h) => finish({ status: Number(h[constants.HTTP2_HEADER_STATUS]), error: null }));
    stream.on("error", (e: NodeJS.ErrnoException) => finish({ status: null, error: e.code ?? e.message }));
  });
}

/** The value of one Prometheus sample (labels written in any order), 0 when absent. */
export function sample(text: string, metric: string, labels: Record<string, string>): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${metric}{`)) continue;
    const body = line.slice(metric.length + 1, line.indexOf("}"));
    const got = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

/**
 * Splits one direction of a TLS connection into records and says whether it
 * is nothing else: each record a known content type, a TLS version and a
 * length within the limit, back to back to the last byte.
 */
export function tlsRecords(bytes: Buffer): { records: number; types: Set<number> } | { notTls: number } {
  let at = 0;
  let records = 0;
  const types = new Set<number>();
  while (at < bytes.length) {
    if (at + 5 > bytes.length) return { notTls: at };
    const type = bytes[at]!;
    const version = bytes.readUInt16BE(at + 1);
    const length = bytes.readUInt16BE(at + 3);
    if (![20, 21, 22, 23].includes(type) || (version !== 0x0301 && version !== 0x0303) || length > 16384 + 256) return { notTls: at };
    types.add(type);
    records++;
    at += 5 + length;
  }
  return at === bytes.length ? { records, types } : { notTls: at };
}
