/** Small builders and codec round trips shared by the datapath tests. */
import { decodeEntries, encodeEntries } from "@weft/codec";
import { assignIds } from "../../api/src/compiler/allocate.ts";
import { DATAPATH_MAPS, type DatapathMaps, type Snapshot } from "../../api/src/compiler/types.ts";
import { keyString } from "../../api/src/compiler/diff.ts";
import { contains, parsePrefix, selects } from "../../api/src/compiler/select.ts";
import type { PeerSelector, PolicyRule, WorkloadRow } from "../../api/src/compiler/types.ts";

export function snapshot(parts: Partial<Snapshot>): Snapshot {
  return assignIds({
    tenants: [],
    identities: [],
    workloads: [],
    services: [],
    policies: [],
    nodes: [],
    backendIds: new Map(),
    cidrIdentities: new Map(),
    ...parts,
  });
}

/** What the agent would read back from the kernel: every map through encode and decode. */
export function throughCodec(maps: DatapathMaps): DatapathMaps {
  const out = {} as Record<string, unknown>;
  for (const m of DATAPATH_MAPS) {
    const { keys, values } = encodeEntries(m, maps[m] as never);
    out[m] = decodeEntries(m, keys, values);
  }
  return out as unknown as DatapathMaps;
}

/** Entries as a sorted list of "key = value" lines: equal sets, equal lists, whatever the order. */
export function canonical(maps: DatapathMaps): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of DATAPATH_MAPS) {
    out[m] = (maps[m] as Array<{ key: never; value: unknown }>).map((e) => `${keyString(m, e.key)} = ${JSON.stringify(e.value)}`).sort();
  }
  return out;
}

/** The user's reading of the rows, with no knowledge of entries or probe order. */
export function intended(snap: Snapshot, w: WorkloadRow, remote: string, port: number, protocol: number, direction: "ingress" | "egress"): "pass" | "drop" {
  const identityOf = (tenantId: number, name: string) => snap.identities.find((i) => i.tenantId === tenantId && i.name === name)!;
  const self = identityOf(w.tenantId, w.identity);
  const peerWorkload = snap.workloads.find((x) => x.addresses.includes(remote));
  if (peerWorkload !== undefined && peerWorkload.tenantId !== w.tenantId) return "drop";
  const peerIdentity = peerWorkload === undefined ? undefined : identityOf(peerWorkload.tenantId, peerWorkload.identity);
  const peerMatches = (p: PeerSelector): boolean =>
    "cidr" in p ? peerWorkload === undefined && contains(parsePrefix(p.cidr), parsePrefix(remote)) : peerIdentity !== undefined && selects(p, peerIdentity);
  const portMatches = (r: PolicyRule): boolean =>
    r.ports.length === 0 ||
    r.ports.some((p) => (p.port ?? 0) === 0 || p.port === port ? (p.protocol ?? "any") === "any" || { tcp: 6, udp: 17 }[p.protocol as "tcp"] === protocol : false);
  const selecting = snap.policies.filter((p) => p.tenantId === w.tenantId && selects(p.subject, self));
  // A deny rule with http is the L7 proxy's to decide, per request: at L4 it refuses nothing.
  const atL4 = (r: PolicyRule): boolean => !(r.action === "deny" && r.http !== undefined);
  const hits = selecting.flatMap((p) => (p[direction] ?? []).filter((r) => atL4(r) && (r.peers.length === 0 || r.peers.some(peerMatches)) && portMatches(r)));
  if (hits.some((r) => r.action === "deny")) return "drop";
  if (hits.some((r) => r.action === "allow")) return "pass";
  const governed = selecting.some((p) => p[direction] !== undefined);
  const tenant = snap.tenants.find((t) => t.id === w.tenantId)!;
  return governed || tenant.defaultAction === "deny" ? "drop" : "pass";
}

