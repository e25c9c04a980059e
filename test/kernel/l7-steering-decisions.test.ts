/**
 * [R17] and [R18] (bpf/weft_policy.bpf.c) through BPF_PROG_TEST_RUN: which
 * packets weft_from_wl hands to the node's L7 proxy, that one with no proxy
 * socket to take it is dropped as proxy-down (never forwarded to a VIP that
 * nothing else answers), that a frontend's address sent from a veth that
 * does not own it is refused, and that weft_to_wl believes a frontend's
 * reply only from the proxy. A test run hands the frame to lo (ifindex 1) of
 * the calling thread's namespace, so lo stands for the client's own veth,
 * and the proxy's listener is looked up in that namespace: the listener case
 * runs in a namespace of its own (setns around the run). A test run cannot
 * show a successful assignment (its skb is not at tc ingress);
 * l7-steering.test.ts drives real connections through HAProxy.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import koffi from "koffi";
import { constants, decodeFlowEvents, encodeKey, maps, protocols, type Entry, type FlowEvent } from "@weft/codec";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RingBufferReader } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeNetns, repoRoot, toolsUnavailableReason } from "../support/kernel.ts";
import { until } from "../support/until.ts";
import { TCP_ACK, TCP_SYN, TCP_SYN_ACK, ipv4Frame, type Ipv4Frame } from "./packets.ts";
import { deleteAll, mapOf, PolicyHarness, writeEntries } from "./policy-harness.ts";

const { tcp, udp } = protocols;
const TENANT = 1;
const LO_IFINDEX = 1;
const CLIENT = { address: "198.18.160.2", identity: 3001 }; // its veth is lo
const NEIGHBOUR = { address: "198.18.160.6", identity: 3003, veth: 4243 }; // a workload of this node behind another veth
const BACKEND = { address: "198.18.161.10", identity: 3002 }; // a tenant's workload on another node
const VIP = "198.18.162.10";
const HTTP = 80; // the L7 frontend's port
const PLAIN = 81; // the same VIP's port without a weft_l7 entry
const CLIENT_PORT = 41000;

const defaultDeny = (localIdentity: number, direction: "ingress" | "egress"): Entry<"policy"> => ({
  key: { localIdentity, remoteIdentity: 0, port: 0, protocol: 0, direction },
  value: { action: "default-deny", ruleId: 0 },
});

const CLONE_NEWNET = 0x40000000;
let setns: ((fd: number, nstype: number) => number) | null = null;

/**
 * Runs `fn` with this thread in the network namespace `name` (setns), then
 * back home; the test run's lo and socket lookups are that namespace's.
 */
function inNetns<T>(name: string, fn: () => T): T {
  setns ??= koffi.load("libc.so.6").func("int setns(int fd, int nstype)") as (fd: number, nstype: number) => number;
  const home = openSync("/proc/thread-self/ns/net", "r");
  const there = openSync(`/var/run/netns/${name}`, "r");
  try {
    if (setns(there, CLONE_NEWNET) !== 0) throw new Error(`failed to enter netns ${name}: errno ${koffi.errno()}`);
    try {
      return fn();
    } finally {
      if (setns(home, CLONE_NEWNET) !== 0) throw new Error(`failed to return from netns ${name}: errno ${koffi.errno()}`);
    }
  } finally {
    closeSync(there);
    closeSync(home);
  }
}

const reason = toolsUnavailableReason([["ip", "-V"]]);

