/**
 * Part builders: each answers the entries one owner contributes to a node,
 * in key order, with a digest of them. Owners are chosen so that a part is
 * shared by every node that needs it (a tenant's addresses, an identity's
 * policy, a service's tables per zone), which is what makes the memo pay.
 */
import { hash as digestOf } from "node:crypto";
import { parseIPv4, type Entry } from "@weft/codec";
import type { SnapshotIndex, TenantIndex } from "./snapshot-index.ts";
import { DATAPATH_MAPS, type DatapathMaps, type Part, type WorkloadRow } from "./types.ts";

/** Owner keys; their sort order is the order of a node's flattened maps. */
export const owners = {
  addresses: (tenantId: number) => `a:${tenantId}`,
  cidr: (prefix: string) => `c:${prefix}`,
  endpoints: (tenantId: number, node: string) => `e:${tenantId}@${node}`,
  policy: (numericId: number) => `p:${numericId}`,
  steer: (numericId: number) => `t:${numericId}`,
  service: (serviceId: number, zone: string | null) => (zone === null ? `s:${serviceId}` : `s:${serviceId}@${zone}`),
  backend: (backendId: number) => `b:${backendId}`,
};

export function makePart(owner: string, entries: Partial<DatapathMaps>, backendOwners?: readonly string[]): Part {
  // Maps in ABI order and entries in key order: equal content, equal text. One call over one string (a node's
  // own parts are built again for every node a write reaches): the digest feeding the pieces one by one gave.
  let text = owner;
  for (const m of DATAPATH_MAPS) {
    const list = entries[m];
    if (list !== undefined && list.length > 0) text += `\n${m}${JSON.stringify(list)}`;
  }
  const part: Part = { owner, digest: digestOf("sha256", text, "hex"), entries };
  return backendOwners === undefined ? part : { ...part, backendOwners };
}

const byAddress = <T extends { address: string }>(a: T, b: T): number => parseIPv4(a.address) - parseIPv4(b.address);

/** Every workload address of a tenant as a /32: what any node hosting the tenant must know of its peers. */
export function addressPart(t: TenantIndex): Part {
  return makePart(owners.addresses(t.row.id), { ipcache: identityEntries(t, t.workloads.values()).map(toIpcache) });
}

/** How many entries addressPart(t) has, without building it (sorting and hashing 10,000 addresses): admission's count. */
export function addressCount(t: TenantIndex): number {
  // By identity, as the index keeps them (a write of a tenant on 10,000 nodes counts it before and after).
  let n = 0;
  for (const [identity, held] of t.addressesByIdentity) if (t.identities.has(identity)) n += held;
  return n;
}

/** The tenant's workloads on one node: the addresses the tc program guards there. */
export function endpointPart(t: TenantIndex, node: string, names: Iterable<string>): Part {
  const local = [...names].map((n) => t.workloads.get(n)!);
  return makePart(owners.endpoints(t.row.id, node), { endpoint: identityEntries(t, local) });
}

/** A CIDR peer: an ipcache prefix with its identity and no tenant (it is world). */
export function cidrPart(prefix: string, identity: number): Part {
  return makePart(owners.cidr(prefix), { ipcache: [{ key: { prefix }, value: { identity, tenant: 0 } }] });
}

export function backendPart(backendId: number, address: string, port: number): Part {
  return makePart(owners.backend(backendId), { backend: [{ key: { backendId }, value: { address, port } }] });
}

/**
 * A workload whose identity row is gone has no identity to stand for: it is
 * left out (the REST layer refuses such deletes; the compiler must not crash).
 */
function identityEntries(t: TenantIndex, workloads: Iterable<WorkloadRow>): Entry<"endpoint">[] {
  const out: Entry<"endpoint">[] = [];
  for (const w of workloads) {
    const id = t.identities.get(w.identity);
    if (id === undefined) continue;
    for (const address of w.addresses) out.push({ key: { address }, value: { identity: id.numericId, tenant: t.row.id } });
  }
  return out.sort((a, b) => byAddress(a.key, b.key));
}

const toIpcache = (e: Entry<"endpoint">): Entry<"ipcache"> => ({ key: { prefix: `${e.key.address}/32` }, value: e.value });

/** The zone a workload's service traffic lands in: its node's. */
export const zoneOfWorkload = (index: SnapshotIndex, w: WorkloadRow | undefined): string | undefined =>
  w === undefined ? undefined : index.nodes.get(w.node)?.zone;
