/** Small builders and codec round trips shared by the datapath tests. */
import { decodeEntries, encodeEntries } from "@weft/codec";
import { assignIds } from "../../api/src/datapath/allocate.ts";
import { DATAPATH_MAPS, type DatapathMaps, type Snapshot } from "../../api/src/datapath/types.ts";
import { keyString } from "../../api/src/datapath/diff.ts";

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
