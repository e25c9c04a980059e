/**
 * Deltas between two compiles of one node, proportional to what changed:
 * owners whose digest is equal are skipped without looking at their entries,
 * so one changed service table costs its own entries, not the node's 100k.
 */
import type { Entry } from "@weft/codec";
import { DATAPATH_MAPS, type DatapathDelta, type DatapathMap, type DatapathMaps, type NodeDatapath, type Part } from "./types.ts";

/** One string per key, the identity a map compares keys by. */
export function keyString<M extends DatapathMap>(map: M, key: Entry<M>["key"]): string {
  const k = key as unknown as Record<string, unknown>;
  switch (map) {
    case "ipcache":
      return String(k.prefix);
    case "endpoint":
      return String(k.address);
    case "policy":
      return `${k.localIdentity}/${k.direction}/${k.remoteIdentity}/${k.port}/${k.protocol}`;
    case "svc":
      return `${k.vip}:${k.port}/${k.protocol}`;
    case "lb_slot":
      return `${k.tableId}/${k.slot}`;
    default:
      return String(k.backendId);
  }
}

const emptyMaps = (): DatapathMaps => Object.fromEntries(DATAPATH_MAPS.map((m) => [m, []])) as unknown as DatapathMaps;

export function diff(prev: NodeDatapath | null, next: NodeDatapath): DatapathDelta {
  const upserts = emptyMaps();
  const deletes = emptyMaps() as unknown as DatapathDelta["deletes"];
  const before = prev?.parts ?? new Map<string, Part>();
  const deleted = new Map<DatapathMap, Map<string, unknown>>(DATAPATH_MAPS.map((m) => [m, new Map()]));
  const upserted = new Map<DatapathMap, Set<string>>(DATAPATH_MAPS.map((m) => [m, new Set()]));

  const compare = (old: Part | undefined, now: Part | undefined): void => {
    for (const m of DATAPATH_MAPS) {
      const was = new Map<string, Entry<typeof m>>();
      for (const e of old?.entries[m] ?? []) was.set(keyString(m, e.key), e);
      for (const e of now?.entries[m] ?? []) {
        const k = keyString(m, e.key);
        const had = was.get(k);
        was.delete(k);
        if (had !== undefined && JSON.stringify(had.value) === JSON.stringify(e.value)) continue;
        (upserts[m] as unknown[]).push(e);
        upserted.get(m)!.add(k);
      }
      for (const [k, e] of was) deleted.get(m)!.set(k, e.key);
    }
  };
  for (const [owner, now] of next.parts) {
    const old = before.get(owner);
    if (old === undefined || old.digest !== now.digest) compare(old, now);
  }
  for (const [owner, old] of before) if (!next.parts.has(owner)) compare(old, undefined);
  // A key can move between owners (an address given to another workload): its upsert stands, no delete.
  for (const m of DATAPATH_MAPS) {
    for (const [k, key] of deleted.get(m)!) if (!upserted.get(m)!.has(k)) (deletes[m] as unknown[]).push(key);
  }
  return { upserts, deletes };
}

/** Applies a delta to a node's entries, the way the agent would: deletes, then upserts. */
export function applyDelta(maps: DatapathMaps, delta: DatapathDelta): DatapathMaps {
  const out = emptyMaps();
  for (const m of DATAPATH_MAPS) {
    const table = new Map<string, unknown>();
    for (const e of maps[m]) table.set(keyString(m, e.key), e);
    for (const key of delta.deletes[m]) table.delete(keyString(m, key));
    for (const e of delta.upserts[m]) table.set(keyString(m, e.key), e);
    (out as Record<DatapathMap, unknown[]>)[m] = [...table.values()];
  }
  return out;
}

export const deltaSize = (delta: DatapathDelta): number =>
  DATAPATH_MAPS.reduce((n, m) => n + delta.upserts[m].length + delta.deletes[m].length, 0);
