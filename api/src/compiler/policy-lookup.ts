/**
 * The datapath's policy probe (bpf/weft_policy.bpf.c __weft_policy_lookup,
 * [R6]/[R7]) over compiled weft_policy entries: whether a workload's policy
 * lets it reach (remote identity, port, protocol) in a direction. The L7
 * proxy's document uses it to hold callers to their egress policy, which
 * the kernel does not decide for connections it hands to the proxy ([R17]).
 * Pure; keep it probe for probe with the C function.
 */
import type { Direction, Entry } from "@weft/codec";

const ANY = 0;

const keyOf = (remote: number, port: number, protocol: number) => `${remote}/${port}/${protocol}`;

/** A lookup over one (local identity, direction)'s entries: true when the probe ends at an allow, or nothing selects the workload. */
export function policyProbe(entries: readonly Entry<"policy">[], local: number, direction: Direction): (remote: number, port: number, protocol: number) => boolean {
  const table = new Map<string, Entry<"policy">["value"]>();
  for (const e of entries) if (e.key.localIdentity === local && e.key.direction === direction) table.set(keyOf(e.key.remoteIdentity, e.key.port, e.key.protocol), e.value);
  return (remote, port, protocol) => {
    const exact = table.get(keyOf(remote, port, protocol));
    if (exact) return exact.action === "allow";
    const selection = table.get(keyOf(ANY, 0, 0));
    if (!selection) return true; // [R7] unselected: passes
    for (let level = 1; level < 7; level++) {
      const anyPeer = level & 4;
      const anyPort = level & 2;
      const anyProto = level & 1;
      if ((anyPort && port === 0) || (anyProto && protocol === 0)) continue;
      if (anyPeer && (anyPort || port === 0) && (anyProto || protocol === 0)) continue;
      const hit = table.get(keyOf(anyPeer ? ANY : remote, anyPort ? 0 : port, anyProto ? 0 : protocol));
      if (hit) return hit.action === "allow";
    }
    return selection.action === "allow";
  };
}
