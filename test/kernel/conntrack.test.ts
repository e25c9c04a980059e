/**
 * Connection tracking in the tc policy program, through BPF_PROG_TEST_RUN:
 * replies of a flow the policy allows pass without an allow entry of their
 * own, unsolicited packets in the reply direction do not, and a policy
 * change stops established flows as well as new ones (bpf/README.md).
 */
import { decodeEntries, encodeEntries, protocols, type Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { skipWithout } from "../support/prerequisites.ts";
import { kernelUnavailableReason } from "../support/kernel.ts";
import { ICMP_ECHO, ICMP_ECHO_REPLY, TCP_ACK, TCP_SYN, TCP_SYN_ACK, ipv4Frame, type Ipv4Frame } from "./packets.ts";
import { deleteAll, PolicyHarness } from "./policy-harness.ts";

const { tcp, udp, icmp } = protocols;
const W = { address: "198.18.5.10", identity: 1001 }; // selected in both directions
const W2 = { address: "198.18.5.11", identity: 1010 }; // selected for egress only
const P = { address: "198.18.6.7", identity: 1002 };
const Q = { address: "198.18.7.7", identity: 2001 }; // another tenant

const rule = (localIdentity: number, direction: "ingress" | "egress", remoteIdentity: number, port: number, protocol: number, action: "allow" | "deny" | "default-deny", ruleId: number): Entry<"policy"> => ({
  key: { localIdentity, remoteIdentity, port, protocol, direction },
  value: { action, ruleId },
});

const base: Entry<"policy">[] = [
  rule(W.identity, "ingress", 0, 0, 0, "default-deny", 0),
  rule(W.identity, "ingress", P.identity, 80, tcp, "allow", 1),
  rule(W.identity, "ingress", P.identity, 53, udp, "allow", 2),
  rule(W.identity, "ingress", P.identity, 0, icmp, "allow", 3),
  rule(W.identity, "ingress", Q.identity, 80, tcp, "allow", 4), // never reachable: another tenant
  rule(W.identity, "egress", 0, 0, 0, "default-deny", 0),
  rule(W.identity, "egress", P.identity, 443, tcp, "allow", 5),
  rule(W2.identity, "egress", 0, 0, 0, "default-deny", 0),
];

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, libbpf)", reason))("tc policy program: connection tracking", () => {
  let h: PolicyHarness;
  beforeAll(() => {
    h = new PolicyHarness();
    h.endpoints([
      { key: { address: W.address }, value: { identity: W.identity, tenant: 1 } },
      { key: { address: W2.address }, value: { identity: W2.identity, tenant: 1 } },
    ]);
    h.peers([
      { key: { prefix: `${P.address}/32` }, value: { identity: P.identity, tenant: 1 } },
      { key: { prefix: `${Q.address}/32` }, value: { identity: Q.identity, tenant: 2 } },
    ]);
  });
  beforeEach(() => {
    deleteAll(h.ct); // each case opens its own flows
    h.setPolicy(normalizePolicy(base));
  });
  afterAll(() => h?.close());

  const toW = (p: Omit<Ipv4Frame, "dst">, dst = W.address) => h.verdict("ingress", ipv4Frame({ ...p, dst }));
  const fromW = (p: Omit<Ipv4Frame, "src">, src = W.address) => h.verdict("egress", ipv4Frame({ ...p, src }));
  const allow = { pass: true, reason: "policy-allow" };
  const reply = { pass: true, reason: "ct-reply" };
  const defaultDeny = { pass: false, reason: "default-deny" };

  it("passes the replies of an allowed inbound TCP connection and records the reply tuple", () => {
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 80 })).toEqual(allow);
    const dump = h.ct.dump();
    expect(decodeEntries("ct", dump.keys, dump.values)).toEqual([
      {
        key: { local: W.address, remote: P.address, localPort: 80, remotePort: 40000, protocol: tcp, direction: "egress" },
        value: { localIdentity: W.identity, remoteIdentity: P.identity },
      },
    ]);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_SYN_ACK })).toEqual(reply);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_ACK })).toEqual(reply);
    // The client's later segments are no openers: they pass on policy and add nothing.
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 80, tcpFlags: TCP_ACK })).toEqual(allow);
    expect(h.ct.dump().count).toBe(1);
  });

  it("drops unsolicited packets in the reply direction", () => {
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 80 })).toEqual(allow);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40001, tcpFlags: TCP_ACK })).toEqual(defaultDeny); // other peer port
    expect(fromW({ dst: P.address, protocol: tcp, sport: 81, dport: 40000, tcpFlags: TCP_ACK })).toEqual(defaultDeny); // other local port
    expect(fromW({ dst: P.address, protocol: udp, sport: 80, dport: 40000 })).toEqual(defaultDeny); // other protocol
    // A bare SYN is never a reply, even on the recorded tuple: W cannot open connections to P through it.
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_SYN })).toEqual(defaultDeny);
    // Without any opener, nothing in either direction is a reply.
    expect(toW({ src: P.address, protocol: tcp, sport: 443, dport: 50000, tcpFlags: TCP_SYN_ACK })).toEqual(defaultDeny);
  });

  it("passes the replies of an allowed outbound connection", () => {
    expect(fromW({ dst: P.address, protocol: tcp, sport: 50000, dport: 443 })).toEqual(allow);
    expect(toW({ src: P.address, protocol: tcp, sport: 443, dport: 50000, tcpFlags: TCP_SYN_ACK })).toEqual(reply);
    expect(toW({ src: P.address, protocol: tcp, sport: 444, dport: 50000, tcpFlags: TCP_SYN_ACK })).toEqual(defaultDeny);
  });

  it("tracks UDP datagrams and ICMP echo by echo id", () => {
    expect(toW({ src: P.address, protocol: udp, sport: 5353, dport: 53 })).toEqual(allow);
    expect(fromW({ dst: P.address, protocol: udp, sport: 53, dport: 5353 })).toEqual(reply);
    expect(fromW({ dst: P.address, protocol: udp, sport: 53, dport: 5354 })).toEqual(defaultDeny);

    expect(toW({ src: P.address, protocol: icmp, icmpType: ICMP_ECHO, icmpId: 7 })).toEqual(allow);
    expect(fromW({ dst: P.address, protocol: icmp, icmpType: ICMP_ECHO_REPLY, icmpId: 7 })).toEqual(reply);
    expect(fromW({ dst: P.address, protocol: icmp, icmpType: ICMP_ECHO_REPLY, icmpId: 8 })).toEqual(defaultDeny);
    // An echo request is no reply, whatever its id.
    expect(fromW({ dst: P.address, protocol: icmp, icmpType: ICMP_ECHO, icmpId: 7 })).toEqual(defaultDeny);
  });

  it("records flows of a workload no policy selects in that direction, so its selected side lets replies out", () => {
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 8080 }, W2.address)).toEqual({ pass: true, reason: "unselected" });
    expect(fromW({ dst: P.address, protocol: tcp, sport: 8080, dport: 40000, tcpFlags: TCP_SYN_ACK }, W2.address)).toEqual(reply);
  });

  it("lets the replies of an allowed connection through an explicit deny of the reply direction", () => {
    // Deny rules govern who may open a connection; a reply belongs to the opener's connection.
    h.setPolicy(normalizePolicy([...base, rule(W.identity, "egress", P.identity, 0, 0, "deny", 9)]));
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 80 })).toEqual(allow);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_SYN_ACK })).toEqual(reply);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 50000, dport: 443 })).toEqual({ pass: false, reason: "policy-deny" });
  });

  it("stops established flows as well as new ones when the policy stops allowing them, and resumes them when it does again", () => {
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 80 })).toEqual(allow);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_SYN_ACK })).toEqual(reply);

    h.setPolicy(normalizePolicy([...base, rule(W.identity, "ingress", P.identity, 80, tcp, "deny", 10)]));
    expect(toW({ src: P.address, protocol: tcp, sport: 40001, dport: 80 })).toEqual({ pass: false, reason: "policy-deny" }); // new
    expect(toW({ src: P.address, protocol: tcp, sport: 40000, dport: 80, tcpFlags: TCP_ACK })).toEqual({ pass: false, reason: "policy-deny" }); // established, forward
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_ACK })).toEqual(defaultDeny); // established, reply

    h.setPolicy(normalizePolicy(base.filter((e) => e.value.ruleId !== 1))); // allow removed, no deny: default-deny
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_ACK })).toEqual(defaultDeny);

    // Entries are not removed on revocation, so a flip back resumes the connection without a new handshake.
    h.setPolicy(normalizePolicy(base));
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_ACK })).toEqual(reply);
  });

  it("keeps tenants apart and refuses an entry recorded under other identities", () => {
    // A forged entry for another tenant's peer: the tenant check comes first.
    const forged = (remote: string, remoteIdentity: number) =>
      encodeEntries("ct", [
        {
          key: { local: W.address, remote, localPort: 80, remotePort: 40000, protocol: tcp, direction: "egress" },
          value: { localIdentity: W.identity, remoteIdentity },
        },
      ]);
    const q = forged(Q.address, Q.identity);
    h.ct.updateBatch(q.keys, q.values);
    expect(toW({ src: Q.address, protocol: tcp, sport: 40000, dport: 80 })).toEqual({ pass: false, reason: "cross-tenant" });
    expect(fromW({ dst: Q.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_ACK })).toEqual({ pass: false, reason: "cross-tenant" });

    // The address now belongs to another identity (a reused workload address): no reply.
    const stale = forged(P.address, P.identity + 1);
    h.ct.updateBatch(stale.keys, stale.values);
    expect(fromW({ dst: P.address, protocol: tcp, sport: 80, dport: 40000, tcpFlags: TCP_ACK })).toEqual(defaultDeny);
  });
});
