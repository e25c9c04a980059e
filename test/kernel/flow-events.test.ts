/**
 * Flow events from the tc policy program through BPF_PROG_TEST_RUN and the
 * real ring buffer ([R13], [R14] in bpf/weft_policy.bpf.c): one event per
 * drop and per new connection, none for established packets, a rate limit
 * whose refusals are counted, and audit mode.
 */
import { decodeFlowEvents, decodeValues, encodeKey, maps, protocols, type Entry, type FlowCfg, type FlowEvent, type FlowStats } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RingBufferReader, testRun, TC_ACT_OK, TC_ACT_SHOT, type BpfMap } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { kernelUnavailableReason } from "../support/kernel.ts";
import { TCP_ACK, ipv4Frame } from "./packets.ts";
import { deleteAll, mapOf, PolicyHarness, writeEntries } from "./policy-harness.ts";

const { tcp } = protocols;
const TENANT = 7;
const W = { address: "198.18.5.10", identity: 1001 }; // the guarded workload
const P = { address: "198.18.6.7", identity: 1002 }; // a peer of the same tenant
const ALLOW_80 = 11;
const DENY_81 = 12;

const rule = (remoteIdentity: number, port: number, action: "allow" | "deny" | "default-deny", ruleId: number): Entry<"policy"> => ({
  key: { localIdentity: W.identity, remoteIdentity, port, protocol: port ? tcp : 0, direction: "ingress" },
  value: { action, ruleId },
});
const enforced = normalizePolicy([rule(0, 0, "default-deny", 0), rule(P.identity, 80, "allow", ALLOW_80), rule(P.identity, 81, "deny", DENY_81)]);

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, libbpf)", reason))("tc policy program: flow events", () => {
  let h: PolicyHarness;
  let ring: RingBufferReader;
  let m: { cfg: BpfMap; stats: BpfMap; audit: BpfMap };
  let sport = 30000;
  /** A SYN from P to W on `dport` from a port no earlier case used: a new connection. */
  const syn = (dport: number) => ipv4Frame({ src: P.address, dst: W.address, protocol: tcp, sport: ++sport, dport });
  const toW = (frame: Uint8Array, repeat = 1) => testRun(h.obj.programFd("weft_to_wl"), frame, { repeat });
  const events = (): FlowEvent[] => {
    const records = ring.drain();
    return decodeFlowEvents(Buffer.concat(records));
  };
  const configure = (cfg: FlowCfg) => writeEntries(m.cfg, "flow_cfg", [{ key: { index: 0 }, value: cfg }]);
  const stats = (): FlowStats => {
    const copies = decodeValues("flow_stats", m.stats.lookup(encodeKey("flow_stats", { index: 0 }))!);
    return copies.reduce((a, c) => ({ emitted: a.emitted + c.emitted, rateLimited: a.rateLimited + c.rateLimited, ringFull: a.ringFull + c.ringFull }));
  };

  beforeAll(() => {
    h = new PolicyHarness();
    m = { cfg: mapOf(h.obj, maps.flow_cfg), stats: mapOf(h.obj, maps.flow_stats), audit: mapOf(h.obj, maps.audit) };
    ring = new RingBufferReader(h.obj.mapFd(maps.flow_ring.name));
    h.endpoints([{ key: { address: W.address }, value: { identity: W.identity, tenant: TENANT } }]);
    h.peers([{ key: { prefix: `${P.address}/32` }, value: { identity: P.identity, tenant: TENANT } }]);
  });
  beforeEach(() => {
    deleteAll(h.ct);
    deleteAll(m.audit);
    h.setPolicy(enforced);
    configure({ rate: 1_000_000, burst: 100_000, allowed: true });
    events(); // whatever an earlier case left
  });
  afterAll(() => {
    ring?.close();
    h?.close();
  });

  it("emits nothing until the agent configures a rate (the zeroed default)", () => {
    configure({ rate: 0, burst: 0, allowed: true });
    expect(toW(syn(81)).retval).toBe(TC_ACT_SHOT);
    expect(toW(syn(80)).retval).toBe(TC_ACT_OK);
    expect(events()).toEqual([]);
  });

  it("a denied connection: exactly one drop event with its reason, identities, tenant and rule", () => {
    const frame = syn(81);
    expect(h.verdict("ingress", frame)).toEqual({ pass: false, reason: "policy-deny" });
    const [e, ...rest] = events();
    expect(rest).toEqual([]);
    expect(e).toMatchObject({
      hook: "ingress",
      reason: "policy-deny",
      verdict: "drop",
      protocol: tcp,
      ruleId: DENY_81,
      source: { address: P.address, port: sport, identity: P.identity, tenant: TENANT },
      destination: { address: W.address, port: 81, identity: W.identity, tenant: TENANT },
      originalDestination: null,
      length: frame.length,
    });
    expect(e!.timeNs).toBeGreaterThan(0n);
  });

  it("a connection no rule allows: one default-deny drop event, rule 0", () => {
    expect(h.verdict("ingress", syn(9999)).reason).toBe("default-deny");
    expect(events().map((e) => [e.reason, e.ruleId])).toEqual([["default-deny", 0]]);
  });

  it("an allowed new connection: one verdict event; its retransmitted SYN and 10,000 established packets: none", () => {
    const first = syn(80);
    expect(h.verdict("ingress", first)).toEqual({ pass: true, reason: "policy-allow" });
    expect(events().map((e) => [e.reason, e.verdict, e.ruleId, e.destination.port])).toEqual([["policy-allow", "pass", ALLOW_80, 80]]);
    expect(toW(first).retval).toBe(TC_ACT_OK); // the same SYN again finds its conntrack entry
    const established = ipv4Frame({ src: P.address, dst: W.address, protocol: tcp, sport, dport: 80, tcpFlags: TCP_ACK });
    const before = stats();
    expect(toW(established, 10_000).retval).toBe(TC_ACT_OK);
    expect(events()).toEqual([]);
    expect(stats()).toEqual(before); // not even a refused one: established packets never reach the limiter
  });

  it("passed connections are left out when the agent asks for drops only", () => {
    configure({ rate: 1_000_000, burst: 100_000, allowed: false });
    expect(toW(syn(80)).retval).toBe(TC_ACT_OK);
    expect(toW(syn(81)).retval).toBe(TC_ACT_SHOT);
    expect(events().map((e) => e.reason)).toEqual(["policy-deny"]);
  });

  it("a flood of 100,000 denied SYNs emits at most the configured rate and counts every other one as lost", () => {
    const rate = 1000;
    const burst = 50;
    configure({ rate, burst, allowed: true });
    // Whatever credit the bucket holds is capped at the new burst on its next use.
    const before = stats();
    const started = process.hrtime.bigint();
    const run = toW(syn(81), 100_000);
    const elapsedNs = process.hrtime.bigint() - started;
    expect(run.retval).toBe(TC_ACT_SHOT);
    const got = events();
    const after = stats();
    const emitted = after.emitted - before.emitted;
    const lost = after.rateLimited - before.rateLimited + (after.ringFull - before.ringFull);
    // The bucket starts full (burst) and refills at `rate` for as long as the runs took, at most the wall time around them.
    const ceiling = BigInt(burst) + (BigInt(rate) * elapsedNs) / 1_000_000_000n + 1n;
    expect(emitted).toBeLessThanOrEqual(ceiling);
    expect(emitted).toBeGreaterThanOrEqual(BigInt(burst));
    expect(BigInt(got.length)).toBe(emitted);
    expect(emitted + lost).toBe(100_000n);
    expect(got.every((e) => e.reason === "policy-deny")).toBe(true);
  });

  describe("audit mode (weft_audit)", () => {
    // Staged: W's ingress from P on 8080 would be denied by rule AUDIT_DENY, and everything else no audit rule allows.
    const AUDIT_DENY = 21;
    const AUDIT_ALLOW = 22;
    const staged = normalizePolicy([rule(0, 0, "default-deny", 0), rule(P.identity, 8080, "deny", AUDIT_DENY), rule(P.identity, 80, "allow", AUDIT_ALLOW)]);

    beforeEach(() => {
      deleteAll(h.policy); // W unselected: everything passes
      writeEntries(m.audit, "audit", staged);
    });

    it("a deny rule in audit mode lets the connection through and emits one audit event naming the rule", () => {
      expect(h.verdict("ingress", syn(8080))).toEqual({ pass: true, reason: "audit" });
      expect(events().map((e) => [e.reason, e.verdict, e.ruleId])).toEqual([["audit", "pass", AUDIT_DENY]]);
    });

    it("what the staged policy would allow stays a plain pass", () => {
      expect(h.verdict("ingress", syn(80))).toEqual({ pass: true, reason: "unselected" });
      expect(events().map((e) => e.reason)).toEqual(["unselected"]);
    });

    it("audit events are emitted even when only drops are asked for (they are would-be drops)", () => {
      configure({ rate: 1_000_000, burst: 100_000, allowed: false });
      expect(h.verdict("ingress", syn(8080)).reason).toBe("audit");
      expect(h.verdict("ingress", syn(80)).reason).toBe("unselected");
      expect(events().map((e) => e.reason)).toEqual(["audit"]);
    });

    it("switched to enforce, the next connection is dropped with a drop event", () => {
      deleteAll(m.audit);
      h.setPolicy(staged);
      expect(h.verdict("ingress", syn(8080))).toEqual({ pass: false, reason: "policy-deny" });
      expect(events().map((e) => [e.reason, e.ruleId])).toEqual([["policy-deny", AUDIT_DENY]]);
    });

    it("never loosens the enforced policy: an enforced drop stays a drop", () => {
      h.setPolicy(enforced);
      expect(h.verdict("ingress", syn(81))).toEqual({ pass: false, reason: "policy-deny" });
    });
  });
});
