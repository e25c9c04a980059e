// SPDX-License-Identifier: Apache-2.0
/**
 * Start-up check that the objects about to be loaded and the codec about to
 * encode entries were built from the same ABI: every struct the codec knows
 * has the same size in the objects' BTF, and every map has the key size,
 * value size, type and capacity the codec assumes. Both come from
 * bpf/include/weft_abi.h, so a mismatch means a stale build or a mixed
 * install (objects from one version, codec from another) — writing entries
 * then would corrupt every map, so the agent refuses to start.
 */
import { layouts as codecLayouts, maps as codecMaps, type MapSpec, type StructLayout } from "@weft/codec";
import type { BpfObject } from "../kernel/object.ts";

/** enum bpf_map_type values of the map kinds in the ABI. */
export const MAP_TYPE_CODES: Record<MapSpec["kind"], number> = { hash: 1, array: 2, percpu_array: 6, lru_hash: 9, lpm_trie: 11, ringbuf: 27 };

export interface Abi {
  layouts: Readonly<Record<string, Pick<StructLayout, "name" | "size">>>;
  maps: Readonly<Record<string, Pick<MapSpec, "name" | "kind" | "keySize" | "valueSize" | "maxEntries">>>;
}

export const codecAbi: Abi = { layouts: codecLayouts, maps: codecMaps };

/** Every disagreement between the objects and the ABI, as sentences; empty when they agree. */
export function layoutMismatches(objects: readonly BpfObject[], abi: Abi = codecAbi): string[] {
  const problems: string[] = [];
  for (const layout of Object.values(abi.layouts)) {
    if (!layout.name.startsWith("struct ")) continue; // the metrics key is a bare __u32
    const name = layout.name.slice("struct ".length);
    for (const obj of objects) {
      const size = obj.btfStructSize(name);
      if (size !== null && size !== layout.size) problems.push(`${obj.path}: ${layout.name} is ${size} bytes, the codec writes ${layout.size}`);
    }
  }
  for (const spec of Object.values(abi.maps)) {
    let found = false;
    for (const obj of objects) {
      const def = obj.mapDefinition(spec.name);
      if (def === null) continue;
      found = true;
      const want = { type: MAP_TYPE_CODES[spec.kind], keySize: spec.keySize, valueSize: spec.valueSize, maxEntries: spec.maxEntries };
      for (const field of ["type", "keySize", "valueSize", "maxEntries"] as const) {
        if (def[field] !== want[field]) problems.push(`${obj.path}: map ${spec.name} has ${field} ${def[field]}, the codec expects ${want[field]}`);
      }
    }
    if (!found) problems.push(`map ${spec.name} is in the codec's table but in no BPF object`);
  }
  return problems;
}

export function checkLayouts(objects: readonly BpfObject[], abi: Abi = codecAbi): void {
  const problems = layoutMismatches(objects, abi);
  if (problems.length > 0) {
    throw new Error(`failed to check the datapath ABI: the BPF objects and the codec disagree (rebuild both with npm run build:abi): ${problems.join("; ")}`);
  }
}
