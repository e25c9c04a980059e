/**
 * What test/cluster/transport.test.ts needs around bench/support/cluster.ts
 * to prove issue #18 on the simulated cluster: packet captures on the fabric
 * and in workloads (tcpdump, read back as pcap), TCP programs in workloads
 * that carry a marker or a long transfer, a rogue namespace on the fabric
 * that wears a workload's address, an attacker's HTTP/2 client dialling a
 * node's transport with whatever SVID it holds, and the agent's transport
 * process found among the agent's own descendants.
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatIPv4, parseIPv4 } from "@weft/codec";
import type { BenchCleanup } from "../../bench/support/cleanup.ts";
import type { Cluster } from "../../bench/support/cluster.ts";
import { childPids, commandOf, ipBatch, makeNetns, startDaemon, type Daemon } from "../../bench/support/netns.ts";
import { dialInbound } from "../transport/support.ts";
import { commandUnavailableReason } from "./prerequisites.ts";

/** The transport's inbound port on every node (weft_abi.h TRANSPORT_INBOUND_PORT). */
export const TRANSPORT_INBOUND_PORT = 15008;

export const tcpdumpUnavailableReason = (): string | null => commandUnavailableReason("tcpdump", ["--version"], "apt-get install tcpdump");

/** A marker no packet could carry by chance: what a capture must (not) show. */
export const marker = (label: string): string => `weft-marker-${label}-${randomBytes(12).toString("hex")}`;

// ---------------------------------------------------------------- captures

/** One IPv4 TCP segment read back from a capture. */
export interface TcpSegment {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq: number;
  /** TCP flags byte (SYN 0x02, ACK 0x10, RST 0x04, FIN 0x01). */
  flags: number;
  payload: Buffer;
}

export const TCP_SYN = 0x02;

/**
 * Reads a classic pcap file (either byte order, micro- or nanosecond stamps)
 * of Ethernet frames: its IPv4 TCP segments, in order. Anything else
 * (ARP, IPv6, UDP, truncated frames) is skipped.
 */
