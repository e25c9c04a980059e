/**
 * One local identity's policy entries.
 *
 * Semantics (bpf/weft_policy.bpf.c [R5]-[R7] and normalize-policy.ts):
 *  - Deny wins whatever the specificity: entries are expanded with wildcards
 *    (0 = any peer / port / protocol) and then normalizePolicy writes a deny
 *    at every allow/deny overlap, so the datapath's "most specific hit" probe
 *    can never land on an allow a deny also covers.
 *  - A direction some policy governs (its ingress/egress list is present)
 *    carries the DEFAULT_DENY marker at (any, any, any): what no rule allows
 *    drops, as in Kubernetes.
 *  - A direction no policy governs follows the tenant's defaultAction:
 *    "allow" writes nothing (the datapath passes it as unselected [R7]),
 *    "deny" writes the marker too.
 *  - Peers are identities of the subject's own tenant, CIDRs, or any (0).
 *    No entry ever names another tenant's identity, and the datapath drops a
 *    cross-tenant pair before policy [R5], so "any" cannot join two tenants.
 *  - A CIDR peer selects the identity of every policy-named CIDR inside it
 *    (the ipcache is longest-prefix-match: an address in 10.1.0.0/16 gets the
 *    /16's identity even when the rule says 10.0.0.0/8), plus world (2) for
 *    0.0.0.0/0, whose addresses have no ipcache entry at all. The match is
 *    against every CIDR any policy names, not only this node's, so the part is
 *    the same on every node; identities absent from a node's ipcache cost an
 *    entry and never match. Workload addresses resolve to their workload
 *    (a /32 is longer than any CIDR), so CIDR peers never select workloads of
 *    tenants present on the node.
 *  - Audit mode: a policy or rule with mode "audit" never changes what the
 *    datapath enforces. weft_policy holds the enforced rules only (an audit
 *    policy does not even select its subject there). For each (subject,
 *    direction) that an audit policy or rule touches, weft_audit holds the
 *    whole policy as it would be with the audit rules enforced, normalised
 *    the same way; the datapath probes it for a new connection weft_policy
 *    passed and reports a drop there as verdict "audit" with that rule.
 *  - Transport (transport.ts): the TCP entries an enforced mtls allow rule
 *    writes carry mtls, so the receiving node drops plaintext from other
 *    nodes there. A rule allowing any protocol keeps its (port, any) entry
 *    for the rest and adds (port, tcp) with mtls, which the datapath's
 *    probe reaches first. weft_audit entries never carry the flag.
 *  - HTTP (a rule's `http`, l7.ts): decided per request by the L7 proxy for
 *    the subject's L7 services. At L4 an allow rule with http allows as if
 *    http were absent (direct traffic cannot be read per request, and its
 *    callers are the rule's peers either way); a deny rule with http writes
 *    nothing, so it never refuses at L4 what it means to refuse only for
 *    some requests.
 */
import { constants, protocols, type Direction, type Entry } from "@weft/codec";
import { normalizePolicy } from "./normalize-policy.ts";
import { CompileError, ruleIdOf } from "./ids.ts";
import { makePart, owners } from "./parts.ts";
import { carriedByTransport, TCP } from "./transport.ts";
import { contains, formatPrefix, parsePrefix, selects } from "./select.ts";
import type { SnapshotIndex, TenantIndex } from "./snapshot-index.ts";
import type { IdentityRow, Part, PeerSelector, PolicyRow, PortSelector } from "./types.ts";

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

export interface PolicyPart extends Part {
  /** CIDR peers the part expanded: a change to the CIDR set inside one of them invalidates it. */
  readonly cidrPeers: readonly string[];
}

