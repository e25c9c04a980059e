// SPDX-License-Identifier: Apache-2.0
/**
 * The apply engine: desired entries per map in, the kernel's maps changed to
 * hold exactly them, with batch updates and deletes in an order that never
 * breaks a live connection (order.ts). It reads back what the kernel holds
 * on every apply instead of trusting a cache, so a restart, a crash half-way
 * or someone else's write is repaired by the next apply, and it never
 * flushes: an identical desired state writes nothing.
 */
import { encodeEntries, maps as mapSpecs, type Entry } from "@weft/codec";
import { DELETE_ORDER, isManagedMap, MANAGED_MAPS, orderPolicyPlan, UPSERT_ORDER, type ManagedMap } from "./order.ts";
import { planMap, type Encoded, type MapPlan } from "./plan.ts";

/**
 * Desired entries per managed map: what the engine writes (the agent's validated
 * answer, DesiredRevision in agent/desired.ts, carries them with its revision
 * and hash). A map left out is not touched; [] empties it.
 */
export type DesiredEntries = Partial<{ [M in ManagedMap]: readonly Entry<M>[] }>;

/** What the engine needs of a kernel map (BpfMap has it). */
export interface MapTarget {
  dump(): Encoded;
  updateBatch(keys: Uint8Array, values: Uint8Array): void;
  deleteBatch(keys: Uint8Array): number;
}

export type MapTargets = { [M in ManagedMap]: MapTarget };

export interface MapCounts {
  upserts: number;
  deletes: number;
}

export interface ApplyResult {
  /** Per map written or checked; maps left out of the desired state are absent. */
  maps: Partial<Record<ManagedMap, MapCounts>>;
  upserts: number;
  deletes: number;
  /** Wall time of encode, read-back, diff and writes, in milliseconds. */
  elapsedMs: number;
}

/** One batch call, in the order made; for tests and traces. */
export interface BatchCall {
  map: ManagedMap;
  op: "update" | "delete";
  count: number;
}

export interface ApplyOptions {
  /** Called before each batch call. */
  onBatch?: (call: BatchCall) => void;
}

/** The plan for a desired state: per map, what to write and what to delete. */
export type Plan = Partial<Record<ManagedMap, MapPlan>>;

export class ApplyEngine {
  constructor(
    private readonly targets: MapTargets,
    private readonly options: ApplyOptions = {},
  ) {}

  /**
   * Encodes and validates every map's entries, reads the kernel back and
   * diffs. Nothing is written, so a malformed desired state (a bad field, a
   * duplicate key, a map the agent does not own) fails here with the kernel
   * untouched.
   */
  plan(desired: DesiredEntries): Plan {
    const plan: Plan = {};
    for (const id of Object.keys(desired)) {
      if (!isManagedMap(id)) throw new Error(`failed to plan map ${id}: it is written by the datapath, not by the agent (agent maps: ${MANAGED_MAPS.join(", ")})`);
    }
    const encoded: Partial<Record<ManagedMap, Encoded>> = {};
    for (const id of MANAGED_MAPS) {
      const entries = desired[id];
      if (entries === undefined) continue;
      try {
        encoded[id] = encodeEntries(id, entries as Entry<typeof id>[]);
      } catch (err) {
        throw new Error(`failed to encode map ${id}: ${(err as Error).message}`);
      }
    }
    for (const id of MANAGED_MAPS) {
      const want = encoded[id];
      if (want === undefined) continue;
      const spec = mapSpecs[id];
      const p = planMap(id, spec.keySize, spec.valueSize, want, this.targets[id].dump());
      plan[id] = id === "policy" || id === "audit" || id === "steer" ? orderPolicyPlan(p) : p; // same key, same selection-key rule
    }
    return plan;
  }

  /** Plans and applies. On a failure the maps hold a mix of old and new that the next apply completes. */
  apply(desired: DesiredEntries): ApplyResult {
    const started = process.hrtime.bigint();
    const plan = this.plan(desired);
    const result: ApplyResult = { maps: {}, upserts: 0, deletes: 0, elapsedMs: 0 };
    for (const id of MANAGED_MAPS) {
      const p = plan[id];
      if (p) result.maps[id] = { upserts: p.upserts.count, deletes: p.deletes.count };
    }
    for (const id of UPSERT_ORDER) {
      const p = plan[id];
      if (!p || p.upserts.count === 0) continue;
      this.options.onBatch?.({ map: id, op: "update", count: p.upserts.count });
      this.targets[id].updateBatch(p.upserts.keys, p.upserts.values);
      result.upserts += p.upserts.count;
    }
    for (const id of DELETE_ORDER) {
      const p = plan[id];
      if (!p || p.deletes.count === 0) continue;
      this.options.onBatch?.({ map: id, op: "delete", count: p.deletes.count });
      this.targets[id].deleteBatch(p.deletes.keys);
      result.deletes += p.deletes.count;
    }
    result.elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    return result;
  }
}
