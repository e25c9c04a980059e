import fc from "fast-check";
import { constants, protocols, type Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipWithout } from "../support/prerequisites.ts";
import { kernelUnavailableReason } from "../support/kernel.ts";
import { intendedVerdict } from "../support/policy-oracle.ts";
import { arpFrame, ipv4Frame, ipv6Frame, truncatedFrame } from "./packets.ts";
import { PolicyHarness } from "./policy-harness.ts";

const { tcp, udp, icmp } = protocols;
const TENANT_A = 1;
const TENANT_B = 2;

const W = { address: "198.18.1.10", identity: 1001 }; // the guarded workload
const W2 = { address: "198.18.1.11", identity: 1010 }; // a workload no policy selects
const P1 = { prefix: "198.18.2.0/24", address: "198.18.2.7", identity: 1002 };
const P3 = { prefix: "198.18.3.5/32", address: "198.18.3.5", identity: 1003 };
const Q = { prefix: "198.18.9.0/24", address: "198.18.9.9", identity: 2001 }; // tenant B
const HOST = { prefix: "198.18.0.1/32", address: "198.18.0.1" };
const UNKNOWN = "198.19.200.1"; // in no ipcache prefix: the world

const rule = (
  direction: "ingress" | "egress",
  remoteIdentity: number,
  port: number,
  protocol: number,
  action: "allow" | "deny" | "default-deny",
  ruleId: number,
): Entry<"policy"> => ({ key: { localIdentity: W.identity, remoteIdentity, port, protocol, direction }, value: { action, ruleId } });

