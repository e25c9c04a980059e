/**
 * Deltas between two compiles of one node, proportional to what changed:
 * owners whose digest is equal are skipped without looking at their entries,
 * so one changed service table costs its own entries, not the node's 100k.
 *
 * Parts are shared objects (one tenant's address part serves every node the
 * tenant is on), so a PartDiffs memo lets the comparison of one pair of parts
 * serve every node that holds that pair: a write seen by 1,000 nodes compares
 * its changed part once, not 1,000 times. The merged delta is shared too:
 * nodes whose diffs are made of the same part comparisons get the same
 * DatapathDelta object, so its encoded body can be shared (routes/datapath).
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
    case "audit":
    case "steer":
      return `${k.localIdentity}/${k.direction}/${k.remoteIdentity}/${k.port}/${k.protocol}`;
    case "svc":
    case "l7":
      return `${k.vip}:${k.port}/${k.protocol}`;
    case "lb_slot":
      return `${k.tableId}/${k.slot}`;
    default:
      return String(k.backendId);
  }
}

const emptyMaps = (): DatapathMaps => Object.fromEntries(DATAPATH_MAPS.map((m) => [m, []])) as unknown as DatapathMaps;

/** What changed between two versions of one owner's part, per map, with each key's string. */
interface PartDelta {
  /** Names this comparison in the keys of merged deltas. */
  id: number;
  upserts: Partial<Record<DatapathMap, { k: string; entry: unknown }[]>>;
  deletes: Partial<Record<DatapathMap, { k: string; key: unknown }[]>>;
}

/** Stands for "no part" in the memo's keys (a part added or removed). */
const NO_PART: Part = { owner: "", digest: "", entries: {} };

/** Merged deltas kept per generation; two generations live, so what the last few thousand diffs produced is found. */
const MERGED_PER_GENERATION = 4096;

/**
 * Part-pair comparisons, remembered for as long as both parts are alive,
 * and the deltas merged from them, shared between nodes.
 */
export class PartDiffs {
  private readonly memo = new WeakMap<Part, WeakMap<Part, PartDelta>>();
  private nextId = 1;
  private merged = new Map<string, DatapathDelta>();
  private mergedBefore = new Map<string, DatapathDelta>();

  /** The delta from a state of `before`'s parts (by owner) to `next`: one object for every pair of nodes whose changed parts compare alike. */
  delta(before: ReadonlyMap<string, Part>, next: NodeDatapath): DatapathDelta {
    const parts = partDeltas(before, next, this);
    const key = parts.map((d) => d.id).join(",");
    let delta = this.merged.get(key) ?? this.mergedBefore.get(key);
    if (delta === undefined) delta = mergePartDeltas(parts);
    if (!this.merged.has(key)) {
      if (this.merged.size >= MERGED_PER_GENERATION) {
        this.mergedBefore = this.merged;
        this.merged = new Map();
      }
      this.merged.set(key, delta);
    }
    return delta;
  }

  compare(old: Part | undefined, now: Part | undefined): PartDelta {
    const a = old ?? NO_PART;
    const b = now ?? NO_PART;
    let byNew = this.memo.get(a);
    if (byNew === undefined) this.memo.set(a, (byNew = new WeakMap()));
    let d = byNew.get(b);
    if (d === undefined) byNew.set(b, (d = comparePart(this.nextId++, old, now)));
    return d;
  }
}

function comparePart(id: number, old: Part | undefined, now: Part | undefined): PartDelta {
  const out: PartDelta = { id, upserts: {}, deletes: {} };
  for (const m of DATAPATH_MAPS) {
    const was = new Map<string, Entry<typeof m>>();
    for (const e of old?.entries[m] ?? []) was.set(keyString(m, e.key), e);
    const upserts: { k: string; entry: unknown }[] = [];
    for (const e of now?.entries[m] ?? []) {
      const k = keyString(m, e.key);
      const had = was.get(k);
      was.delete(k);
      if (had !== undefined && JSON.stringify(had.value) === JSON.stringify(e.value)) continue;
      upserts.push({ k, entry: e });
    }
    if (upserts.length > 0) out.upserts[m] = upserts;
    if (was.size > 0) out.deletes[m] = [...was].map(([k, e]) => ({ k, key: e.key }));
  }
  return out;
}

/** The delta from `prev` (null: nothing) to `next`; `memo` shares part comparisons between calls. */
export function diff(prev: NodeDatapath | null, next: NodeDatapath, memo: PartDiffs = new PartDiffs()): DatapathDelta {
  return mergePartDeltas(partDeltas(prev?.parts ?? new Map<string, Part>(), next, memo));
}

/** The comparisons of the parts that differ, owners of `next` in order, then owners gone. */
function partDeltas(before: ReadonlyMap<string, Part>, next: NodeDatapath, memo: PartDiffs): PartDelta[] {
  const out: PartDelta[] = [];
  for (const [owner, now] of next.parts) {
    const old = before.get(owner);
    if (old === undefined || old.digest !== now.digest) out.push(memo.compare(old, now));
  }
  for (const [owner, old] of before) if (!next.parts.has(owner)) out.push(memo.compare(old, undefined));
  return out;
}

function mergePartDeltas(parts: readonly PartDelta[]): DatapathDelta {
  const upserts = emptyMaps();
  const deletes = emptyMaps() as unknown as DatapathDelta["deletes"];
  const deleted = new Map<DatapathMap, Map<string, unknown>>(DATAPATH_MAPS.map((m) => [m, new Map()]));
  const upserted = new Map<DatapathMap, Set<string>>(DATAPATH_MAPS.map((m) => [m, new Set()]));
  for (const d of parts) {
    for (const m of DATAPATH_MAPS) {
      for (const u of d.upserts[m] ?? []) {
        (upserts[m] as unknown[]).push(u.entry);
        upserted.get(m)!.add(u.k);
      }
      for (const x of d.deletes[m] ?? []) deleted.get(m)!.set(x.k, x.key);
    }
  }
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
