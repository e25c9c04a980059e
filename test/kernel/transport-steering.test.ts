/**
 * The kernel side of the node transport (issue 18; [R15], [R16] in
 * bpf/README): weft_from_wl hands the TCP connections weft_steer names to the
 * transport's transparent listener with bpf_sk_assign, fails closed when no
 * transport socket is there, refuses a neighbour that borrows a steered
 * workload's address, and leaves everything else alone. Real namespaces:
 * a node namespace (the agent's loader attaches the programs there), two
 * workloads behind veths, and a "fabric" namespace holding another node's
 * workload address.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { constants, formatIPv4, maps, protocols, type Entry } from "@weft/codec";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeNetns, repoRoot, toolsUnavailableReason } from "../support/kernel.ts";
import { until } from "../support/until.ts";
import { echoServer } from "../agent/netns-traffic.ts";
import { loadInNode, localDeliveryRoute, stopChild, workloadVeth } from "./node-namespace.ts";
import { deleteAll, readMetrics, writeEntries } from "./policy-harness.ts";

const { tcp } = protocols;
const TENANT = 1;
const PORT = 8080;
// Each workload: a /30 whose .1 is its host-side veth in the node namespace.
const CLIENT = { host: "198.18.130.1", address: "198.18.130.2", identity: 1001 };
const NEIGHBOUR = { host: "198.18.130.5", address: "198.18.130.6", identity: 1003 };
// Another node's workload, reached through the fabric link (.1 node, .2 fabric).
const FABRIC = { node: "198.18.131.1", far: "198.18.131.2" };
const REMOTE = { address: "198.18.132.10", identity: 1002 };
const VETH = `tx${process.pid % 100000}`; // names of the veths this test makes, by suffix
const OUTBOUND = { address: formatIPv4(constants.TRANSPORT_OUTBOUND_ADDR), port: constants.TRANSPORT_OUTBOUND_PORT };

const steerEntries: Entry<"steer">[] = [
  { key: { localIdentity: CLIENT.identity, remoteIdentity: REMOTE.identity, port: PORT, protocol: tcp, direction: "egress" }, value: { action: "allow", ruleId: 7, mtls: true } },
  { key: { localIdentity: CLIENT.identity, remoteIdentity: 0, port: 0, protocol: 0, direction: "egress" }, value: { action: "default-deny", ruleId: 0 } },
];

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: "utf8" });
const inNs = (ns: string, ...args: string[]): string => sh("ip", "netns", "exec", ns, ...args);

/** A node script in `ns` (ip netns exec), its stdout lines collected; killed on cleanup. */
function nodeIn(cleanup: Cleanup, ns: string, what: string, args: string[]): { child: ChildProcess; lines: string[] } {
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let rest = "";
  child.stdout!.on("data", (d: Buffer) => {
    const parts = (rest + String(d)).split("\n");
    rest = parts.pop()!;
    lines.push(...parts);
  });
  cleanup.add(`stop ${what}`, () => void (child.exitCode === null && child.kill("SIGKILL")));
  return { child, lines };
}

async function ready(p: { child: ChildProcess; lines: string[] }, what: string): Promise<void> {
  let stderr = "";
  p.child.stderr!.on("data", (d: Buffer) => (stderr += String(d)));
  await until(`${what} to listen`, 10_000, () => (p.lines.includes("ready") || p.child.exitCode !== null ? true : undefined));
  if (!p.lines.includes("ready")) throw new Error(`failed to start ${what}: ${stderr}`);
}

/** One connection from `ns` that sends "hello": the first answer, "timeout" or "error:CODE". */
async function hello(ns: string, host: string, port: number, localAddress?: string, timeoutMs = 1500): Promise<string> {
  const script = `const s=require("node:net").connect(${JSON.stringify({ host, port, localAddress })},()=>s.write("hello"));
s.on("data",d=>{console.log("data:"+d);process.exit(0)});s.on("error",e=>{console.log("error:"+e.code);process.exit(0)});
setTimeout(()=>{console.log("timeout");process.exit(0)},${timeoutMs});`;
  const { stdout } = await promisify(execFile)("ip", ["netns", "exec", ns, process.execPath, "-e", script], { encoding: "utf8", timeout: timeoutMs + 10_000 });
  return stdout.trim();
}

const reason = toolsUnavailableReason([["ip", "-V"], ["nft", "--version"], ["nsenter", "--version"]]);

