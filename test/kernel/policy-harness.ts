/**
 * The tc policy object loaded with its maps filled through the codec, and a
 * verdict function that reads the reason back from the metrics map, the way
 * an operator would see it.
 */
import {
  decodeKeys,
  decodeValues,
  encodeEntries,
  maps,
  sumPerCpu,
  type Entry,
  type EndpointKey,
  type Direction,
  type Identity,
  type IpcacheKey,
  type MapId,
  type MapSpec,
  type Reason,
} from "@weft/codec";
import { BpfMap, BpfObject, possibleCpus, testRun, TC_ACT_OK, TC_ACT_SHOT } from "../../nodeagent/src/kernel/index.ts";
import { objectPath } from "../support/kernel.ts";

export function mapOf(obj: BpfObject, spec: MapSpec): BpfMap {
  return new BpfMap(obj.mapFd(spec.name), {
    name: spec.name,
    keySize: spec.keySize,
    valueSize: spec.valueSize,
    perCpu: spec.kind === "percpu_array",
  });
}

export function writeEntries<M extends MapId>(map: BpfMap, id: M, entries: readonly Entry<M>[]): void {
  const { keys, values } = encodeEntries(id, entries);
  map.updateBatch(keys, values);
}

/** Packet counts per "hook/reason" slot of the metrics map, summed over CPUs. */
export function readMetrics(map: BpfMap): Map<string, bigint> {
  const { keys, values } = map.dump();
  const slots = decodeKeys("metrics", keys);
  const copies = decodeValues("metrics", values);
  const cpus = possibleCpus();
  const out = new Map<string, bigint>();
  slots.forEach((k, i) => out.set(`${k.hook}/${k.reason}`, sumPerCpu(copies.slice(i * cpus, (i + 1) * cpus)).packets));
  return out;
}

export function deleteAll(map: BpfMap): void {
  map.deleteBatch(map.keys());
}

export interface Verdict {
  pass: boolean;
  reason: Reason;
}

export class PolicyHarness {
  readonly obj = BpfObject.load(objectPath("weft_policy"));
  readonly endpoint = mapOf(this.obj, maps.endpoint);
  readonly ipcache = mapOf(this.obj, maps.ipcache);
  readonly policy = mapOf(this.obj, maps.policy);
  readonly metrics = mapOf(this.obj, maps.metrics);
  /** Written by the program itself; tests read it, and write it only to forge entries. */
  readonly ct = mapOf(this.obj, maps.ct);
  private readonly progs = {
    ingress: this.obj.programFd("weft_to_wl"),
    egress: this.obj.programFd("weft_from_wl"),
  };

  endpoints(entries: readonly { key: EndpointKey; value: Identity }[]): void {
    writeEntries(this.endpoint, "endpoint", entries);
  }

  peers(entries: readonly { key: IpcacheKey; value: Identity }[]): void {
    writeEntries(this.ipcache, "ipcache", entries);
  }

  setPolicy(entries: readonly Entry<"policy">[]): void {
    deleteAll(this.policy);
    writeEntries(this.policy, "policy", entries);
  }

  /**
   * Runs the program for a direction on one frame. The reason is the one
   * metrics slot of that hook that grew by exactly one packet.
   */
  verdict(direction: Direction, frame: Uint8Array): Verdict {
    const before = readMetrics(this.metrics);
    const { retval } = testRun(this.progs[direction], frame);
    const after = readMetrics(this.metrics);
    const grown = [...after].filter(([slot, n]) => n !== (before.get(slot) ?? 0n));
    if (grown.length !== 1 || grown[0]![1] - (before.get(grown[0]![0]) ?? 0n) !== 1n) {
      throw new Error(`expected one metrics slot to grow by one, got ${JSON.stringify(grown.map(([s, n]) => [s, String(n)]))}`);
    }
    const [hook, reason] = grown[0]![0].split("/") as [string, Reason];
    if (hook !== direction) throw new Error(`counted under hook ${hook}, expected ${direction}`);
    if (retval !== TC_ACT_OK && retval !== TC_ACT_SHOT) throw new Error(`unexpected tc verdict ${retval}`);
    return { pass: retval === TC_ACT_OK, reason };
  }

  close(): void {
    this.obj.close();
  }
}
