// SPDX-License-Identifier: Apache-2.0
/**
 * The local_veth map (bpf/README [R10], host routing): which host-side veth
 * each workload address of this node sits behind, for the veths that carry
 * this agent's tc programs. The API knows no interfaces, so the agent owns
 * this map: it is diffed against what the kernel holds and written like the
 * API's maps (upserts, then deletes), never flushed, so a restart keeps
 * host routing without a gap. With host routing off the map is kept empty
 * and every packet is routed by the host.
 */
import { encodeEntries, maps, type Entry } from "@weft/codec";
import type { MapTarget } from "../apply/index.ts";
import { planMap } from "../apply/plan.ts";

export interface LocalVethSyncResult {
  upserts: number;
  deletes: number;
}

/** Makes the map hold exactly `wanted` (address -> host-side ifindex). */
export function syncLocalVeths(target: MapTarget, wanted: ReadonlyMap<string, number>): LocalVethSyncResult {
  const spec = maps.local_veth;
  const entries: Entry<"local_veth">[] = [...wanted].map(([address, ifindex]) => ({ key: { address }, value: { ifindex } }));
  const plan = planMap(spec.name, spec.keySize, spec.valueSize, encodeEntries("local_veth", entries), target.dump());
  if (plan.upserts.count > 0) target.updateBatch(plan.upserts.keys, plan.upserts.values);
  // After the upserts: an address that moved to a new veth is never without an entry in between.
  if (plan.deletes.count > 0) target.deleteBatch(plan.deletes.keys);
  return { upserts: plan.upserts.count, deletes: plan.deletes.count };
}
