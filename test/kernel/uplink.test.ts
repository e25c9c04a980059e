/**
 * The cross-node fast path's receiving side ([R12] in bpf/README):
 * weft_from_uplink on the node's uplink takes, for a packet to a workload of
 * the node, exactly the decision weft_to_wl takes on the workload's veth (same
 * reason counted on the ingress hook, same conntrack), and hands a passing
 * packet to the workload's veth peer (TC_ACT_REDIRECT) with its TTL one lower;
 * everything else on the uplink goes to the host untouched and uncounted.
 * Through BPF_PROG_TEST_RUN: no interface is attached.
 */
import { maps, protocols, type Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testRun, TC_ACT_OK, TC_ACT_SHOT } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { kernelUnavailableReason } from "../support/kernel.ts";
import { arpFrame, ICMP_ECHO, TCP_ACK, TCP_SYN, TCP_SYN_ACK, ipv4Frame, ipv6Frame, truncatedFrame, type Ipv4Frame } from "./packets.ts";
import { deleteAll, mapOf, PolicyHarness, readMetrics, writeEntries } from "./policy-harness.ts";

const { tcp, udp, icmp } = protocols;
const TC_ACT_REDIRECT = 7;
const TENANT = 1;
const PORT = 8080;
const SERVER = { address: "198.18.105.6", identity: 1002, veth: 4242 }; // a workload of this node
const IDLE = { address: "198.18.105.7", identity: 1004, veth: 4243 }; // of this node, selected by no policy
const CLIENT = { address: "198.18.106.2", identity: 1001 }; // on another node, admitted on PORT
const STRANGER = { address: "198.18.106.3", identity: 1003 }; // on another node, not admitted
const FOREIGN = { address: "198.18.106.4", identity: 3001 }; // another tenant's workload
const NOT_MINE = "198.18.107.9"; // another node's workload, or anything else routed through this node

