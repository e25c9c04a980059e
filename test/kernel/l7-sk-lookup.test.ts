/**
 * The L7 proxy's new connections through the kernel's own socket lookup
 * (bpf/README [R19]: weft_l7_lookup on the node's namespace, the proxy's
 * listener in the weft_l7_listen sockmap, taken from HAProxy's worker as the
 * agent takes it). What it is for: a client opening connection after
 * connection from the same ports, whose tuples the proxy still holds in
 * TIME_WAIT (it closes first), connects at once, every time: the kernel
 * retires the TIME_WAIT socket and the lookup hands the SYN to the listener,
 * where bpf_sk_assign from tc dropped it and the client's SYN retry paid a
 * second. Then: a reload keeps the same socket in the slot, a proxy that is
 * gone empties it (proxy-down), and nothing but a workload's connection to a
 * frontend in weft_l7 is touched, even where a frontend is one of the node's
 * own addresses. Namespaces: the node (loader and HAProxy there), a client
 * workload behind a veth, a "fabric" holding the VIP, where anything that
 * escaped steering would land.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { constants, protocols } from "@weft/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { handOverListener } from "../../nodeagent/src/l7/listener.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeNetns, toolsUnavailableReason } from "../support/kernel.ts";
import { until } from "../support/until.ts";
import { loadInNode, localDeliveryRoute, stopChild, workloadVeth } from "./node-namespace.ts";
import { readMetrics, writeEntries } from "./policy-harness.ts";

const { tcp } = protocols;
const CLIENT = { host: "198.18.174.1", address: "198.18.174.2", identity: 4101, tenant: 1 };
const FABRIC = { node: "198.18.175.1", far: "198.18.175.2" };
const VIP = "198.18.176.10";
const HTTP = 80;
/** A service of the node itself on every address; FABRIC.node:HOST_PORT is also made an L7 frontend. */
const HOST_PORT = 8080;
/** Connections per round, each from its own client port. */
const PORTS = 64;

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: "utf8" });
const inNs = (ns: string, ...args: string[]): string => sh("ip", "netns", "exec", ns, ...args);

/** HAProxy as the agent runs it (master-worker, listeners passed on at reload), answering "dst:dst_port src" itself. */
const haproxyConfig = (dir: string) => `global
  master-worker
  maxconn 1024
  stats socket ${dir}/admin.sock mode 600 level admin expose-fd listeners
defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend l7
  bind 127.0.0.1:${constants.L7_PROXY_PORT} transparent
  tcp-request connection set-mark 0x${constants.MARK_PROXY.toString(16)}
  http-request return status 200 content-type text/plain lf-string "%[dst]:%[dst_port] %[src]"
`;

/**
 * One connection from each of `ports` (bound with SO_REUSEADDR) to dst:port,
 * one after the other: a request asking Connection: close, the answer read
 * to the end (the proxy's FIN), then closed, so the client never holds the
 * TIME_WAIT. Per connection: the body and connect()'s time in ms.
 */
const CLIENT_SCRIPT = `
import json, socket, sys, time
dst, dport, ports, limit = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
out = []
for p in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(limit)
    s.bind(("0.0.0.0", p))
    t = time.monotonic()
    try:
        s.connect((dst, dport))
    except OSError as e:
        out.append({"port": p, "error": str(e)})
        s.close()
        continue
    ms = (time.monotonic() - t) * 1000
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    out.append({"port": p, "ms": ms, "body": data.split(b"\\r\\n\\r\\n", 1)[-1].decode()})
print(json.dumps(out))
`;

interface Connection {
  port: number;
  ms?: number;
  body?: string;
  error?: string;
}

/** limitS bounds each connect and read: a connection that gets no answer fails with "timed out". */
async function connectFrom(ns: string, dst: string, dport: number, ports: number[], limitS = 10): Promise<Connection[]> {
  const { stdout } = await promisify(execFile)("ip", ["netns", "exec", ns, "python3", "-c", CLIENT_SCRIPT, dst, String(dport), JSON.stringify(ports), String(limitS)], { encoding: "utf8", timeout: 120_000 });
  return JSON.parse(stdout) as Connection[];
}

/** A TcpExt/Tcp counter of namespace `ns` (nstat -a: absolute, not since the last call). */
function counter(ns: string, name: string): number {
  const m = new RegExp(`^${name}\\s+(\\d+)`, "m").exec(inNs(ns, "nstat", "-az", name));
  return m ? Number(m[1]) : 0;
}

/** A one-line TCP server in `ns` answering `reply` on every address at `port`. */
async function serve(cleanup: Cleanup, ns: string, port: number, reply: string): Promise<void> {
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", `require("node:net").createServer(s=>{s.on("error",()=>{});s.end("HTTP/1.0 200 OK\\r\\n\\r\\n${reply}")}).listen(${port},"0.0.0.0")`], { stdio: "ignore" });
  cleanup.add(`stop the ${reply} server`, () => void (child.exitCode === null && child.kill("SIGKILL")));
  await until(`the ${reply} server to listen`, 10_000, () => (inNs(ns, "ss", "-Hltn", `sport = :${port}`).length > 0 ? true : undefined));
}