export function tcpSegments(pcap: Buffer): TcpSegment[] {
  if (pcap.length < 24) return [];
  const magic = pcap.readUInt32LE(0);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!little && pcap.readUInt32BE(0) !== 0xa1b2c3d4 && pcap.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`not a pcap file (magic ${magic.toString(16)})`);
  const u32 = (at: number) => (little ? pcap.readUInt32LE(at) : pcap.readUInt32BE(at));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType}: only Ethernet (1) is read`);
  const out: TcpSegment[] = [];
  for (let at = 24; at + 16 <= pcap.length; ) {
    const captured = u32(at + 8);
    const frame = pcap.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    if (frame.length < 14 + 20) continue;
    let l3 = 14;
    let etherType = frame.readUInt16BE(12);
    if (etherType === 0x8100 && frame.length >= 18) [etherType, l3] = [frame.readUInt16BE(16), 18];
    if (etherType !== 0x0800 || frame[l3]! >> 4 !== 4 || frame[l3 + 9] !== 6) continue;
    const ihl = (frame[l3]! & 0x0f) * 4;
    const total = frame.readUInt16BE(l3 + 2);
    const l4 = l3 + ihl;
    if (l4 + 20 > frame.length) continue;
    const dataOffset = (frame[l4 + 12]! >> 4) * 4;
    out.push({
      src: formatIPv4(frame.readUInt32BE(l3 + 12)),
      dst: formatIPv4(frame.readUInt32BE(l3 + 16)),
      sport: frame.readUInt16BE(l4),
      dport: frame.readUInt16BE(l4 + 2),
      seq: frame.readUInt32BE(l4 + 4),
      flags: frame[l4 + 13]!,
      payload: frame.subarray(l4 + dataOffset, Math.min(frame.length, l3 + total)),
    });
  }
  return out;
}

/** A TLS record header (content type 20..23, version 0x0301 or 0x0303) at the start of a segment's payload. */
export const startsTlsRecord = (payload: Buffer): boolean =>
  payload.length >= 5 && payload[0]! >= 20 && payload[0]! <= 23 && payload[1] === 0x03 && (payload[2] === 0x01 || payload[2] === 0x03);

/**
 * The bytes each direction of each connection carried, for the connections
 * whose SYN the capture holds (so their first byte is known): "src:sport>dst:dport"
 * -> bytes from the first one on, up to the first gap. Retransmissions count once.
 */
export function tcpStreams(segments: readonly TcpSegment[]): Map<string, Buffer> {
  const flows = new Map<string, { isn: number | null; at: Map<number, Buffer> }>();
  for (const s of segments) {
    const key = `${s.src}:${s.sport}>${s.dst}:${s.dport}`;
    const flow = flows.get(key) ?? { isn: null, at: new Map<number, Buffer>() };
    flows.set(key, flow);
    if (s.flags & TCP_SYN) flow.isn = s.seq;
    else if (s.payload.length > 0 && !flow.at.has(s.seq)) flow.at.set(s.seq, s.payload);
  }
  const out = new Map<string, Buffer>();
  for (const [key, flow] of flows) {
    if (flow.isn === null) continue;
    const parts: Buffer[] = [];
    for (let next = (flow.isn + 1) >>> 0, part = flow.at.get(next); part; next = (next + part.length) >>> 0, part = flow.at.get(next)) parts.push(part);
    out.set(key, Buffer.concat(parts));
  }
  return out;
}

export interface Capture {
  /** Stops tcpdump (after letting the last packets reach the file) and answers the raw file and its TCP segments. */
  stop(): Promise<{ raw: Buffer; segments: TcpSegment[] }>;
}

/**
 * tcpdump on `iface` inside namespace `netns`, writing every packet to a file
 * of its own as it comes: --immediate-mode, or the kernel hands packets over
 * in blocks once a second and a short exchange stopped at once is never
 * written; -U, or tcpdump buffers the file. Resolves once it is listening. Stopped
 * and its file removed on cleanup if the test does not stop it first.
 */
export async function capture(cleanup: BenchCleanup, netns: string, iface: string, filter: string): Promise<Capture> {
  const dir = mkdtempSync(join(tmpdir(), "wtx-capture-"));
  cleanup.track("dirs", dir);
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "fabric.pcap");
  const daemon: Daemon = await startDaemon(cleanup, `tcpdump on ${iface} in ${netns}`, ["ip", "netns", "exec", netns, "tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-s", "0", "-w", file, filter], {
    ready: (out) => out.includes("listening on"),
  });
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, 300));
      await daemon.stop();
      const raw = existsSync(file) ? readFileSync(file) : Buffer.alloc(0);
      return { raw, segments: tcpSegments(raw) };
    },
  };
}

// ---------------------------------------------------------------- programs in workloads

/**
 * TCP programs run inside workloads (`node --input-type=module -e`), one
 * JSON line per result:
 *   answer NAME PORT,PORT...  on each port: reads one line (or 500 ms of silence), answers
 *                             {"server","port","peer","echo"} and closes; prints "listening"
 *   ask HOST PORT TEXT COUNT TIMEOUT_MS INTERVAL_MS
 *                             COUNT connections one after another (0: until SIGTERM), each sending
 *                             TEXT and a newline; a line per attempt {"t","ok","peer"?,"echo"?,"failure"?}
 *                             and, at the end, {"tally":{"peers":{..},"failures":{..}}}
 *   sink PORT                 hashes everything a connection sends; at its end answers {"bytes","sha256","peer"}
 *   stream HOST PORT MS       sends random bytes for MS ms (about 400 KB/s), half-closes, prints
 *                             {"sent","sha256","answer"} or {"failure"}
 */
const PROGRAM = String.raw`
import net from "node:net";
import { createHash, randomBytes } from "node:crypto";
const [mode, ...a] = process.argv.slice(1);
const peerOf = (s) => (s.remoteAddress ?? "").replace(/^::ffff:/, "");
if (mode === "answer") {
  const [name, ports] = a;
  let up = 0;
  const list = ports.split(",");
  for (const port of list) {
    net.createServer((s) => {
      let buf = "";
      let done = false;
      const reply = () => {
        if (done) return;
        done = true;
        s.end(JSON.stringify({ server: name, port: Number(port), peer: peerOf(s), echo: buf.split("\n")[0] }) + "\n");
      };
      const idle = setTimeout(reply, 500);
      s.on("data", (d) => { buf += d; if (buf.includes("\n")) { clearTimeout(idle); reply(); } });
      s.on("error", () => clearTimeout(idle));
    }).listen(Number(port), "0.0.0.0", () => { if (++up === list.length) console.log("listening"); });
  }
} else if (mode === "ask") {
  const [host, port, text, count, timeoutMs, intervalMs] = a;
  const tally = { peers: {}, failures: {} };
  const add = (t, k) => (t[k] = (t[k] ?? 0) + 1);
  let stop = false;
  process.on("SIGTERM", () => (stop = true));
  const one = () => new Promise((resolve) => {
    let data = "";
    const s = net.connect(Number(port), host);
    const timer = setTimeout(() => { s.destroy(); resolve({ failure: "timeout" }); }, Number(timeoutMs));
    s.on("connect", () => s.write(text + "\n"));
    s.on("data", (d) => (data += d));
    s.on("end", () => { clearTimeout(timer); try { resolve(JSON.parse(data)); } catch { resolve({ failure: "no answer" }); } });
    s.on("error", (e) => { clearTimeout(timer); resolve({ failure: "error:" + e.code }); });
  });
  for (let i = 0; !stop && (Number(count) === 0 || i < Number(count)); i++) {
    const r = await one();
    if (r.failure) add(tally.failures, r.failure); else add(tally.peers, r.peer);
    console.log(JSON.stringify({ t: Date.now(), ok: !r.failure, ...r }));
    if (Number(intervalMs) > 0) await new Promise((res) => setTimeout(res, Number(intervalMs)));
  }
  console.log(JSON.stringify({ tally }));
} else if (mode === "sink") {
  net.createServer((s) => {
    const h = createHash("sha256");
    let bytes = 0;
    s.on("data", (d) => { h.update(d); bytes += d.length; });
    s.on("end", () => s.end(JSON.stringify({ bytes, sha256: h.digest("hex"), peer: peerOf(s) }) + "\n"));
    s.on("error", () => {});
  }).listen(Number(a[0]), "0.0.0.0", () => console.log("listening"));
} else if (mode === "stream") {
  const [host, port, ms] = a;
  const h = createHash("sha256");
  let sent = 0;
  let answer = "";
  const s = net.connect(Number(port), host);
  const fail = (why) => { console.log(JSON.stringify({ failure: why, sent })); process.exit(0); };
  s.on("error", (e) => fail("error:" + e.code));
  s.on("data", (d) => (answer += d));
  s.on("end", () => { try { console.log(JSON.stringify({ sent, sha256: h.digest("hex"), answer: JSON.parse(answer) })); } catch { fail("no answer"); } });
  s.on("connect", async () => {
    const until = Date.now() + Number(ms);
    while (Date.now() < until) {
      const chunk = randomBytes(8192);
      h.update(chunk);
      sent += chunk.length;
      if (!s.write(chunk)) await new Promise((res) => s.once("drain", res));
      await new Promise((res) => setTimeout(res, 20));
    }
    s.end();
  });
} else {
  console.error("usage: answer NAME PORTS | ask HOST PORT TEXT COUNT TIMEOUT_MS INTERVAL_MS | sink PORT | stream HOST PORT MS");
  process.exit(2);
}
`;

/** argv that runs PROGRAM in mode `mode` (for Cluster.exec and Cluster.start, which put it in the workload). */
export const program = (mode: "answer" | "ask" | "sink" | "stream", ...args: (string | number)[]): string[] => [
  process.execPath,
  "--input-type=module",
  "-e",
  PROGRAM,
  mode,
  ...args.map(String),
];

export interface Answered {
  /** When the attempt ended (Date.now() in the workload: the same clock). */
  t: number;
  ok: boolean;
  server?: string;
  port?: number;
  peer?: string;
  echo?: string;
  failure?: string;
}
export interface Tally {
  peers: Record<string, number>;
  failures: Record<string, number>;
}

/** Runs argv to its end somewhere (a workload, a namespace) and answers its output. */
export type Runner = (argv: string[], timeoutMs: number) => Promise<{ stdout: string }>;

/** In a workload's namespace and its node's cgroup (Cluster.exec). */
export const inWorkload = (c: Cluster, workload: string): Runner => (argv, timeoutMs) => c.exec(workload, argv, { timeoutMs });

/** In a namespace of the test's own making (the rogue's). */
export const inNamespace = (netns: string): Runner => (argv, timeoutMs) =>
  new Promise((resolve, reject) =>
    execFile("ip", ["netns", "exec", netns, ...argv], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`failed to run ${argv[4] ?? argv[0]} in ${netns}: ${stderr || err.message}`)) : resolve({ stdout }),
    ),
  );

/** `count` connections to host:port, one after another, each sending `text`: every attempt and the tally. */
export async function ask(run: Runner, host: string, port: number, text: string, count: number, timeoutMs = 1_500): Promise<{ attempts: Answered[]; tally: Tally }> {
  const { stdout } = await run(program("ask", host, port, text, count, timeoutMs, 0), 15_000 + count * (timeoutMs + 500));
  return parseAsk(stdout);
}

/** The lines `ask` printed so far (a running one has no tally yet: it is empty). */
export function parseAsk(output: string): { attempts: Answered[]; tally: Tally } {
  const lines = output.split("\n").filter((l) => l.startsWith("{"));
  const parsed = lines.map((l) => JSON.parse(l) as Answered & { tally?: Tally });
  const last = parsed.at(-1);
  return { attempts: parsed.filter((p) => p.tally === undefined), tally: last?.tally ?? { peers: {}, failures: {} } };
}

// ---------------------------------------------------------------- the rogue on the fabric

export interface Rogue {
  netns: string;
  /** Its own address on the fabric's /24. */
  address: string;
}

/**
 * A namespace plugged into the fabric's bridge like a machine on the same
 * wire: its own address on the fabric (.200), `spoofed` on the same
 * interface, and for each target a /32 route via the target's node that
 * sends from `spoofed`. No default route. Deleted (with its veth) on cleanup.
 */
export function rogueOnFabric(cleanup: BenchCleanup, c: Cluster, spoofed: string, targets: { address: string; node: string }[]): Rogue {
  const netns = makeNetns(cleanup, `${c.id.split("-")[1]}-rogue`, "wcluster");
  const address = formatIPv4((parseIPv4(c.fabric.cidr.split("/")[0]!) & 0xffffff00) + 200);
  const fabricEnd = `rg${c.id.split("-")[1]}-${process.pid % 100_000}`.slice(0, 15);
  execFileSync("ip", ["-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", fabricEnd, "netns", c.fabric.netns]);
  ipBatch([`link set ${fabricEnd} master br0`, `link set ${fabricEnd} up`], c.fabric.netns);
  ipBatch([
    `addr add ${address}/24 dev eth0`,
    `addr add ${spoofed}/32 dev eth0`,
    "link set eth0 up",
    ...targets.map((t) => `route add ${t.address}/32 via ${c.nodes[t.node]!.address} dev eth0 src ${spoofed}`),
  ], netns);
  return { netns, address };
}

// ---------------------------------------------------------------- an attacker's transport

/**
 * Plays a peer node's transport from wherever this process stands (the
 * host is on the fabric): a mutual-TLS HTTP/2 session to host:port with the
 * given certificate, asking for `destinationId` by its server name, and one
 * CONNECT. Answers the status, or the error that stopped it.
 */
export function dialTransport(
  to: { host: string; port: number },
  creds: { keyPem: string; chainPem: string },
  opts: { destinationId: string; authority: string; forwarded?: string; timeoutMs?: number },
): Promise<{ status: number | null; error: string | null }> {
  return dialInbound(to, creds, { ...opts, timeoutMs: opts.timeoutMs ?? 5_000 });
}

// ---------------------------------------------------------------- what an agent holds

/** The SVID an agent wrote for `workload` (its --svid-files): key, chain and the leaf's serial and validity. */
export function heldSvid(stateDir: string, workload: string): { keyPem: string; chainPem: string; serial: string; notBefore: number; notAfter: number; spiffeId: string } | null {
  const root = join(stateDir, "svids");
  if (!existsSync(root)) return null;
  for (const tenant of readdirSync(root)) {
    const dir = join(root, tenant, workload);
    if (!existsSync(join(dir, "cert.pem")) || !existsSync(join(dir, "key.pem"))) continue;
    const chainPem = readFileSync(join(dir, "cert.pem"), "utf8");
    const leaf = new X509Certificate(chainPem);
    return {
      keyPem: readFileSync(join(dir, "key.pem"), "utf8"),
      chainPem,
      serial: leaf.serialNumber,
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      spiffeId: (leaf.subjectAltName ?? "").replace(/^URI:/, ""),
    };
  }
  return null;
}

/** The agent's transport: the one descendant of the agent's process whose command runs transport/main. */
export function transportPid(agentPid: number): number | null {
  const found: number[] = [];
  const walk = (pid: number) => {
    for (const child of childPids(pid)) {
      if (/transport\/main\.(ts|js)\b/.test(commandOf(child))) found.push(child);
      walk(child);
    }
  };
  walk(agentPid);
  if (found.length > 1) throw new Error(`agent ${agentPid} runs ${found.length} transports: ${found.join(", ")}`);
  return found[0] ?? null;
}

/** Sum of weft_datapath_packets_total over every hook for one reason ("mtls-required", "transport-down", ...). */
export const packetsFor = (packets: Record<string, number>, reason: string): number =>
  Object.entries(packets)
    .filter(([k]) => k.endsWith(`/${reason}`))
    .reduce((sum, [, v]) => sum + v, 0);

/**
 * For a failed proof: each node's transport document as the API serves it,
 * its agent's non-zero transport and datapath counters, and the agent's last
 * lines about its transport.
 */
export async function transportDiagnostics(c: Cluster, nodes: readonly string[]): Promise<string> {
  const out: string[] = [];
  for (const n of nodes) {
    const doc = await c.api.call("GET", `/v1/nodes/${n}/transport`, c.api.operator).then(
      (r) => r.body.replace(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\\n/g, "<certificate>"),
      (err: Error) => err.message,
    );
    const metrics = await c.agentMetrics(n).then(
      (text) => text.split("\n").filter((l) => /^weft_(transport|datapath_packets_total)/.test(l) && !/ 0$/.test(l)),
      (err: Error) => [err.message],
    );
    const lines = (c.nodes[n]!.agent?.output() ?? "").split("\n").filter((l) => /transport/i.test(l)).slice(-10);
    out.push(`== ${n}: transport document\n${doc}\n== ${n}: counters\n${metrics.join("\n")}\n== ${n}: agent on its transport\n${lines.join("\n")}`);
  }
  return out.join("\n");
}
