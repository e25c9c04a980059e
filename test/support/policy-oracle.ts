/**
 * Two references for policy entries, one flow at a time:
 *
 * - intendedVerdict: policy semantics as the user states them, with no
 *   notion of probe order: cross-tenant pairs never talk; otherwise any
 *   matching deny wins, then any matching allow; a workload some policy
 *   selects drops the rest; an unselected one passes. A direction with any
 *   entry at all is selected (the compiler writes the marker there;
 *   normalizePolicy adds it when missing).
 * - lookupPolicy: the datapath's decision against written entries, probe for
 *   probe (bpf/weft_policy.bpf.c): exact key, the (any, any, any) selection
 *   marker, then the wildcard levels from most to least specific.
 *
 * The datapath plus normalizePolicy must agree with intendedVerdict on every
 * flow.
 */
import type { Entry, PolicyKey } from "@weft/codec";

export interface Flow {
  localIdentity: number;
  remoteIdentity: number;
  port: number;
  protocol: number;
  direction: "ingress" | "egress";
}

export type PolicyVerdict = "policy-allow" | "policy-deny" | "default-deny" | "unselected";

const matches = (e: Entry<"policy">, f: Flow): boolean =>
  e.key.localIdentity === f.localIdentity &&
  e.key.direction === f.direction &&
  (e.key.remoteIdentity === 0 || e.key.remoteIdentity === f.remoteIdentity) &&
  (e.key.port === 0 || e.key.port === f.port) &&
  (e.key.protocol === 0 || e.key.protocol === f.protocol);

export function intendedVerdict(entries: readonly Entry<"policy">[], f: Flow): PolicyVerdict {
  const hits = entries.filter((e) => matches(e, f));
  if (hits.some((e) => e.value.action === "deny")) return "policy-deny";
  if (hits.some((e) => e.value.action === "allow")) return "policy-allow";
  const selected = entries.some((e) => e.key.localIdentity === f.localIdentity && e.key.direction === f.direction);
  return selected ? "default-deny" : "unselected";
}

const keyString = (k: PolicyKey): string => `${k.localIdentity}/${k.direction}/${k.remoteIdentity}/${k.port}/${k.protocol}`;

export function lookupPolicy(entries: readonly Entry<"policy">[], flow: Flow): PolicyVerdict {
  const table = new Map(entries.map((e) => [keyString(e.key), e.value]));
  const probe = (remoteIdentity: number, port: number, protocol: number) =>
    table.get(keyString({ localIdentity: flow.localIdentity, direction: flow.direction, remoteIdentity, port, protocol }));
  const reason = (hit: Entry<"policy">["value"]): PolicyVerdict =>
    hit.action === "allow" ? "policy-allow" : hit.action === "deny" ? "policy-deny" : "default-deny";
  const exact = probe(flow.remoteIdentity, flow.port, flow.protocol);
  if (exact !== undefined) return reason(exact);
  const selection = probe(0, 0, 0);
  if (selection === undefined) return "unselected";
  for (let level = 1; level < 7; level++) {
    const anyPeer = level & 4, anyPort = level & 2, anyProto = level & 1;
    if ((anyPort && flow.port === 0) || (anyProto && flow.protocol === 0)) continue;
    const hit = probe(anyPeer ? 0 : flow.remoteIdentity, anyPort ? 0 : flow.port, anyProto ? 0 : flow.protocol);
    if (hit !== undefined) return reason(hit);
  }
  return reason(selection);
}