const reason = toolsUnavailableReason([["ip", "-V"], ["nft", "--version"], ["nsenter", "--version"], ["haproxy", "-v"], ["nstat", "-V"], ["python3", "--version"]]);

describe.skipIf(skipWithout("the L7 socket lookup in namespaces (root, bpf, iproute2, nftables, nsenter, haproxy, nstat, python3)", reason))("the L7 proxy's listener through the kernel's socket lookup (real namespaces)", () => {
  const cleanup = new Cleanup();
  let dp: KernelDatapath;
  let node: string;
  let client: string;
  let fabric: string;
  let dir: string;
  let master: ChildProcess | null = null;

  const metric = (slot: string): bigint => readMetrics(dp.maps.metrics).get(slot) ?? 0n;
  const fabricPackets = (): number => Number(/packets (\d+)/.exec(inNs(fabric, "nft", "list", "chain", "ip", "wefttest", "seen"))![1]);
  const workers = (): number[] => {
    const pid = master?.pid;
    if (!pid) return [];
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };

  async function startHaproxy(): Promise<number> {
    // `ip netns exec` execs haproxy: the child is the master.
    const child = spawn("ip", ["netns", "exec", node, "haproxy", "-W", "-f", join(dir, "haproxy.cfg")], { stdio: ["ignore", "ignore", "pipe"] });
    master = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += String(d)));
    cleanup.add("stop haproxy", () => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")));
    const listening = () => inNs(node, "ss", "-Hltn", `sport = :${constants.L7_PROXY_PORT}`).includes(`127.0.0.1:${constants.L7_PROXY_PORT}`);
    await until("haproxy's worker to listen", 10_000, () => ((listening() && workers().length === 1) || child.exitCode !== null ? true : undefined));
    if (child.exitCode !== null) throw new Error(`failed to start haproxy: ${stderr}`);
    return workers()[0]!;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-l7-sk-lookup-test-"));
    cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "haproxy.cfg"), haproxyConfig(dir));

    node = makeNetns(cleanup, "l7sknode");
    client = makeNetns(cleanup, "l7skcli");
    fabric = makeNetns(cleanup, "l7skfab");
    sh("ip", "-n", node, "link", "set", "lo", "up");
    const cv = workloadVeth(node, client, `sk${process.pid % 100000}c`, CLIENT.host, CLIENT.address);
    workloadVeth(node, fabric, `sk${process.pid % 100000}f`, FABRIC.node, FABRIC.far);
    sh("ip", "-n", client, "route", "add", "198.18.0.0/15", "via", CLIENT.host);
    sh("ip", "-n", fabric, "addr", "add", `${VIP}/32`, "dev", "lo");
    sh("ip", "-n", fabric, "route", "add", "198.18.174.0/30", "via", FABRIC.node);
    sh("ip", "-n", node, "route", "add", `${VIP}/32`, "via", FABRIC.far);
    inNs(node, "sysctl", "-q", "-w", "net.ipv4.conf.all.forwarding=1");
    localDeliveryRoute(node);
    inNs(fabric, "nft", `add table ip wefttest; add chain ip wefttest seen { type filter hook prerouting priority -300; }; add rule ip wefttest seen ip daddr ${VIP} tcp dport ${HTTP} counter`);

    dp = loadInNode(cleanup, "l7sklookup", node, [cv.host]);
    const identity = { identity: CLIENT.identity, tenant: CLIENT.tenant };
    writeEntries(dp.maps.endpoint, "endpoint", [{ key: { address: CLIENT.address }, value: identity }]);
    writeEntries(dp.maps.ipcache, "ipcache", [{ key: { prefix: `${CLIENT.address}/32` }, value: identity }]);
    writeEntries(dp.maps.local_veth, "local_veth", [{ key: { address: CLIENT.address }, value: { ifindex: cv.ifindex } }]);
    // The VIP, and one of the node's own addresses a tenant named as a frontend: only its workloads' connections go to the proxy.
    writeEntries(dp.maps.l7, "l7", [
      { key: { vip: VIP, port: HTTP, protocol: tcp }, value: { http: true } },
      { key: { vip: FABRIC.node, port: HOST_PORT, protocol: tcp }, value: { http: true } },
    ]);
    await serve(cleanup, fabric, HTTP, "fabric");
    await serve(cleanup, node, HOST_PORT, "host");
    await serve(cleanup, node, HOST_PORT + 1, "host");
  });
  afterAll(() => cleanup.run());

  it("connects every new connection on a tuple the proxy holds in TIME_WAIT at once: no SYN is sent twice", async () => {
    const worker = await startHaproxy();
    expect(handOverListener(dp, worker)).toBe("replaced");
    expect(dp.l7ListenerCookie()).not.toBeNull();
    const ports = Array.from({ length: PORTS }, (_, i) => 41_000 + (process.pid % 1_000) * 8 + i);
    const want = { body: `${VIP}:${HTTP} ${CLIENT.address}` };

    const first = await connectFrom(client, VIP, HTTP, ports);
    expect(first.filter((c) => c.body !== want.body)).toEqual([]);
    // The proxy closed first every time (the client read to its FIN): the node holds each tuple in TIME_WAIT.
    const held = inNs(node, "ss", "-Htan", "state", "time-wait", `dst ${CLIENT.address}`);
    expect(ports.filter((p) => !held.includes(`${CLIENT.address}:${p}`))).toEqual([]);

    const [retransBefore, steeredBefore, downBefore, fabricBefore] = [counter(client, "TcpExtTCPSynRetrans"), metric("egress/l7-steered"), metric("egress/proxy-down"), fabricPackets()];
    const again = await connectFrom(client, VIP, HTTP, ports);
    expect(again.filter((c) => c.body !== want.body)).toEqual([]);
    // Handed to the listener by tc, each of these SYNs was dropped and the client's retry, 1 s on, got through.
    const slowest = Math.max(...again.map((c) => c.ms!));
    expect(counter(client, "TcpExtTCPSynRetrans") - retransBefore, `SYNs sent again (the slowest connect() took ${slowest.toFixed(1)} ms)`).toBe(0);
    expect(metric("egress/l7-steered") - steeredBefore).toBeGreaterThanOrEqual(BigInt(3 * PORTS));
    expect(metric("egress/proxy-down")).toBe(downBefore);
    expect(fabricPackets()).toBe(fabricBefore);
  });

  it("keeps the same socket in the slot across a hitless reload (the new worker receives the listener)", async () => {
    const before = workers();
    const cookie = dp.l7ListenerCookie();
    master!.kill("SIGUSR2");
    const next = await until("a new worker", 15_000, () => workers().find((w) => !before.includes(w)));
    expect(handOverListener(dp, next)).toBe("kept");
    expect(dp.l7ListenerCookie()).toBe(cookie);
    await until("the old worker to finish", 15_000, () => (workers().every((w) => !before.includes(w)) ? true : undefined));
    const after = await connectFrom(client, VIP, HTTP, [42_900 + (process.pid % 50)]);
    expect(after.map((c) => c.body)).toEqual([`${VIP}:${HTTP} ${CLIENT.address}`]);
    // A process that holds no such listener (the master, this test) is refused and the slot keeps the proxy's socket.
    for (const pid of [master!.pid!, process.pid]) expect(() => handOverListener(dp, pid)).toThrow(/holds none/);
    expect(dp.l7ListenerCookie()).toBe(cookie);
  });

  it("leaves everything else alone: the node's own service at an address a tenant named as a frontend, from the fabric and the node; other ports from the workload", async () => {
    const fromFabric = await connectFrom(fabric, FABRIC.node, HOST_PORT, [43_000 + (process.pid % 50)]);
    expect(fromFabric.map((c) => c.body)).toEqual(["host"]);
    const fromNode = await connectFrom(node, FABRIC.node, HOST_PORT, [43_100 + (process.pid % 50)]);
    expect(fromNode.map((c) => c.body)).toEqual(["host"]);
    const otherPort = await connectFrom(client, FABRIC.node, HOST_PORT + 1, [43_200 + (process.pid % 50)]);
    expect(otherPort.map((c) => c.body)).toEqual(["host"]);
    // The workload's own connection to that frontend is the proxy's, as [R17] steers it.
    const steered = await connectFrom(client, FABRIC.node, HOST_PORT, [43_300 + (process.pid % 50)]);
    expect(steered.map((c) => c.body)).toEqual([`${FABRIC.node}:${HOST_PORT} ${CLIENT.address}`]);
  });

  it("empties the slot when the proxy is gone: a new connection is refused as proxy-down and nothing goes out on the VIP's route", async () => {
    await stopChild(master);
    master = null;
    await until("the kernel to empty the slot", 5_000, () => (dp.l7ListenerCookie() === null ? true : undefined));
    const [down, fabricBefore] = [metric("egress/proxy-down"), fabricPackets()];
    const refused = await connectFrom(client, VIP, HTTP, [43_400 + (process.pid % 50)], 2);
    expect(refused.map((c) => c.error ?? c.body)).toEqual(["timed out"]);
    expect(metric("egress/proxy-down") - down).toBeGreaterThanOrEqual(1n);
    expect(fabricPackets()).toBe(fabricBefore);
    // A workload's connection to the node's own address that is a frontend is not handed to the node's service either.
    const toHost = await connectFrom(client, FABRIC.node, HOST_PORT, [43_500 + (process.pid % 50)], 2);
    expect(toHost.map((c) => c.error ?? c.body)).toEqual(["timed out"]);
  });
});
