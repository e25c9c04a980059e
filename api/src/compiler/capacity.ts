/**
 * Admission check: would any node's desired entries overflow a kernel map?
 * The REST layer compiles the would-be snapshot for the nodes a write
 * touches and refuses it (422) with these findings, so "policy map full"
 * is met at the API and never by an agent at run time.
 */
import { maps } from "@weft/codec";
import { DATAPATH_MAPS, type DatapathMap, type MapCounts } from "./types.ts";

export interface CapacityProblem {
  map: DatapathMap;
  node: string;
  needed: number;
  available: number;
}

export type Capacities = Record<DatapathMap, number>;

/** The ABI's max_entries, optionally lowered (or raised, for maps created larger) by config. */
export function capacities(overrides: Partial<Capacities> = {}): Capacities {
  return Object.fromEntries(DATAPATH_MAPS.map((m) => [m, overrides[m] ?? maps[m].maxEntries])) as Capacities;
}

/** Every (node, map) whose count exceeds its capacity, ordered by node then ABI map order. */
export function checkCapacity(countsByNode: ReadonlyMap<string, MapCounts> | Readonly<Record<string, MapCounts>>, limits: Capacities = capacities()): CapacityProblem[] {
  const entries = countsByNode instanceof Map ? [...countsByNode] : Object.entries(countsByNode);
  const problems: CapacityProblem[] = [];
  for (const [node, counts] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const map of DATAPATH_MAPS) {
      if (counts[map] > limits[map]) problems.push({ map, node, needed: counts[map], available: limits[map] });
    }
  }
  return problems;
}