describe.skipIf(skipWithout("transport steering in namespaces (root, bpf, iproute2, nftables, nsenter)", reason))("steering TCP into the node's transport (real namespaces)", () => {
  const cleanup = new Cleanup();
  let dp: KernelDatapath;
  let node: string;
  let client: string;
  let neighbour: string;
  let fabric: string;
  let fabricServer: { child: ChildProcess; lines: string[] };
  let listener: { child: ChildProcess; lines: string[] } | null = null;

  const metric = (slot: string): bigint => readMetrics(dp.maps.metrics).get(slot) ?? 0n;
  /** TCP packets to (or, `from`, answering from) PORT that reached the fabric namespace (nft counters there). */
  const fabricPackets = (from = false): number => Number([...inNs(fabric, "nft", "list", "chain", "ip", "wefttest", "seen").matchAll(/packets (\d+)/g)][from ? 1 : 0]![1]);

  async function startListener(): Promise<void> {
    listener = nodeIn(cleanup, node, "transport listener", [`${repoRoot}test/kernel/fixtures/transport-listener.mjs`, OUTBOUND.address, String(OUTBOUND.port), String(constants.MARK_TRANSPORT)]);
    await ready(listener, "the transport listener");
  }
  async function stopListener(): Promise<void> {
    const child = listener?.child;
    listener = null;
    await stopChild(child);
  }

  beforeAll(async () => {
    node = makeNetns(cleanup, "txnode");
    client = makeNetns(cleanup, "txcli");
    neighbour = makeNetns(cleanup, "txnbr");
    fabric = makeNetns(cleanup, "txfab");
    sh("ip", "-n", node, "link", "set", "lo", "up");
    const cv = workloadVeth(node, client, `${VETH}c`, CLIENT.host, CLIENT.address);
    const nv = workloadVeth(node, neighbour, `${VETH}n`, NEIGHBOUR.host, NEIGHBOUR.address);
    workloadVeth(node, fabric, `${VETH}f`, FABRIC.node, FABRIC.far);
    for (const ns of [client, neighbour]) sh("ip", "-n", ns, "route", "add", "198.18.0.0/15", "via", ns === client ? CLIENT.host : NEIGHBOUR.host);
    sh("ip", "-n", fabric, "addr", "add", `${REMOTE.address}/32`, "dev", "lo");
    sh("ip", "-n", fabric, "route", "add", "198.18.130.0/29", "via", FABRIC.node);
    sh("ip", "-n", node, "route", "add", "198.18.132.0/24", "via", FABRIC.far);
    inNs(node, "sysctl", "-q", "-w", "net.ipv4.conf.all.forwarding=1");
    localDeliveryRoute(node);
    inNs(fabric, "nft", `add table ip wefttest; add chain ip wefttest seen { type filter hook prerouting priority -300; }; add rule ip wefttest seen tcp dport ${PORT} counter; add rule ip wefttest seen tcp sport ${PORT} counter`);

    dp = loadInNode(cleanup, "txsteer", node, [cv.host, nv.host]);

    const workloads = [CLIENT, NEIGHBOUR].map((w) => ({ address: w.address, value: { identity: w.identity, tenant: TENANT } }));
    writeEntries(dp.maps.endpoint, "endpoint", workloads.map((w) => ({ key: { address: w.address }, value: w.value })));
    writeEntries(dp.maps.ipcache, "ipcache", [...workloads, { address: REMOTE.address, value: { identity: REMOTE.identity, tenant: TENANT } }].map((w) => ({ key: { prefix: `${w.address}/32` }, value: w.value })));
    writeEntries(dp.maps.local_veth, "local_veth", [
      { key: { address: CLIENT.address }, value: { ifindex: cv.ifindex } },
      { key: { address: NEIGHBOUR.address }, value: { ifindex: nv.ifindex } },
    ]);
    // The client's egress: an mtls rule admits the remote workload on PORT (the entry the compiler writes, flagged).
    writeEntries(dp.maps.policy, "policy", [
      { key: { localIdentity: CLIENT.identity, remoteIdentity: REMOTE.identity, port: PORT, protocol: tcp, direction: "egress" }, value: { action: "allow", ruleId: 7, mtls: true } },
      { key: { localIdentity: CLIENT.identity, remoteIdentity: 0, port: 0, protocol: 0, direction: "egress" }, value: { action: "default-deny", ruleId: 0 } },
    ]);
    fabricServer = nodeIn(cleanup, fabric, "fabric server", ["-e", `require("node:net").createServer(s=>{console.log(JSON.stringify({remote:s.remoteAddress}));s.on("error",()=>{});s.on("data",d=>s.write("fabric:"+d))}).listen(${PORT},"0.0.0.0",()=>console.log("ready"))`]);
    await ready(fabricServer, "the fabric server");
    await echoServer(cleanup, client, "client", PORT);
  });
  afterAll(() => cleanup.run());
  beforeEach(() => {
    deleteAll(dp.maps.steer);
  });

  it("(c) without a steer entry the connection goes to the fabric untouched, from the workload's own address", async () => {
    await stopListener();
    const seen = fabricServer.lines.length;
    expect(await hello(client, REMOTE.address, PORT)).toBe("data:fabric:hello");
    await until("the fabric server to report the connection", 5_000, () => (fabricServer.lines.length > seen ? true : undefined));
    expect(fabricServer.lines.slice(seen)).toEqual([JSON.stringify({ remote: CLIENT.address })]);
  });

  it("(a) with a steer entry the transparent listener accepts the connection as if it were the original destination, bytes flow both ways", async () => {
    writeEntries(dp.maps.steer, "steer", steerEntries);
    await startListener();
    const fabricBefore = fabricPackets();
    const servedBefore = fabricServer.lines.length;
    const steered = metric("egress/steered");
    expect(await hello(client, REMOTE.address, PORT)).toBe("data:transport:hello");
    await until("the listener to report the connection", 5_000, () => (listener!.lines.length > 1 ? true : undefined));
    const accepted = listener!.lines.filter((l) => l !== "ready").map((l) => JSON.parse(l) as { local: string; remote: string });
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.local).toBe(`${REMOTE.address}:${PORT}`);
    expect(accepted[0]!.remote).toMatch(new RegExp(`^${CLIENT.address.replaceAll(".", "\\.")}:\\d+$`));
    // SYN, ACK, data, ... each steered; nothing of it crossed the fabric.
    expect(metric("egress/steered") - steered).toBeGreaterThanOrEqual(3n);
    expect(fabricPackets()).toBe(fabricBefore);
    expect(fabricServer.lines.length).toBe(servedBefore);
    await stopListener();
  });

  it("(b) without the transport's listener the SYN is dropped as transport-down, and nothing reaches the fabric", async () => {
    writeEntries(dp.maps.steer, "steer", steerEntries);
    await stopListener();
    const fabricBefore = fabricPackets();
    const down = metric("egress/transport-down");
    expect(await hello(client, REMOTE.address, PORT, undefined, 1200)).toBe("timeout");
    expect(metric("egress/transport-down") - down).toBeGreaterThanOrEqual(1n);
    expect(fabricPackets()).toBe(fabricBefore);
  });

  it("(e) a neighbour that puts the steered workload's address on its own veth is dropped, and the listener sees nothing", async () => {
    writeEntries(dp.maps.steer, "steer", steerEntries);
    await startListener();
    sh("ip", "-n", neighbour, "addr", "add", `${CLIENT.address}/32`, "dev", `${VETH}np`);
    try {
      const fabricBefore = fabricPackets();
      const spoofed = metric("egress/unknown-endpoint");
      expect(await hello(neighbour, REMOTE.address, PORT, CLIENT.address, 1200)).toBe("timeout");
      expect(metric("egress/unknown-endpoint") - spoofed).toBeGreaterThanOrEqual(1n);
      expect(listener!.lines.filter((l) => l !== "ready")).toEqual([]);
      expect(fabricPackets()).toBe(fabricBefore);
      // The real owner still gets through, from its own veth.
      expect(await hello(client, REMOTE.address, PORT)).toBe("data:transport:hello");
    } finally {
      sh("ip", "-n", neighbour, "addr", "del", `${CLIENT.address}/32`, "dev", `${VETH}np`);
      await stopListener();
    }
  });

  it("(f) a peer's connection the transport delivers is answered through the transport: the workload's replies are assigned to its socket", async () => {
    writeEntries(dp.maps.steer, "steer", [
      { key: { localIdentity: CLIENT.identity, remoteIdentity: REMOTE.identity, port: PORT, protocol: tcp, direction: "ingress" }, value: { action: "allow", ruleId: 8, mtls: true } },
      { key: { localIdentity: CLIENT.identity, remoteIdentity: 0, port: 0, protocol: 0, direction: "ingress" }, value: { action: "default-deny", ruleId: 0 } },
    ]);
    // The transport's delivery: a marked, transparent connection from the remote workload's address (nodeagent/src/transport/sockets.ts).
    const deliver = `const { connectMarked } = await import(${JSON.stringify(`${repoRoot}nodeagent/src/transport/sockets.ts`)});
const { MARK_TRANSPORT } = await import(${JSON.stringify(`${repoRoot}nodeagent/src/transport/abi.ts`)});
try { const s = await connectMarked({ address: ${JSON.stringify(CLIENT.address)}, port: ${PORT} }, { mark: MARK_TRANSPORT, source: ${JSON.stringify(REMOTE.address)}, timeoutMs: 3000 });
  let got = ""; s.on("data", (d) => (got += d)); s.on("end", () => { console.log("data:" + got + " local:" + s.localAddress); process.exit(0); });
} catch (e) { console.log("error:" + e.message); process.exit(0); }
setTimeout(() => { console.log("timeout"); process.exit(0); }, 4000);`;
    const fabricBefore = fabricPackets(true);
    const steered = metric("egress/steered");
    const { stdout } = await promisify(execFile)("nsenter", [`--net=/var/run/netns/${node}`, process.execPath, "--import", "tsx", "--input-type=module", "-e", deliver], { cwd: repoRoot, encoding: "utf8", timeout: 20_000 });
    expect(stdout.trim()).toBe(`data:client local:${REMOTE.address}`);
    // SYN-ACK, data, FIN at least: each assigned to the transparent socket, none routed to the fabric.
    expect(metric("egress/steered") - steered).toBeGreaterThanOrEqual(3n);
    expect(fabricPackets(true)).toBe(fabricBefore);
  });
});
