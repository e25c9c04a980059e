/**
 * The tc program's decision (bpf/weft_policy.bpf.c) replayed over map
 * entries, row for row: for property tests on codec-decoded entries and for
 * an agent explaining a drop. Branch tags match the C file. Test-only: it is
 * no part of the compiler, whose output it checks.
 */
import { constants, parseIPv4, verdictOf, type Direction, type Entry, type Reason, type Verdict } from "@weft/codec";
import { keyString } from "../../api/src/compiler/diff.ts";
import { maskOf, parsePrefix } from "../../api/src/compiler/select.ts";

export interface PolicyMaps {
  ipcache: readonly Entry<"ipcache">[];
  endpoint: readonly Entry<"endpoint">[];
  policy: readonly Entry<"policy">[];
}

export interface FlowQuery {
  /** The workload's own address (source on egress, destination on ingress). */
  local: string;
  remote: string;
  /** 0 for a packet without ports (non-first fragment, ICMP). */
  port: number;
  protocol: number;
  direction: Direction;
}

export interface Decision {
  verdict: Verdict;
  reason: Reason;
  /** The policy entry that decided, when one did. */
  ruleId?: number;
}

export function createEvaluator(maps: PolicyMaps): (flow: FlowQuery) => Decision {
  const endpoints = new Map(maps.endpoint.map((e) => [e.key.address, e.value]));
  const policy = new Map(maps.policy.map((e) => [keyString("policy", e.key), e.value]));
  // LPM trie as one table per prefix length, probed from /32 down.
  const byLength = Array.from({ length: 33 }, () => new Map<number, Entry<"ipcache">["value"]>());
  for (const e of maps.ipcache) {
    const p = parsePrefix(e.key.prefix);
    byLength[p.len]!.set(p.addr, e.value);
  }
  const lengths = byLength.flatMap((m, len) => (m.size > 0 ? [len] : [])).reverse();

  return (flow) => {
    const decide = (reason: Reason, ruleId?: number): Decision =>
      ruleId === undefined ? { verdict: verdictOf(reason), reason } : { verdict: verdictOf(reason), reason, ruleId };
    const self = endpoints.get(flow.local);
    if (self === undefined) return decide("unknown-endpoint"); // [R3]
    const remote = parseIPv4(flow.remote);
    let peer = { identity: constants.IDENTITY_WORLD!, tenant: constants.TENANT_NONE! }; // [R4] no entry = world
    for (const len of lengths) {
      const hit = byLength[len]!.get((remote & maskOf(len)) >>> 0);
      if (hit !== undefined) {
        peer = hit;
        break;
      }
    }
    if (self.tenant !== 0 && peer.tenant !== 0 && self.tenant !== peer.tenant) return decide("cross-tenant"); // [R5]
    // [R6] most specific first: (peer, port, proto) down to (any, any, any), skipping repeats.
    for (let level = 0; level < 8; level++) {
      const anyPeer = level & 4, anyPort = level & 2, anyProto = level & 1;
      if ((anyPort && flow.port === 0) || (anyProto && flow.protocol === 0)) continue;
      const hit = policy.get(
        keyString("policy", {
          localIdentity: self.identity,
          remoteIdentity: anyPeer ? 0 : peer.identity,
          port: anyPort ? 0 : flow.port,
          protocol: anyProto ? 0 : flow.protocol,
          direction: flow.direction,
        }),
      );
      if (hit === undefined) continue;
      const reason: Reason = hit.action === "allow" ? "policy-allow" : hit.action === "deny" ? "policy-deny" : "default-deny";
      return decide(reason, hit.ruleId);
    }
    return decide("unselected"); // [R7]
  };
}