/** What the host's stack sees as addressed to it: test runs give the frame to lo, whose MAC is all zeros. */
const toHost = (frame: Uint8Array): Uint8Array => (frame.fill(0, 0, 6), frame);
const frame = (p: Ipv4Frame): Uint8Array => toHost(ipv4Frame(p));

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, libbpf)", reason))("uplink program: the receiving node's fast path (BPF_PROG_TEST_RUN)", () => {
  let h: PolicyHarness;
  let uplink: number;

  /** Runs weft_from_uplink; the metrics slots that grew, and the packet as it left. */
  function run(data: Uint8Array): { retval: number; grown: string[]; out: Uint8Array } {
    const before = readMetrics(h.metrics);
    const { retval, dataOut } = testRun(uplink, data, { dataOutSize: data.length + 64 });
    const after = readMetrics(h.metrics);
    const grown = [...after].filter(([slot, n]) => n !== (before.get(slot) ?? 0n)).map(([slot, n]) => `${slot}+${n - (before.get(slot) ?? 0n)}`);
    return { retval, grown, out: dataOut };
  }

  beforeAll(() => {
    h = new PolicyHarness();
    uplink = h.obj.programFd("weft_from_uplink");
    const local = [SERVER, IDLE];
    const all = [SERVER, IDLE, CLIENT, STRANGER];
    h.endpoints(local.map((w) => ({ key: { address: w.address }, value: { identity: w.identity, tenant: TENANT } })));
    h.peers([
      ...all.map((w) => ({ key: { prefix: `${w.address}/32` }, value: { identity: w.identity, tenant: TENANT } })),
      { key: { prefix: `${FOREIGN.address}/32` }, value: { identity: FOREIGN.identity, tenant: 2 } },
    ]);
    h.setPolicy(
      normalizePolicy([
        { key: { localIdentity: SERVER.identity, remoteIdentity: CLIENT.identity, port: PORT, protocol: tcp, direction: "ingress" }, value: { action: "allow", ruleId: 1 } },
        { key: { localIdentity: SERVER.identity, remoteIdentity: CLIENT.identity, port: 0, protocol: icmp, direction: "ingress" }, value: { action: "allow", ruleId: 2 } },
      ]),
    );
    const entries: Entry<"local_veth">[] = local.map((w) => ({ key: { address: w.address }, value: { ifindex: w.veth } }));
    writeEntries(mapOf(h.obj, maps.local_veth), "local_veth", entries);
  });
  afterAll(() => h?.close());

  const cases: [string, Ipv4Frame][] = [
    ["an admitted client's SYN", { src: CLIENT.address, dst: SERVER.address, protocol: tcp, dport: PORT }],
    ["an admitted client's established segment", { src: CLIENT.address, dst: SERVER.address, protocol: tcp, dport: PORT, tcpFlags: TCP_ACK }],
    ["an admitted client's ping", { src: CLIENT.address, dst: SERVER.address, protocol: icmp, icmpType: ICMP_ECHO, icmpId: 7 }],
    ["the admitted client on another port", { src: CLIENT.address, dst: SERVER.address, protocol: tcp, dport: 9090 }],
    ["a stranger's SYN", { src: STRANGER.address, dst: SERVER.address, protocol: tcp, dport: PORT }],
    ["an unknown (world) sender", { src: "198.18.200.1", dst: SERVER.address, protocol: udp, dport: PORT }],
    ["another tenant's workload", { src: FOREIGN.address, dst: SERVER.address, protocol: tcp, dport: PORT }],
    ["a non-first fragment", { src: CLIENT.address, dst: SERVER.address, protocol: tcp, fragmentOffset: 10 }],
    ["a datagram to a workload no policy selects", { src: STRANGER.address, dst: IDLE.address, protocol: udp, dport: 53 }],
  ];

  it.each(cases)("%s: the same verdict and reason as weft_to_wl on the workload's veth", (_, p) => {
    const onVeth = h.verdict("ingress", ipv4Frame(p));
    const { retval, grown } = run(frame(p));
    expect(grown).toEqual([`ingress/${onVeth.reason}+1`]);
    expect(retval).toBe(onVeth.pass ? TC_ACT_REDIRECT : TC_ACT_SHOT);
  });

  it("passes a reply of a flow the workload opened (conntrack), as weft_to_wl does, and keeps revoking it with the policy", () => {
    // The server opens to the stranger (its egress: no policy selects it), then the stranger answers.
    expect(h.verdict("egress", ipv4Frame({ src: SERVER.address, dst: STRANGER.address, protocol: tcp, sport: 41000, dport: 5432 }))).toEqual({ pass: true, reason: "unselected" });
    const reply: Ipv4Frame = { src: STRANGER.address, dst: SERVER.address, protocol: tcp, sport: 5432, dport: 41000, tcpFlags: TCP_SYN_ACK };
    expect(run(frame(reply))).toMatchObject({ retval: TC_ACT_REDIRECT, grown: ["ingress/ct-reply+1"] });
    expect(h.verdict("ingress", ipv4Frame(reply))).toEqual({ pass: true, reason: "ct-reply" });
    // Unsolicited: the same ports the other way round were never opened.
    const unsolicited: Ipv4Frame = { src: STRANGER.address, dst: SERVER.address, protocol: tcp, sport: 5433, dport: 41000, tcpFlags: TCP_ACK };
    expect(run(frame(unsolicited))).toMatchObject({ retval: TC_ACT_SHOT, grown: ["ingress/default-deny+1"] });
  });

  it("opens conntrack for an admitted SYN as weft_to_wl would: the server's reply passes its egress as ct-reply", () => {
    deleteAll(h.ct);
    h.setPolicy(
      normalizePolicy([
        { key: { localIdentity: SERVER.identity, remoteIdentity: CLIENT.identity, port: PORT, protocol: tcp, direction: "ingress" }, value: { action: "allow", ruleId: 1 } },
        { key: { localIdentity: SERVER.identity, remoteIdentity: 0, port: 443, protocol: tcp, direction: "egress" }, value: { action: "allow", ruleId: 3 } },
      ]),
    );
    const reply = ipv4Frame({ src: SERVER.address, dst: CLIENT.address, protocol: tcp, sport: PORT, dport: 40000, tcpFlags: TCP_SYN_ACK });
    expect(h.verdict("egress", reply)).toEqual({ pass: false, reason: "default-deny" });
    expect(run(frame({ src: CLIENT.address, dst: SERVER.address, protocol: tcp, sport: 40000, dport: PORT, tcpFlags: TCP_SYN }))).toMatchObject({ retval: TC_ACT_REDIRECT, grown: ["ingress/policy-allow+1"] });
    expect(h.verdict("egress", reply)).toEqual({ pass: true, reason: "ct-reply" });
  });

  /** The ones' complement sum of the IPv4 header (0xffff when its checksum is right). */
  const headerSum = (f: Uint8Array): number => {
    let sum = 0;
    for (let i = 14; i < 34; i += 2) sum += (f[i]! << 8) | f[i + 1]!;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    return sum;
  };

  it("lowers the TTL by one and keeps the IPv4 header checksum right", () => {
    const data = frame({ src: CLIENT.address, dst: SERVER.address, protocol: tcp, dport: PORT });
    const check = ~headerSum(data) & 0xffff;
    data[24] = check >> 8;
    data[25] = check & 0xff;
    expect(headerSum(data)).toBe(0xffff);
    const { retval, out } = run(data);
    expect(retval).toBe(TC_ACT_REDIRECT);
    expect(out[14 + 8]).toBe(63);
    expect(headerSum(out)).toBe(0xffff);
  });

  it.each([
    ["a packet for an address that is no workload of this node", frame({ src: CLIENT.address, dst: NOT_MINE, protocol: tcp, dport: PORT })],
    ["a packet for a workload of this node whose TTL would expire on the hop", (() => { const f = frame({ src: STRANGER.address, dst: SERVER.address, protocol: tcp, dport: PORT }); f[14 + 8] = 1; return f; })()],
    ["a frame not addressed to this host (another MAC, flooded by the switch)", ipv4Frame({ src: STRANGER.address, dst: SERVER.address, protocol: tcp, dport: PORT })],
    ["IPv6", toHost(ipv6Frame())],
    ["ARP", toHost(arpFrame())],
    ["a truncated frame (the host forwards it, weft_to_wl drops it)", toHost(truncatedFrame({ src: STRANGER.address, dst: SERVER.address, protocol: tcp, dport: PORT }))],
  ])("leaves %s to the host, unchanged and uncounted", (_, data) => {
    const copy = Uint8Array.from(data);
    const { retval, grown, out } = run(data);
    expect(retval).toBe(TC_ACT_OK);
    expect(grown).toEqual([]);
    expect(out).toEqual(copy);
  });

  it("delivers nothing once the agent's map names no veth (host routing off)", () => {
    const lv = mapOf(h.obj, maps.local_veth);
    const saved = lv.dump();
    try {
      deleteAll(lv);
      expect(run(frame({ src: CLIENT.address, dst: SERVER.address, protocol: tcp, dport: PORT }))).toMatchObject({ retval: TC_ACT_OK, grown: [] });
    } finally {
      lv.updateBatch(saved.keys, saved.values);
    }
  });

});
