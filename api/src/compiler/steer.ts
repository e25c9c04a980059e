/**
 * weft_steer: which connections the node's transport carries (weft_abi.h,
 * issue 18), one part per identity, shared by every node that runs a
 * workload of it (like its policy part).
 *
 * An enforced mtls allow rule (transport.ts) of subject S with identity
 * peers P on TCP port p (0: any) writes, for each q in P:
 *  - ingress rule: q's part (q, S, p, tcp, egress): q's connections to S go
 *    out through q's node's transport; S's part (S, q, p, tcp, ingress): what
 *    S sends back to q goes to the transport that delivered q's stream.
 *  - egress rule: S's part (S, q, p, tcp, egress) and q's part
 *    (q, S, p, tcp, ingress).
 * No peers means any peer: S's side is written with q = 0, and the other
 * side for every identity of S's tenant (other tenants never reach S).
 * Entries are keyed by identity only: a pair on the same node gets them too,
 * and the datapath steers only when the peer's address is on another node.
 * Each (identity, direction) with an entry carries the default-deny marker
 * at (any, any, any), as in weft_policy; normalizePolicy adds it and merges
 * duplicate keys (the lower rule id names the entry).
 */
import type { Direction, Entry } from "@weft/codec";
import { ruleIdOf } from "./ids.ts";
import { ruleIndexBase } from "./policy.ts";
import { normalizePolicy } from "./normalize-policy.ts";
import { makePart, owners } from "./parts.ts";
import { selects } from "./select.ts";
import type { TenantIndex } from "./snapshot-index.ts";
import { carriedByTransport, mtlsPorts, TCP } from "./transport.ts";
import type { Part } from "./types.ts";

const OPPOSITE: Record<Direction, Direction> = { ingress: "egress", egress: "ingress" };

/** The steer part of every identity of the tenant that takes part in an mtls rule, by numeric identity. */
export function steerParts(t: TenantIndex): Map<number, Part> {
  const byIdentity = new Map<number, Entry<"steer">[]>();
  const add = (local: number, remote: number, port: number, direction: Direction, ruleId: number): void => {
    let list = byIdentity.get(local);
    if (list === undefined) byIdentity.set(local, (list = []));
    list.push({ key: { localIdentity: local, remoteIdentity: remote, port, protocol: TCP, direction }, value: { action: "allow", ruleId, mtls: true } });
  };
  const identities = [...t.identities.values()];
  for (const p of t.policies.values()) {
    const subjects = identities.filter((i) => selects(p.subject, i));
    if (subjects.length === 0) continue;
    for (const direction of ["ingress", "egress"] as const) {
      (p[direction] ?? []).forEach((rule, i) => {
        if (!carriedByTransport(rule, t.row, p.mode)) return;
        const ruleId = ruleIdOf(p.id, ruleIndexBase(p, direction) + i);
        const anyPeer = rule.peers.length === 0;
        const peers = anyPeer ? identities : identities.filter((q) => rule.peers.some((sel) => !("cidr" in sel) && selects(sel, q)));
        for (const port of mtlsPorts(rule.ports)) {
          for (const s of subjects) {
            if (anyPeer) add(s.numericId, 0, port, direction, ruleId);
            for (const q of peers) {
              if (!anyPeer) add(s.numericId, q.numericId, port, direction, ruleId);
              add(q.numericId, s.numericId, port, peerSide(direction), ruleId);
            }
          }
        }
      });
    }
  }
  const parts = new Map<number, Part>();
  for (const [id, entries] of byIdentity) {
    // weft_steer has weft_policy's key and value (weft_abi.h): the same merge and markers serve both.
    const steer = normalizePolicy(entries as unknown as Entry<"policy">[]) as unknown as Entry<"steer">[];
    parts.set(id, makePart(owners.steer(id), { steer }));
  }
  return parts;
}

/**
 * An ingress rule of S lets the peer open to S, so the peer steers its
 * egress; an egress rule lets S open to the peer, so the peer's node sees it
 * as ingress.
 */
const peerSide = (direction: Direction): Direction => OPPOSITE[direction];