describe.skipIf(skipWithout("kernel (root, bpf, libbpf, iproute2)", reason))("L7 steering decisions (BPF_PROG_TEST_RUN)", () => {
  const cleanup = new Cleanup();
  let h: PolicyHarness;
  let ring: RingBufferReader;
  const fromClient = (p: Partial<Ipv4Frame>, mark = 0) =>
    h.verdictMarked("egress", ipv4Frame({ src: CLIENT.address, dst: VIP, protocol: tcp, sport: CLIENT_PORT, dport: HTTP, tcpFlags: TCP_ACK, ...p }), mark);
  const toClient = (p: Partial<Ipv4Frame>, mark = 0) =>
    h.verdictMarked("ingress", ipv4Frame({ src: VIP, dst: CLIENT.address, protocol: tcp, sport: HTTP, dport: CLIENT_PORT, tcpFlags: TCP_ACK, ...p }), mark);
  const events = (): FlowEvent[] => decodeFlowEvents(Buffer.concat(ring.drain()));

  beforeAll(() => {
    h = new PolicyHarness();
    ring = new RingBufferReader(h.obj.mapFd(maps.flow_ring.name));
    cleanup.add("close the ring reader", () => ring.close());
    const local = [CLIENT, NEIGHBOUR];
    h.endpoints(local.map((w) => ({ key: { address: w.address }, value: { identity: w.identity, tenant: TENANT } })));
    h.peers([...local, BACKEND].map((w) => ({ key: { prefix: `${w.address}/32` }, value: { identity: w.identity, tenant: TENANT } })));
    writeEntries(mapOf(h.obj, maps.local_veth), "local_veth", [
      { key: { address: CLIENT.address }, value: { ifindex: LO_IFINDEX } },
      { key: { address: NEIGHBOUR.address }, value: { ifindex: NEIGHBOUR.veth } },
    ]);
    writeEntries(mapOf(h.obj, maps.l7), "l7", [
      { key: { vip: VIP, port: HTTP, protocol: tcp }, value: { http: true } },
      // Never written by the compiler; here to show a tenant's workload never pays (or gets) the lookup.
      { key: { vip: BACKEND.address, port: HTTP, protocol: tcp }, value: { http: true } },
    ]);
    writeEntries(mapOf(h.obj, maps.flow_cfg), "flow_cfg", [{ key: { index: 0 }, value: { intervalNs: 1000n, burst: 100_000, allowed: true } }]);
    // The client is selected both ways: nothing is allowed to or from it but what [R17]/[R18] let through.
    h.setPolicy([defaultDeny(CLIENT.identity, "egress"), defaultDeny(CLIENT.identity, "ingress"), defaultDeny(NEIGHBOUR.identity, "egress")]);
  });
  beforeEach(() => {
    deleteAll(h.ct);
    events();
  });
  afterAll(async () => {
    await cleanup.run();
    h?.close();
  });

  it("drops a SYN to an L7 frontend when no proxy listens, and a segment of a connection no proxy holds: proxy-down, with an event", () => {
    expect(fromClient({ tcpFlags: TCP_SYN })).toEqual({ pass: false, reason: "proxy-down", mark: 0 });
    expect(fromClient({})).toEqual({ pass: false, reason: "proxy-down", mark: 0 });
    const seen = events().map((e) => [e.hook, e.reason, e.verdict, e.source.address, e.destination.address, e.destination.port, e.destination.identity]);
    expect(seen).toEqual([
      ["egress", "proxy-down", "drop", CLIENT.address, VIP, HTTP, constants.IDENTITY_PROXY],
      ["egress", "proxy-down", "drop", CLIENT.address, VIP, HTTP, constants.IDENTITY_PROXY],
    ]);
  });

  it("leaves what weft_l7 does not name to policy as before: another port of the VIP, UDP to the frontend's port", () => {
    expect(fromClient({ dport: PLAIN, tcpFlags: TCP_SYN })).toEqual({ pass: false, reason: "default-deny", mark: 0 });
    expect(fromClient({ protocol: udp })).toEqual({ pass: false, reason: "default-deny", mark: 0 });
  });

  it("never looks a tenant's workload up in weft_l7, even with an entry there", () => {
    expect(fromClient({ dst: BACKEND.address, tcpFlags: TCP_SYN })).toEqual({ pass: false, reason: "default-deny", mark: 0 });
  });

  it("still steers a VIP that a CIDR peer's ipcache entry covers (the entry names no tenant)", () => {
    const cidr = { prefix: "198.18.162.0/24" };
    writeEntries(h.ipcache, "ipcache", [{ key: cidr, value: { identity: 9001, tenant: 0 } }]);
    try {
      expect(fromClient({})).toEqual({ pass: false, reason: "proxy-down", mark: 0 });
    } finally {
      h.ipcache.delete(encodeKey("ipcache", cidr));
    }
    expect(fromClient({ dport: PLAIN })).toEqual({ pass: false, reason: "default-deny", mark: 0 });
  });

  it("refuses a frontend's packet from a veth that does not own its source address: unknown-endpoint", () => {
    expect(fromClient({ src: NEIGHBOUR.address, tcpFlags: TCP_SYN })).toEqual({ pass: false, reason: "unknown-endpoint", mark: 0 });
    expect(fromClient({ src: NEIGHBOUR.address, dport: PLAIN, tcpFlags: TCP_SYN })).toEqual({ pass: false, reason: "default-deny", mark: 0 });
  });

  it("passes the proxy's reply from a frontend to a default-deny client only with WEFT_MARK_PROXY", () => {
    expect(toClient({}, constants.MARK_PROXY)).toEqual({ pass: true, reason: "l7-steered", mark: constants.MARK_PROXY });
    expect(toClient({ tcpFlags: TCP_SYN_ACK }, constants.MARK_PROXY | 0x5)).toEqual({ pass: true, reason: "l7-steered", mark: constants.MARK_PROXY | 0x5 });
    expect(events()).toEqual([]);
    // Without the mark (forwarded from the fabric, another workload, a socket not bound to the frontend): policy, as before.
    expect(toClient({})).toEqual({ pass: false, reason: "default-deny", mark: 0 });
    expect(toClient({ tcpFlags: TCP_SYN_ACK }, constants.MARK_TO_TRANSPORT)).toEqual({ pass: false, reason: "default-deny", mark: constants.MARK_TO_TRANSPORT });
    // The proxy never opens a connection to a caller, and a port without an entry is no frontend.
    expect(toClient({ tcpFlags: TCP_SYN }, constants.MARK_PROXY)).toEqual({ pass: false, reason: "default-deny", mark: constants.MARK_PROXY });
    expect(toClient({ sport: PLAIN }, constants.MARK_PROXY)).toEqual({ pass: false, reason: "default-deny", mark: constants.MARK_PROXY });
    expect(toClient({ protocol: udp }, constants.MARK_PROXY)).toEqual({ pass: false, reason: "default-deny", mark: constants.MARK_PROXY });
  });

  describe("with the proxy's transparent listener at 127.0.0.1:L7_PROXY_PORT", () => {
    let ns: string;
    let listener: ChildProcess;

    beforeAll(async () => {
      ns = makeNetns(cleanup, "l7dec");
      execFileSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
      listener = spawn("ip", ["netns", "exec", ns, process.execPath, `${repoRoot}test/kernel/fixtures/transport-listener.mjs`, "127.0.0.1", String(constants.L7_PROXY_PORT), String(constants.MARK_PROXY)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      cleanup.add("stop the listener", () => void (listener.exitCode === null && listener.kill("SIGKILL")));
      let out = "";
      let err = "";
      listener.stdout!.on("data", (d: Buffer) => (out += String(d)));
      listener.stderr!.on("data", (d: Buffer) => (err += String(d)));
      await until("the listener to be ready", 10_000, () => (out.includes("ready") || listener.exitCode !== null ? true : undefined));
      if (!out.includes("ready")) throw new Error(`failed to start the listener: ${err}`);
    });

    it("fails closed when the listener is there but the assignment fails: proxy-down, no mark left behind", () => {
      // A test run's skb is not at tc ingress, so bpf_sk_assign refuses it
      // (EOPNOTSUPP; measured on 6.18): the one way to see a failed
      // assignment. l7-steering.test.ts proves the assignment with real traffic.
      expect(inNetns(ns, () => fromClient({ tcpFlags: TCP_SYN }))).toEqual({ pass: false, reason: "proxy-down", mark: 0 });
      // A segment of a connection the proxy does not hold is no listener's; another port of the VIP is policy's.
      expect(inNetns(ns, () => fromClient({}))).toEqual({ pass: false, reason: "proxy-down", mark: 0 });
      expect(inNetns(ns, () => fromClient({ dport: PLAIN, tcpFlags: TCP_SYN }))).toEqual({ pass: false, reason: "default-deny", mark: 0 });
      // A neighbour sending the client's address never gets as far as the lookup.
      expect(inNetns(ns, () => fromClient({ src: NEIGHBOUR.address, tcpFlags: TCP_SYN }))).toEqual({ pass: false, reason: "unknown-endpoint", mark: 0 });
    });
  });
});
