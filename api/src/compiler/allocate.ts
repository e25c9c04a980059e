/**
 * The ids a snapshot needs that the database has not handed out yet: what
 * the REST layer inserts (backend_ids, CIDR identities from the identity
 * sequence) in the same transaction as the write that needs them. Existing
 * ids are kept, new ones continue after the highest in use, so ids never
 * shift when unrelated backends come and go. Tests and the bench use it in
 * place of the database.
 */
import { constants } from "@weft/codec";
import { resolveBackends, sortedPorts } from "./services.ts";
import { SnapshotIndex } from "./snapshot-index.ts";
import type { Snapshot } from "./types.ts";

export interface MissingIds {
  /** address:port keys, sorted */
  backends: string[];
  /** canonical prefixes, sorted */
  cidrs: string[];
}

export function missingIds(snapshot: Snapshot): MissingIds {
  const index = new SnapshotIndex({ ...snapshot, backendIds: new Map(), cidrIdentities: new Map() });
  const backends = new Set<string>();
  for (const t of index.tenants.values()) {
    for (const s of t.services.values()) {
      for (const sp of sortedPorts(s)) {
        for (const b of resolveBackends(index, t, s, sp)) if (!snapshot.backendIds.has(b.key)) backends.add(b.key);
      }
    }
  }
  const cidrs = [...index.cidrRefs.keys()].filter((p) => !snapshot.cidrIdentities.has(p));
  return { backends: [...backends].sort(), cidrs: cidrs.sort() };
}

/** The snapshot with every missing id allocated. */
export function assignIds(snapshot: Snapshot): Snapshot {
  const missing = missingIds(snapshot);
  const backendIds = new Map(snapshot.backendIds);
  let nextBackend = maxOf(backendIds.values(), 0) + 1;
  for (const key of missing.backends) backendIds.set(key, nextBackend++);
  const cidrIdentities = new Map(snapshot.cidrIdentities);
  const floor = maxOf(cidrIdentities.values(), constants.IDENTITY_FIRST! - 1);
  let nextIdentity = maxOf(snapshot.identities.map((i) => i.numericId), floor) + 1;
  for (const prefix of missing.cidrs) cidrIdentities.set(prefix, nextIdentity++);
  return { ...snapshot, backendIds, cidrIdentities };
}

/** Math.max without spreading 100k arguments onto the stack. */
function maxOf(values: Iterable<number>, floor: number): number {
  let max = floor;
  for (const v of values) if (v > max) max = v;
  return max;
}