const rules: Entry<"policy">[] = [
  rule("ingress", 0, 0, 0, "default-deny", 0),
  rule("ingress", P1.identity, 80, tcp, "allow", 1),
  rule("ingress", P3.identity, 0, 0, "allow", 2),
  rule("ingress", P3.identity, 22, tcp, "deny", 3),
  rule("ingress", 0, 23, tcp, "deny", 5),
  rule("ingress", P1.identity, 23, tcp, "allow", 6),
  rule("ingress", 0, 53, udp, "allow", 7),
  rule("ingress", Q.identity, 80, tcp, "allow", 8),
  rule("ingress", constants.IDENTITY_WORLD, 8080, tcp, "allow", 9),
  rule("ingress", P1.identity, 0, icmp, "allow", 10),
  rule("ingress", P1.identity, 5000, 0, "allow", 11),
  rule("egress", 0, 0, 0, "default-deny", 0),
  rule("egress", P1.identity, 443, tcp, "allow", 20),
];

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, libbpf)", reason))("tc policy program (BPF_PROG_TEST_RUN)", () => {
  let h: PolicyHarness;

  beforeAll(() => {
    h = new PolicyHarness();
    h.endpoints([
      { key: { address: W.address }, value: { identity: W.identity, tenant: TENANT_A } },
      { key: { address: W2.address }, value: { identity: W2.identity, tenant: TENANT_A } },
    ]);
    h.peers([
      { key: { prefix: P1.prefix }, value: { identity: P1.identity, tenant: TENANT_A } },
      { key: { prefix: P3.prefix }, value: { identity: P3.identity, tenant: TENANT_A } },
      { key: { prefix: Q.prefix }, value: { identity: Q.identity, tenant: TENANT_B } },
      { key: { prefix: HOST.prefix }, value: { identity: constants.IDENTITY_HOST, tenant: 0 } },
    ]);
    h.setPolicy(normalizePolicy(rules));
  });
  afterAll(() => h?.close());

  const toW = (src: string, protocol: number, dport?: number) => h.verdict("ingress", ipv4Frame({ src, dst: W.address, protocol, dport }));
  const fromW = (dst: string, protocol: number, dport?: number) => h.verdict("egress", ipv4Frame({ src: W.address, dst, protocol, dport }));
  const allow = { pass: true, reason: "policy-allow" };
  const deny = { pass: false, reason: "policy-deny" };
  const defaultDeny = { pass: false, reason: "default-deny" };

  it("allows an exact (peer, port, protocol) entry and default-denies its neighbours", () => {
    expect(toW(P1.address, tcp, 80)).toEqual(allow);
    expect(toW(P1.address, tcp, 81)).toEqual(defaultDeny);
    expect(toW(P1.address, udp, 80)).toEqual(defaultDeny);
  });

  it("matches each wildcard: any port, any protocol, any peer, any port and protocol", () => {
    expect(toW(P1.address, icmp)).toEqual(allow); // (P1, any port, icmp)
    expect(toW(P1.address, udp, 5000)).toEqual(allow); // (P1, 5000, any protocol)
    expect(toW(P1.address, tcp, 5000)).toEqual(allow);
    expect(toW(P3.address, udp, 9999)).toEqual(allow); // (P3, any, any)
    expect(toW(P1.address, udp, 53)).toEqual(allow); // (any peer, 53, udp)
    expect(toW(HOST.address, udp, 53)).toEqual(allow);
  });

  it("lets deny win whatever the specificity", () => {
    expect(toW(P3.address, tcp, 22)).toEqual(deny); // narrow deny inside a broad allow
    expect(toW(P1.address, tcp, 23)).toEqual(deny); // broad deny over a narrow allow
    expect(toW(P3.address, tcp, 23)).toEqual(deny); // overlapping, neither covers the other
    expect(toW(UNKNOWN, tcp, 23)).toEqual(deny);
  });

  it("treats an unknown peer as the world identity", () => {
    expect(toW(UNKNOWN, tcp, 8080)).toEqual(allow);
    expect(toW(UNKNOWN, tcp, 80)).toEqual(defaultDeny);
  });

  it("drops cross-tenant traffic before policy, even when an entry allows it", () => {
    expect(toW(Q.address, tcp, 80)).toEqual({ pass: false, reason: "cross-tenant" });
    expect(h.verdict("ingress", ipv4Frame({ src: Q.address, dst: W2.address, protocol: tcp, dport: 80 }))).toEqual({
      pass: false,
      reason: "cross-tenant",
    });
  });

  it("passes traffic of a workload no policy selects", () => {
    expect(h.verdict("ingress", ipv4Frame({ src: P1.address, dst: W2.address, protocol: tcp, dport: 80 }))).toEqual({
      pass: true,
      reason: "unselected",
    });
  });

  it("keeps directions apart", () => {
    expect(fromW(P1.address, tcp, 443)).toEqual(allow);
    expect(fromW(P1.address, tcp, 80)).toEqual(defaultDeny);
    expect(fromW(P3.address, udp, 9999)).toEqual(defaultDeny); // P3's allow is ingress only
  });

  it("drops frames for addresses that are no local workload, IPv6 and truncated frames; passes ARP", () => {
    expect(h.verdict("ingress", ipv4Frame({ src: P1.address, dst: "198.18.1.99", protocol: tcp, dport: 80 }))).toEqual({
      pass: false,
      reason: "unknown-endpoint",
    });
    expect(h.verdict("egress", ipv6Frame())).toEqual({ pass: false, reason: "ipv6" });
    expect(h.verdict("ingress", arpFrame())).toEqual({ pass: true, reason: "not-ip" });
    expect(h.verdict("ingress", truncatedFrame({ src: P1.address, dst: W.address, protocol: tcp }))).toEqual({
      pass: false,
      reason: "malformed",
    });
  });

  it("matches non-first fragments only through any-port entries", () => {
    const frag = (src: string) => h.verdict("ingress", ipv4Frame({ src, dst: W.address, protocol: tcp, dport: 80, fragmentOffset: 10 }));
    expect(frag(P3.address)).toEqual(allow);
    expect(frag(P1.address)).toEqual(defaultDeny);
  });

  it("agrees with the intended semantics on random rule sets (normalised, then written)", () => {
    const peers = [P1, P3];
    const entry = fc.record({
      remote: fc.constantFrom(0, P1.identity, P3.identity),
      port: fc.constantFrom(0, 80, 443),
      protocol: fc.constantFrom(0, tcp, udp),
      action: fc.constantFrom("allow" as const, "deny" as const),
      direction: fc.constantFrom("ingress" as const, "egress" as const),
    });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 10 }), fc.boolean(), (raw, selected) => {
        const written: Entry<"policy">[] = raw.map((r, i) => rule(r.direction, r.remote, r.port, r.protocol, r.action, i + 1));
        if (selected) written.push(rule("ingress", 0, 0, 0, "default-deny", 0));
        h.setPolicy(normalizePolicy(written));
        for (const peer of peers) {
          for (const port of [80, 443, 8080]) {
            for (const protocol of [tcp, udp]) {
              const got = toW(peer.address, protocol, port);
              const want = intendedVerdict(written, { localIdentity: W.identity, remoteIdentity: peer.identity, port, protocol, direction: "ingress" });
              expect(got.reason).toBe(want);
              expect(got.pass).toBe(want === "policy-allow" || want === "unselected");
            }
          }
        }
      }),
      { numRuns: 40 },
    );
    h.setPolicy(normalizePolicy(rules));
  });
});
