/**
 * The compiler's memory of each node's capacity class and own counts
 * (MemoCompiler.capacityOf), grouped by class, so that admission can clear a
 * whole class at once instead of visiting every node of a tenant present on
 * 10,000 of them (follower/admission.ts tryChanges).
 *
 * Each class keeps an upper bound of its members' own counts, map by map:
 * raised as members are counted, left as it is when one is forgotten (exact
 * again once recomputed, `exactBound`), so forgetting a member never costs a
 * visit of the class. A node of a class whose shared counts plus the bound
 * fit every map fits too; only a class that might not is visited node by
 * node.
 *
 * Forgotten nodes are remembered as uncounted until counted again: after the
 * compiler counts every node, what a change forgets is what it may alter.
 */
import { DATAPATH_MAPS, type MapCounts } from "./types.ts";

export interface LocalCapacity {
  /** The node's zone and the tenants present on it (JSON): nodes of a class hold the same shared parts. */
  capacityClass: string;
  /** What the node alone holds (its workloads' endpoints and policies). */
  local: MapCounts;
}

interface ClassEntry {
  /** The tenant ids in the class key, parsed once. */
  tenants: readonly number[];
  members: Set<string>;
  /** At least each member's own count, map by map. */
  bound: MapCounts;
}

export class CapacityBook {
  private readonly byNode = new Map<string, LocalCapacity>();
  private readonly classes = new Map<string, ClassEntry>();
  /** Nodes forgotten and not counted again (some may no longer exist). */
  private readonly forgotten = new Set<string>();
  /** Everything was forgotten at once (or nothing counted yet): every node is uncounted. */
  private all = true;

  get(node: string): LocalCapacity | undefined {
    return this.byNode.get(node);
  }

  set(node: string, counted: LocalCapacity): void {
    this.forget(node);
    this.forgotten.delete(node);
    this.byNode.set(node, counted);
    let entry = this.classes.get(counted.capacityClass);
    if (entry === undefined) {
      const [, ...tenants] = JSON.parse(counted.capacityClass) as [string, ...number[]];
      entry = { tenants, members: new Set(), bound: { ...counted.local } };
      this.classes.set(counted.capacityClass, entry);
    }
    entry.members.add(node);
    for (const m of DATAPATH_MAPS) if (counted.local[m] > entry.bound[m]) entry.bound[m] = counted.local[m];
  }

  /** The node's counts may have changed (or it came or went): it is uncounted until counted again. */
  forget(node: string): void {
    this.forgotten.add(node);
    const had = this.byNode.get(node);
    if (had === undefined) return;
    this.byNode.delete(node);
    const entry = this.classes.get(had.capacityClass)!;
    entry.members.delete(node);
    if (entry.members.size === 0) this.classes.delete(had.capacityClass);
  }

  forgetAll(): void {
    this.byNode.clear();
    this.classes.clear();
    this.forgotten.clear();
    this.all = true;
  }

  /**
   * The nodes not counted now, of those `existing` names: every one after
   * forgetAll, else the forgotten ones that still exist.
   */
  uncounted(existing: ReadonlyMap<string, unknown>): Iterable<string> {
    if (this.all) return [...existing.keys()].filter((n) => !this.byNode.has(n));
    return [...this.forgotten].filter((n) => existing.has(n));
  }

  /** Called once every existing node is counted: from now on only forgotten nodes are uncounted. */
  allCounted(): void {
    this.all = false;
    this.forgotten.clear();
  }

  /** The classes (of counted nodes) in which any of `tenantIds` is present. */
  *classesWith(tenantIds: ReadonlySet<number>): Iterable<{ capacityClass: string; bound: MapCounts; members: ReadonlySet<string> }> {
    for (const [capacityClass, entry] of this.classes) {
      if (entry.tenants.some((t) => tenantIds.has(t))) yield { capacityClass, bound: entry.bound, members: entry.members };
    }
  }

  /** Makes a class's bound exact again (a visit of its members): after one did not fit. */
  exactBound(capacityClass: string): void {
    const entry = this.classes.get(capacityClass);
    if (entry === undefined) return;
    const bound = Object.fromEntries(DATAPATH_MAPS.map((m) => [m, 0])) as MapCounts;
    for (const node of entry.members) {
      const local = this.byNode.get(node)!.local;
      for (const m of DATAPATH_MAPS) if (local[m] > bound[m]) bound[m] = local[m];
    }
    entry.bound = bound;
  }
}
