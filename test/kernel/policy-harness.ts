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
import koffi from "koffi";
import { BpfMap, BpfObject, possibleCpus, testRun, TC_ACT_OK, TC_ACT_SHOT } from "../../nodeagent/src/kernel/index.ts";
import { check } from "../../nodeagent/src/kernel/errors.ts";
import { libbpf } from "../../nodeagent/src/kernel/libbpf.ts";
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

/** struct __sk_buff as BPF_PROG_TEST_RUN takes and returns it: only mark (offset 8) matters here. */
const SKB_SIZE = 192;
const SKB_MARK = 8;

/**
 * BPF_PROG_TEST_RUN with skb->mark set on the way in and read back on the
 * way out (testRun returns no context).
 */
export function testRunMarked(progFd: number, data: Uint8Array, mark: number): { retval: number; mark: number } {
  const lib = libbpf();
  const ctxIn = new Uint8Array(SKB_SIZE);
  const ctxOut = new Uint8Array(SKB_SIZE);
  new DataView(ctxIn.buffer).setUint32(SKB_MARK, mark, true);
  const opts = {
    sz: koffi.sizeof(lib.types.testRunOpts),
    data_in: data,
    data_out: null,
    data_size_in: data.length,
    data_size_out: 0,
    ctx_in: ctxIn,
    ctx_out: ctxOut,
    ctx_size_in: SKB_SIZE,
    ctx_size_out: SKB_SIZE,
    retval: 0,
    repeat: 1,
    duration: 0,
    flags: 0,
    cpu: 0,
    batch_size: 0,
  };
  check(lib.progTestRun(progFd, opts), `test-run program fd ${progFd}`);
  return { retval: opts.retval, mark: new DataView(ctxOut.buffer).getUint32(SKB_MARK, true) };
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
    return this.counted(direction, () => testRun(this.progs[direction], frame).retval);
  }

  /** verdict, with skb->mark set on the way in; `mark` is skb->mark as the program left it. */
  verdictMarked(direction: Direction, frame: Uint8Array, mark = 0): Verdict & { mark: number } {
    let out = 0;
    const v = this.counted(direction, () => {
      const r = testRunMarked(this.progs[direction], frame, mark);
      out = r.mark;
      return r.retval;
    });
    return { ...v, mark: out };
  }

  private counted(direction: Direction, run: () => number): Verdict {
    const before = readMetrics(this.metrics);
    const retval = run();
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
