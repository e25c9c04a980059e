/**
 * The kernel side of the per-node L7 proxy (issue 21; [R17], [R18] in
 * bpf/weft_policy.bpf.c) with real connections: weft_from_wl hands a
 * client's connection to an L7 frontend (VIP:port in weft_l7) to HAProxy's
 * transparent listener, which sees the VIP as its destination and the
 * client's own address as its source; weft_to_wl lets the proxy's answers
 * through to a client whose ingress is default-deny, and nothing else from
 * the "VIP"; with the proxy gone the connection fails closed as proxy-down
 * and nothing leaves for the VIP's route. Namespaces: a node (the agent's
 * loader attaches the programs there, the agent's local-delivery route is
 * written by hand), a client workload behind a veth, and a "fabric" holding
 * the VIP's address, where anything the node forwarded to the VIP would
 * land (and be counted).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { constants, decodeFlowEvents, protocols, type Entry, type FlowEvent } from "@weft/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { RingBufferReader } from "../../nodeagent/src/kernel/index.ts";
import { handOverListener } from "../../nodeagent/src/l7/listener.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeNetns, toolsUnavailableReason } from "../support/kernel.ts";
import { until } from "../support/until.ts";
import { loadInNode, localDeliveryRoute, stopChild, workloadVeth } from "./node-namespace.ts";
import { readMetrics, writeEntries } from "./policy-harness.ts";

const { tcp } = protocols;
const TENANT = 1;
// The client workload: a /30 whose .1 is its host-side veth in the node namespace.
const CLIENT = { host: "198.18.170.1", address: "198.18.170.2", identity: 4001 };
// The fabric link (.1 node, .2 fabric); the node routes the VIP there, so a packet that escaped steering would show.
const FABRIC = { node: "198.18.171.1", far: "198.18.171.2" };
const VIP = "198.18.172.10";
const HTTP = 80;
const CLIENT_SERVES = 9000;

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: "utf8" });
const inNs = (ns: string, ...args: string[]): string => sh("ip", "netns", "exec", ns, ...args);

/** HAProxy as the design runs it, answering every request itself with what it saw: "dst:dst_port src". */
const haproxyConfig = `global
  maxconn 256
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

/** curl from `ns` (extra: more curl arguments): the body, or "curl exit N" when it fails. */
async function curl(ns: string, url: string, maxTimeS = 2, extra: string[] = []): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)("ip", ["netns", "exec", ns, "curl", "-sS", "--max-time", String(maxTimeS), ...extra, url], { encoding: "utf8", timeout: (maxTimeS + 10) * 1000 });
    return stdout;
  } catch (err) {
    return `curl exit ${(err as { code?: number }).code}`;
  }
}

/**
 * Sends one TCP segment with the given flags from `src`:`sport` to
 * `dst`:`dport` through a raw socket in `ns`: a forger that owns no
 * connection. The checksum is left 0: the tc programs decide before any
 * receiver would check it.
 */
function forge(ns: string, p: { src: string; sport: number; dst: string; dport: number; flags: number }): void {
  const py = `
