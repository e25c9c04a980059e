/**
 * weft_from_wl's steering decisions that need no transport socket ([R16] in
 * bpf/README), through BPF_PROG_TEST_RUN: which packets weft_steer takes,
 * that a steered packet with no socket to go to is dropped (never forwarded
 * in plaintext), that a steered address sent from another veth is refused,
 * and that conntrack keeps a plaintext flow whose ports match a steered one
 * out of it. A test run hands the frame to lo (ifindex 1), so lo stands for
 * the steered workload's own veth. transport-steering.test.ts drives the
 * socket paths with real namespaces.
 */
import { maps, protocols, type Entry } from "@weft/codec";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { skipWithout } from "../support/prerequisites.ts";
import { kernelUnavailableReason } from "../support/kernel.ts";
import { TCP_ACK, TCP_SYN, ipv4Frame, type Ipv4Frame } from "./packets.ts";
import { deleteAll, mapOf, PolicyHarness, writeEntries } from "./policy-harness.ts";

const { tcp, udp } = protocols;
const TENANT = 1;
const LO_IFINDEX = 1;
const OPENS_TO = 8080; // the workload's connections to the remote on this port are steered (egress)
const SERVES_ON = 9000; // the remote's connections to the workload on this port come through the transport (ingress)
const WORKLOAD = { address: "198.18.150.2", identity: 2001 };
const NEIGHBOUR = { address: "198.18.150.6", identity: 2003, veth: 4243 }; // steered too, but its veth is not lo
const REMOTE = { address: "198.18.151.10", identity: 2002 }; // another node's workload
const WORLD = "198.18.152.1"; // no ipcache entry: not a tenant's workload

const steer = (localIdentity: number, direction: "ingress" | "egress", port: number): Entry<"steer">[] => [
  { key: { localIdentity, remoteIdentity: REMOTE.identity, port, protocol: tcp, direction }, value: { action: "allow", ruleId: 9, mtls: true } },
  { key: { localIdentity, remoteIdentity: 0, port: 0, protocol: 0, direction }, value: { action: "default-deny", ruleId: 0 } },
];

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, libbpf)", reason))("steering decisions without a transport socket (BPF_PROG_TEST_RUN)", () => {
  let h: PolicyHarness;
  const fromWorkload = (p: Partial<Ipv4Frame>) => h.verdict("egress", ipv4Frame({ src: WORKLOAD.address, dst: REMOTE.address, protocol: tcp, sport: 41000, dport: OPENS_TO, tcpFlags: TCP_ACK, ...p }));

  beforeAll(() => {
    h = new PolicyHarness();
    const local = [WORKLOAD, NEIGHBOUR];
    h.endpoints(local.map((w) => ({ key: { address: w.address }, value: { identity: w.identity, tenant: TENANT } })));
    h.peers([...local, REMOTE].map((w) => ({ key: { prefix: `${w.address}/32` }, value: { identity: w.identity, tenant: TENANT } })));
    writeEntries(mapOf(h.obj, maps.local_veth), "local_veth", [
      { key: { address: WORKLOAD.address }, value: { ifindex: LO_IFINDEX } },
      { key: { address: NEIGHBOUR.address }, value: { ifindex: NEIGHBOUR.veth } },
    ]);
    writeEntries(mapOf(h.obj, maps.steer), "steer", [...steer(WORKLOAD.identity, "egress", OPENS_TO), ...steer(WORKLOAD.identity, "ingress", SERVES_ON), ...steer(NEIGHBOUR.identity, "egress", OPENS_TO)]);
  });
  beforeEach(() => deleteAll(h.ct));
  afterAll(() => h?.close());

  it("drops a segment of a steered connection that has no transport socket: transport-down, never out in plaintext", () => {
    expect(fromWorkload({})).toEqual({ pass: false, reason: "transport-down" });
  });

  it("leaves alone what weft_steer does not name: another port, UDP, an address that is no tenant's workload", () => {
    expect(fromWorkload({ dport: OPENS_TO + 1 })).toEqual({ pass: true, reason: "unselected" });
    expect(fromWorkload({ protocol: udp })).toEqual({ pass: true, reason: "unselected" });
    expect(fromWorkload({ dst: WORLD })).toEqual({ pass: true, reason: "unselected" });
  });

  it("takes the workload's answers on a port the remote reaches through the transport, but never its own bare SYN from that port", () => {
    expect(fromWorkload({ sport: SERVES_ON, dport: 45000 })).toEqual({ pass: false, reason: "transport-down" });
    expect(fromWorkload({ sport: SERVES_ON, dport: 45000, tcpFlags: TCP_SYN })).toEqual({ pass: true, reason: "unselected" });
  });

  it("keeps a plaintext connection the workload itself opened out of the transport when its ports happen to match (conntrack)", () => {
    expect(fromWorkload({ sport: SERVES_ON, dport: 45001, tcpFlags: TCP_SYN })).toEqual({ pass: true, reason: "unselected" });
    expect(fromWorkload({ sport: SERVES_ON, dport: 45001 })).toEqual({ pass: true, reason: "unselected" });
    // Without that connection's opening the same segment is the transport's, and fails closed.
    deleteAll(h.ct);
    expect(fromWorkload({ sport: SERVES_ON, dport: 45001 })).toEqual({ pass: false, reason: "transport-down" });
  });

  it("refuses a steered workload's address sent from a veth that is not its own (a neighbour borrowing its SVID)", () => {
    expect(h.verdict("egress", ipv4Frame({ src: NEIGHBOUR.address, dst: REMOTE.address, protocol: tcp, sport: 41000, dport: OPENS_TO, tcpFlags: TCP_ACK }))).toEqual({ pass: false, reason: "unknown-endpoint" });
    expect(h.verdict("egress", ipv4Frame({ src: NEIGHBOUR.address, dst: REMOTE.address, protocol: tcp, sport: 41000, dport: OPENS_TO + 1, tcpFlags: TCP_ACK }))).toEqual({ pass: true, reason: "unselected" });
  });
});
