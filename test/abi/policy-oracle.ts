/**
 * Policy semantics as the user states them, with no notion of probe order:
 * cross-tenant pairs never talk; otherwise any matching deny wins, then any
 * matching allow; a workload some policy selects drops the rest; an
 * unselected one passes. A direction with any entry at all is selected (the
 * compiler writes the marker there; normalizePolicy adds it when missing). The datapath plus normalizePolicy must
 * agree with this on every flow.
 */
import type { Entry } from "@weft/codec";

export interface Flow {
  localIdentity: number;
  remoteIdentity: number;
  port: number;
  protocol: number;
  direction: "ingress" | "egress";
}

const matches = (e: Entry<"policy">, f: Flow): boolean =>
  e.key.localIdentity === f.localIdentity &&
  e.key.direction === f.direction &&
  (e.key.remoteIdentity === 0 || e.key.remoteIdentity === f.remoteIdentity) &&
  (e.key.port === 0 || e.key.port === f.port) &&
  (e.key.protocol === 0 || e.key.protocol === f.protocol);

export function intendedVerdict(entries: readonly Entry<"policy">[], f: Flow): "policy-allow" | "policy-deny" | "default-deny" | "unselected" {
  const hits = entries.filter((e) => matches(e, f));
  if (hits.some((e) => e.value.action === "deny")) return "policy-deny";
  if (hits.some((e) => e.value.action === "allow")) return "policy-allow";
  const selected = entries.some((e) => e.key.localIdentity === f.localIdentity && e.key.direction === f.direction);
  return selected ? "default-deny" : "unselected";
}
