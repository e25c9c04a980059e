/**
 * The receiving side of the node transport ([R15] in bpf/README), through
 * BPF_PROG_TEST_RUN with skb->mark set in the context: where a policy hit
 * that passes a packet asks for mtls (WEFT_POLICY_F_MTLS), weft_to_wl admits
 * it only with the transport's mark or from a workload of this node, and
 * weft_from_uplink never (nothing from the fabric came through the
 * transport). Replies of a flow an mtls rule let the workload open are held
 * to the same rule: a forged reply from the fabric is dropped.
 */
import { constants, maps, protocols, type Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { testRun, TC_ACT_SHOT } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { kernelUnavailableReason } from "../support/kernel.ts";
import { TCP_ACK, TCP_SYN_ACK, ipv4Frame, type Ipv4Frame } from "./packets.ts";
import { deleteAll, mapOf, PolicyHarness, readMetrics, writeEntries } from "./policy-harness.ts";

const { tcp, udp } = protocols;
const TC_ACT_REDIRECT = 7;
const TENANT = 1;
const MTLS_PORT = 8080;
const PLAIN_PORT = 9090;
const SERVER = { address: "198.18.140.6", identity: 1002, veth: 4242 }; // a workload of this node
const NEIGHBOUR = { address: "198.18.140.7", identity: 1001, veth: 4243 }; // the client's identity, also on this node
const CLIENT = { address: "198.18.141.2", identity: 1001 }; // the same identity on another node
const BACKEND = { address: "198.18.141.3", identity: 1003 }; // on another node; the server opens to it over mtls

const rule = (direction: "ingress" | "egress", remoteIdentity: number, port: number, ruleId: number, mtls: boolean): Entry<"policy"> => ({
  key: { localIdentity: SERVER.identity, remoteIdentity, port, protocol: tcp, direction },
  value: mtls ? { action: "allow", ruleId, mtls: true } : { action: "allow", ruleId },
});

/** struct __sk_buff with only mark (offset 8) set: what BPF_PROG_TEST_RUN accepts as context. */
function ctxWithMark(mark: number): Uint8Array {
  const ctx = new Uint8Array(192);
  new DataView(ctx.buffer).setUint32(8, mark, true);
  return ctx;
}

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, libbpf)", reason))("transport enforcement on the receiving side (BPF_PROG_TEST_RUN)", () => {
  let h: PolicyHarness;
  let toWl: number;
  let uplink: number;

  /** Runs a program on a frame with skb->mark; the tc verdict and the one metrics slot that grew. */
  function run(prog: number, p: Ipv4Frame, mark: number, toHost = false): { retval: number; counted: string[] } {
    const data = ipv4Frame(p);
    if (toHost) data.fill(0, 0, 6); // test runs hand the frame to lo, whose MAC is zeros: addressed to this host
    const before = readMetrics(h.metrics);
    const { retval } = testRun(prog, data, { ctx: ctxWithMark(mark) });
    const after = readMetrics(h.metrics);
    const counted = [...after].filter(([slot, n]) => n !== (before.get(slot) ?? 0n)).map(([slot, n]) => `${slot}+${n - (before.get(slot) ?? 0n)}`);
    return { retval, counted };
  }
  const toServer = (p: Partial<Ipv4Frame> & { src: string }, mark = 0) => run(toWl, { dst: SERVER.address, protocol: tcp, dport: MTLS_PORT, ...p }, mark);
  const fromFabric = (p: Partial<Ipv4Frame> & { src: string }, mark = 0) => run(uplink, { dst: SERVER.address, protocol: tcp, dport: MTLS_PORT, ...p }, mark, true);

  beforeAll(() => {
    h = new PolicyHarness();
    toWl = h.obj.programFd("weft_to_wl");
    uplink = h.obj.programFd("weft_from_uplink");
    h.endpoints([SERVER, NEIGHBOUR].map((w) => ({ key: { address: w.address }, value: { identity: w.identity, tenant: TENANT } })));
    h.peers([SERVER, NEIGHBOUR, CLIENT, BACKEND].map((w) => ({ key: { prefix: `${w.address}/32` }, value: { identity: w.identity, tenant: TENANT } })));
    writeEntries(mapOf(h.obj, maps.local_veth), "local_veth", [SERVER, NEIGHBOUR].map((w) => ({ key: { address: w.address }, value: { ifindex: w.veth } })));
  });
  beforeEach(() => {
    deleteAll(h.ct);
    h.setPolicy(
      normalizePolicy([
        rule("ingress", CLIENT.identity, MTLS_PORT, 1, true),
        rule("ingress", CLIENT.identity, PLAIN_PORT, 2, false),
        rule("egress", BACKEND.identity, 5432, 3, true),
      ]),
    );
  });
  afterAll(() => h?.close());

  describe("weft_to_wl on the workload's veth", () => {
    it("drops a packet an mtls rule admits when it comes from another node without the transport's mark", () => {
      expect(toServer({ src: CLIENT.address })).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
      expect(toServer({ src: CLIENT.address, tcpFlags: TCP_ACK })).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
    });

    it("passes the same packet delivered by the transport (its sockets carry WEFT_MARK_TRANSPORT), whatever else the mark holds", () => {
      expect(toServer({ src: CLIENT.address }, constants.MARK_TRANSPORT)).toEqual({ retval: 0, counted: ["ingress/policy-allow+1"] });
      expect(toServer({ src: CLIENT.address, tcpFlags: TCP_ACK }, constants.MARK_TRANSPORT | 0x7)).toEqual({ retval: 0, counted: ["ingress/policy-allow+1"] });
    });

    it("does not take the mark the steering sets on the way in (WEFT_MARK_TO_TRANSPORT) for the transport's", () => {
      expect(toServer({ src: CLIENT.address }, constants.MARK_TO_TRANSPORT)).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
    });

    it("passes a workload of this node with the rule's identity: local pairs never go through the transport", () => {
      expect(toServer({ src: NEIGHBOUR.address })).toEqual({ retval: 0, counted: ["ingress/policy-allow+1"] });
    });

    it("passes what a plaintext rule admits, from another node, without the mark", () => {
      expect(toServer({ src: CLIENT.address, dport: PLAIN_PORT })).toEqual({ retval: 0, counted: ["ingress/policy-allow+1"] });
    });

    it("still drops what no rule admits as before (the mark grants nothing by itself)", () => {
      expect(toServer({ src: CLIENT.address, dport: 7070 }, constants.MARK_TRANSPORT)).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/default-deny+1"] });
      expect(toServer({ src: CLIENT.address, protocol: udp, dport: MTLS_PORT }, constants.MARK_TRANSPORT)).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/default-deny+1"] });
    });

    it("holds replies of a connection an mtls rule let the workload open to the same rule: a forged reply from the fabric drops", () => {
      // The server opens to the backend over an mtls egress rule (its SYN passes its egress and opens conntrack).
      expect(h.verdict("egress", ipv4Frame({ src: SERVER.address, dst: BACKEND.address, protocol: tcp, sport: 41000, dport: 5432 }))).toEqual({ pass: true, reason: "policy-allow" });
      const reply: Partial<Ipv4Frame> & { src: string } = { src: BACKEND.address, sport: 5432, dport: 41000, tcpFlags: TCP_SYN_ACK };
      expect(toServer(reply)).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
      expect(toServer(reply, constants.MARK_TRANSPORT)).toEqual({ retval: 0, counted: ["ingress/ct-reply+1"] });
    });
  });

  describe("weft_from_uplink on the node's fabric device", () => {
    it("drops what an mtls rule admits, with or without a mark: nothing from the fabric came through the transport", () => {
      expect(fromFabric({ src: CLIENT.address })).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
      expect(fromFabric({ src: CLIENT.address, tcpFlags: TCP_ACK }, constants.MARK_TRANSPORT)).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
    });

    it("drops a forged reply into a connection the workload opened over mtls", () => {
      expect(h.verdict("egress", ipv4Frame({ src: SERVER.address, dst: BACKEND.address, protocol: tcp, sport: 41001, dport: 5432 }))).toEqual({ pass: true, reason: "policy-allow" });
      expect(fromFabric({ src: BACKEND.address, sport: 5432, dport: 41001, tcpFlags: TCP_ACK })).toEqual({ retval: TC_ACT_SHOT, counted: ["ingress/mtls-required+1"] });
    });

    it("delivers what a plaintext rule admits, as before", () => {
      expect(fromFabric({ src: CLIENT.address, dport: PLAIN_PORT })).toEqual({ retval: TC_ACT_REDIRECT, counted: ["ingress/policy-allow+1"] });
    });
  });
});