export function policyPart(index: SnapshotIndex, t: TenantIndex, subject: IdentityRow): PolicyPart {
  const selecting = [...t.policies.values()].filter((p) => selects(p.subject, subject));
  const enforced: Entry<"policy">[] = [];
  const audit: Entry<"policy">[] = [];
  const cidrPeers = new Set<string>();
  const local = subject.numericId;
  for (const direction of DIRECTIONS) {
    const governing = selecting.filter((p) => p[direction] !== undefined);
    const staged = stagesDirection(governing, direction);
    const all: Entry<"policy">[] = [];
    if (governing.length > 0 || t.row.defaultAction === "deny") all.push(entry(local, 0, 0, 0, direction, "default-deny", 0));
    if (enforcesDirection(t, governing, direction)) enforced.push(entry(local, 0, 0, 0, direction, "default-deny", 0));
    for (const p of governing) {
      p[direction]!.forEach((rule, i) => {
        if (rule.action === "deny" && rule.http !== undefined) return;
        const ruleId = ruleIdOf(p.id, ruleIndexBase(p, direction) + i);
        const remotes = expandPeers(index, t, rule.peers, cidrPeers);
        const ports = expandPorts(rule.ports);
        const enforce = p.mode !== "audit" && rule.mode !== "audit";
        const mtls = carriedByTransport(rule, t.row, p.mode);
        for (const remote of remotes) {
          for (const [port, protocol] of ports) {
            const e = entry(local, remote, port, protocol, direction, rule.action, ruleId);
            all.push(e);
            if (!enforce) continue;
            if (!mtls) enforced.push(e);
            else {
              if (protocol !== TCP) enforced.push(e);
              enforced.push({ key: { ...e.key, protocol: TCP }, value: { ...e.value, mtls: true } });
            }
          }
        }
      });
    }
    if (staged) audit.push(...all);
  }
  // The audit map has the policy map's key and value (weft_abi.h), so the same normalisation serves both.
  const entries = audit.length > 0 ? { policy: normalizePolicy(enforced), audit: normalizePolicy(audit) as unknown as Entry<"audit">[] } : { policy: normalizePolicy(enforced) };
  const part = makePart(owners.policy(local), entries);
  return { ...part, cidrPeers: [...cidrPeers].sort() };
}

/**
 * Whether the datapath decides the direction by policy (it carries the
 * default-deny marker): an enforced policy of `selecting` governs it, or the
 * tenant denies by default. Otherwise it passes unselected [R7].
 */
export function enforcesDirection(t: TenantIndex, selecting: readonly PolicyRow[], direction: Direction): boolean {
  return selecting.some((p) => p[direction] !== undefined && p.mode !== "audit") || t.row.defaultAction === "deny";
}

/** Whether an audit policy or rule governs the direction: weft_audit then holds the whole policy with it enforced. */
export function stagesDirection(selecting: readonly PolicyRow[], direction: Direction): boolean {
  return selecting.some((p) => p[direction] !== undefined && (p.mode === "audit" || p[direction]!.some((r) => r.mode === "audit")));
}

/** Ingress rules count from 0, egress rules after them. */
export const ruleIndexBase = (p: PolicyRow, direction: Direction): number => (direction === "ingress" ? 0 : (p.ingress?.length ?? 0));

function entry(
  localIdentity: number,
  remoteIdentity: number,
  port: number,
  protocol: number,
  direction: Direction,
  action: Entry<"policy">["value"]["action"],
  ruleId: number,
): Entry<"policy"> {
  return { key: { localIdentity, remoteIdentity, port, protocol, direction }, value: { action, ruleId } };
}

/** Remote identities a rule's peers stand for; [0] for "any peer". */
function expandPeers(index: SnapshotIndex, t: TenantIndex, peers: readonly PeerSelector[], cidrPeers: Set<string>): number[] {
  if (peers.length === 0) return [0];
  const out = new Set<number>();
  for (const peer of peers) {
    if ("cidr" in peer) {
      const outer = parsePrefix(peer.cidr);
      cidrPeers.add(formatPrefix(outer));
      if (outer.len === 0) out.add(constants.IDENTITY_WORLD!);
      for (const prefix of index.cidrRefs.keys()) {
        if (!contains(outer, parsePrefix(prefix))) continue;
        const id = index.cidrIdentities.get(prefix);
        if (id === undefined) throw new CompileError(`CIDR ${prefix} has no identity (Snapshot.cidrIdentities)`);
        out.add(id);
      }
    } else {
      for (const identity of t.identities.values()) if (selects(peer, identity)) out.add(identity.numericId);
    }
  }
  return [...out].sort((a, b) => a - b);
}

const PROTOCOL: Record<NonNullable<PortSelector["protocol"]>, number> = { tcp: protocols.tcp, udp: protocols.udp, any: 0 };

/** (port, protocol) pairs of a rule; [(0, 0)] for "any". */
function expandPorts(ports: readonly PortSelector[]): Array<[number, number]> {
  if (ports.length === 0) return [[0, 0]];
  return ports.map((p) => [p.port ?? 0, PROTOCOL[p.protocol ?? "any"]]);
}