import socket, struct
def a(s): return socket.inet_aton(s)
tcp = struct.pack("!HHIIBBHHH", ${p.sport}, ${p.dport}, 1000, 2000, 5 << 4, ${p.flags}, 65535, 0, 0)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, socket.IPPROTO_TCP, 0, a("${p.src}"), a("${p.dst}"))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + tcp, ("${p.dst}", 0))
`;
  inNs(ns, "python3", "-c", py);
}

const reason = toolsUnavailableReason([["ip", "-V"], ["nft", "--version"], ["nsenter", "--version"], ["haproxy", "-v"], ["curl", "--version"], ["python3", "--version"]]);

describe.skipIf(skipWithout("L7 steering in namespaces (root, bpf, iproute2, nftables, nsenter, haproxy, curl, python3)", reason))("steering L7 frontends into the node's HAProxy (real namespaces)", () => {
  const cleanup = new Cleanup();
  let dp: KernelDatapath;
  let ring: RingBufferReader;
  let node: string;
  let client: string;
  let fabric: string;
  let haproxy: ChildProcess | null = null;
  let configPath: string;

  const metric = (slot: string): bigint => readMetrics(dp.maps.metrics).get(slot) ?? 0n;
  const metrics = <T extends string[]>(...slots: T): { [K in keyof T]: bigint } => slots.map(metric) as { [K in keyof T]: bigint };
  /** TCP packets for the VIP that reached the fabric namespace (an nft counter there). */
  const fabricPackets = (): number => Number(/packets (\d+)/.exec(inNs(fabric, "nft", "list", "chain", "ip", "wefttest", "seen"))![1]);
  const events = (): FlowEvent[] => decodeFlowEvents(Buffer.concat(ring.drain()));

  async function startHaproxy(): Promise<void> {
    const child = spawn("ip", ["netns", "exec", node, "haproxy", "-db", "-f", configPath], { stdio: ["ignore", "pipe", "pipe"] });
    haproxy = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += String(d)));
    cleanup.add("stop haproxy", () => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")));
    const listening = () => inNs(node, "ss", "-Hltn", `sport = :${constants.L7_PROXY_PORT}`).includes(`127.0.0.1:${constants.L7_PROXY_PORT}`);
    await until("haproxy to listen", 10_000, () => (listening() || child.exitCode !== null ? true : undefined));
    if (!listening()) throw new Error(`failed to start haproxy: ${stderr}`);
    // As the agent does ([R19]): `ip netns exec` execs haproxy (-db: one process), so the child is the proxy.
    handOverListener(dp, child.pid!);
  }
  async function stopHaproxy(): Promise<void> {
    const child = haproxy;
    haproxy = null;
    await stopChild(child);
  }

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-l7-steering-test-"));
    cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    configPath = join(dir, "haproxy.cfg");
    writeFileSync(configPath, haproxyConfig);

    node = makeNetns(cleanup, "l7node");
    client = makeNetns(cleanup, "l7cli");
    fabric = makeNetns(cleanup, "l7fab");
    sh("ip", "-n", node, "link", "set", "lo", "up");
    const cv = workloadVeth(node, client, `l7${process.pid % 100000}c`, CLIENT.host, CLIENT.address);
    workloadVeth(node, fabric, `l7${process.pid % 100000}f`, FABRIC.node, FABRIC.far);
    sh("ip", "-n", client, "route", "add", "198.18.0.0/15", "via", CLIENT.host);
    sh("ip", "-n", fabric, "addr", "add", `${VIP}/32`, "dev", "lo");
    sh("ip", "-n", fabric, "route", "add", "198.18.170.0/30", "via", FABRIC.node);
    sh("ip", "-n", node, "route", "add", `${VIP}/32`, "via", FABRIC.far);
    inNs(node, "sysctl", "-q", "-w", "net.ipv4.conf.all.forwarding=1");
    localDeliveryRoute(node);
    inNs(fabric, "nft", `add table ip wefttest; add chain ip wefttest seen { type filter hook prerouting priority -300; }; add rule ip wefttest seen ip daddr ${VIP} tcp dport ${HTTP} counter`);

    dp = loadInNode(cleanup, "l7steer", node, [cv.host]);
    ring = new RingBufferReader(dp.flowRingFd);
    cleanup.add("close the ring reader", () => ring.close());

    const identity = { identity: CLIENT.identity, tenant: TENANT };
    writeEntries(dp.maps.endpoint, "endpoint", [{ key: { address: CLIENT.address }, value: identity }]);
    writeEntries(dp.maps.ipcache, "ipcache", [{ key: { prefix: `${CLIENT.address}/32` }, value: identity }]);
    writeEntries(dp.maps.local_veth, "local_veth", [{ key: { address: CLIENT.address }, value: { ifindex: cv.ifindex } }]);
    writeEntries(dp.maps.l7, "l7", [{ key: { vip: VIP, port: HTTP, protocol: tcp }, value: { http: true } }]);
    writeEntries(dp.maps.flow_cfg, "flow_cfg", [{ key: { index: 0 }, value: { intervalNs: 1000n, burst: 100_000, allowed: true } }]);
    // The client is default-deny both ways: only [R17] and [R18] can carry its HTTP.
    const deny = (direction: "ingress" | "egress"): Entry<"policy"> => ({ key: { localIdentity: CLIENT.identity, remoteIdentity: 0, port: 0, protocol: 0, direction }, value: { action: "default-deny", ruleId: 0 } });
    writeEntries(dp.maps.policy, "policy", [deny("ingress"), deny("egress")]);
    // Something that answers on the VIP's route, so a connection that escaped steering would succeed there.
    const server = spawn("ip", ["netns", "exec", fabric, process.execPath, "-e", `require("node:net").createServer(s=>{s.on("error",()=>{});s.end("HTTP/1.0 200 OK\\r\\n\\r\\nfabric")}).listen(${HTTP},${JSON.stringify(VIP)},()=>console.log("ready"))`], { stdio: ["ignore", "pipe", "ignore"] });
    cleanup.add("stop the fabric server", () => void (server.exitCode === null && server.kill("SIGKILL")));
    await until("the fabric server to listen", 10_000, () => (inNs(fabric, "ss", "-Hltn", `sport = :${HTTP}`).includes(VIP) ? true : undefined));
  });
  afterAll(() => cleanup.run());

  it("hands the client's connection to HAProxy, which sees the VIP as destination and the client's own address as source; its answers pass a default-deny ingress", async () => {
    await startHaproxy();
    events();
    const fabricBefore = fabricPackets();
    const [outBefore, inBefore, deniedBefore] = metrics("egress/l7-steered", "ingress/l7-steered", "ingress/default-deny");
    expect(await curl(client, `http://${VIP}:${HTTP}/`)).toBe(`${VIP}:${HTTP} ${CLIENT.address}`);
    const [out, inn, denied] = metrics("egress/l7-steered", "ingress/l7-steered", "ingress/default-deny");
    // SYN, ACK, request, FIN at least one way; SYN-ACK, response, FIN the other, none of them refused.
    expect(out - outBefore).toBeGreaterThanOrEqual(3n);
    expect(inn - inBefore).toBeGreaterThanOrEqual(3n);
    expect(denied - deniedBefore).toBe(0n);
    expect(fabricPackets()).toBe(fabricBefore);
    // One event, for the SYN the listener took; the egress policy (default-deny) was not asked.
    const opened = events().filter((e) => e.hook === "egress");
    expect(opened.map((e) => [e.reason, e.verdict, e.source.address, e.source.identity, e.destination.address, e.destination.port, e.destination.identity])).toEqual([
      ["l7-steered", "pass", CLIENT.address, CLIENT.identity, VIP, HTTP, constants.IDENTITY_PROXY],
    ]);
  });

  it("takes a new connection on a tuple the proxy still holds in TIME_WAIT (it closed first)", async () => {
    // HAProxy answers Connection: close by closing first, most times; when curl's FIN wins the race the
    // TIME_WAIT is the client's and the port cannot be reused at all, so try ports until the node holds it.
    const inTimeWait = (ns: string, port: number) => inNs(ns, "ss", "-Htan", "state", "time-wait").includes(`${CLIENT.address}:${port}`);
    const base = 40_000 + (process.pid % 10_000);
    let port = 0;
    for (let p = base; p < base + 10 && port === 0; p++) {
      expect(await curl(client, `http://${VIP}:${HTTP}/`, 2, ["--local-port", String(p), "-H", "Connection: close"])).toBe(`${VIP}:${HTTP} ${CLIENT.address}`);
      if (inTimeWait(node, p) && !inTimeWait(client, p)) port = p;
    }
    expect(port, "no try left the tuple in TIME_WAIT on the node's side only").not.toBe(0);
    // The kernel's lookup retires the TIME_WAIT socket and the socket lookup ([R19]) hands the SYN to the listener;
    // assigned to the listener by tc, it would be dropped for TIME_WAIT's 60 s (l7-sk-lookup.test.ts counts retries).
    expect(await curl(client, `http://${VIP}:${HTTP}/`, 5, ["--local-port", String(port), "-H", "Connection: close"])).toBe(`${VIP}:${HTTP} ${CLIENT.address}`);
  });

  it("fails closed without the proxy: the client's connect fails as proxy-down and nothing goes out on the VIP's route", async () => {
    await stopHaproxy();
    const fabricBefore = fabricPackets();
    const down = metric("egress/proxy-down");
    expect(await curl(client, `http://${VIP}:${HTTP}/`, 1)).toMatch(/^curl exit \d+$/);
    expect(metric("egress/proxy-down") - down).toBeGreaterThanOrEqual(1n);
    expect(fabricPackets()).toBe(fabricBefore);
  });

  it("drops what comes from the 'VIP' without the proxy: a forged segment and a connection opened from VIP:port, both policy's default-deny", async () => {
    await echoInClient();
    for (const flags of [0x10 /* ACK */, 0x12 /* SYN-ACK */, 0x02 /* SYN */]) {
      const [steered, denied] = metrics("ingress/l7-steered", "ingress/default-deny");
      forge(fabric, { src: VIP, sport: HTTP, dst: CLIENT.address, dport: CLIENT_SERVES, flags });
      await until("the forged segment to be decided", 5_000, () => (metric("ingress/default-deny") > denied ? true : undefined));
      expect(metric("ingress/l7-steered")).toBe(steered);
    }
  });

  async function echoInClient(): Promise<void> {
    const child = spawn("ip", ["netns", "exec", client, process.execPath, "-e", `require("node:net").createServer(s=>s.end("client")).listen(${CLIENT_SERVES},()=>console.log("ready"))`], { stdio: ["ignore", "pipe", "ignore"] });
    cleanup.add("stop the client's server", () => void (child.exitCode === null && child.kill("SIGKILL")));
    await until("the client's server to listen", 10_000, () => (inNs(client, "ss", "-Hltn", `sport = :${CLIENT_SERVES}`).length > 0 ? true : undefined));
  }
});
