// SPDX-License-Identifier: Apache-2.0
/**
 * The agent loop's test doubles: kernel maps in memory and an API that
 * answers the datapath long poll from a script (agent-unit, probes).
 */
import { maps as mapSpecs } from "@weft/codec";
import { ApiError, type DatapathAnswer, type DatapathQuery, type StatusReport } from "../../nodeagent/src/agent/client.ts";
import type { DesiredMaps } from "../../nodeagent/src/agent/desired.ts";
import { MANAGED_MAPS, type MapTarget, type MapTargets } from "../../nodeagent/src/apply/index.ts";

/** A full answer body from a desired state. */
export const full = (maps: Partial<DesiredMaps>, revision: number, hash: string): DatapathAnswer => ({ kind: "full", etag: `"${hash}"`, body: { revision, hash, maps: { ...emptyMaps(), ...maps } } });
export const emptyMaps = (): DesiredMaps => Object.fromEntries(MANAGED_MAPS.map((m) => [m, []])) as unknown as DesiredMaps;

/** A kernel map in memory, keyed by the encoded key bytes, as the engine sees a BpfMap. */
export class MemoryMap implements MapTarget {
  readonly entries = new Map<string, Buffer>();
  writes = 0;
  constructor(private readonly keySize: number) {}
  dump() {
    const keys = [...this.entries.keys()].map((k) => Buffer.from(k, "hex"));
    return { keys: Buffer.concat(keys), values: Buffer.concat([...this.entries.values()]), count: keys.length };
  }
  updateBatch(keys: Uint8Array, values: Uint8Array): void {
    const n = keys.length / this.keySize;
    const vs = values.length / n;
    for (let i = 0; i < n; i++) this.entries.set(Buffer.from(keys.subarray(i * this.keySize, (i + 1) * this.keySize)).toString("hex"), Buffer.from(values.subarray(i * vs, (i + 1) * vs)));
    this.writes += n;
  }
  deleteBatch(keys: Uint8Array): number {
    const n = keys.length / this.keySize;
    for (let i = 0; i < n; i++) this.entries.delete(Buffer.from(keys.subarray(i * this.keySize, (i + 1) * this.keySize)).toString("hex"));
    this.writes += n;
    return n;
  }
}

export function memoryMaps(): MapTargets {
  return Object.fromEntries(MANAGED_MAPS.map((m) => [m, new MemoryMap(mapSpecs[m].keySize)])) as unknown as MapTargets;
}
export const snapshot = (maps: MapTargets) => Object.fromEntries(MANAGED_MAPS.map((m) => [m, [...(maps[m] as MemoryMap).entries].sort()]));

/** An API that answers from a script, one entry per poll; records the queries. */
export function scriptedClient(script: (DatapathAnswer | Error)[]) {
  const queries: DatapathQuery[] = [];
  const statuses: StatusReport[] = [];
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  return {
    queries,
    statuses,
    finished,
    client: {
      async datapath(_node: string, q: DatapathQuery = {}): Promise<DatapathAnswer> {
        queries.push({ ...q, signal: undefined });
        const next = script.shift();
        if (next === undefined) {
          done();
          // Hold like a long poll until the test aborts.
          await new Promise<void>((resolve) => q.signal?.addEventListener("abort", () => resolve(), { once: true }));
          throw new ApiError("aborted", 0);
        }
        if (next instanceof Error) throw next;
        return next;
      },
      async putStatus(_node: string, s: (typeof statuses)[number]) {
        statuses.push(s);
      },
      async nodeWorkloads() {
        return null;
      },
    },
  };
}
