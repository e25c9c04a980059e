/**
 * ?format=binary: a node's maps as the codec encodes them, the bytes
 * bpf_map_update_batch takes, so an operator can compare them with
 * `bpftool map dump pinned /sys/fs/bpf/weft/<map>`. Framing (integers
 * little-endian):
 *
 *   "WEFTDP01"                      8 bytes, magic and version
 *   u32 map count
 *   per map, in the ABI's order (ipcache, endpoint, policy, svc, lb_slot, backend):
 *     u8  name length, then the kernel map name (e.g. "weft_policy")
 *     u32 entry count N, u32 key size K, u32 value size V
 *     N*K bytes of keys back to back, then N*V bytes of values (entry i's value at i*V)
 *
 * Revision and hash travel in the x-weft-revision and ETag headers.
 */
import { decodeEntries, encodeEntries, maps as mapSpecs, type Entry, type MapId } from "@weft/codec";
import { DATAPATH_MAPS, type DatapathMap, type Part } from "../../compiler/index.ts";

export const BINARY_MAGIC = "WEFTDP01";

/** One part's entries of one map, encoded: N*K bytes of keys and N*V bytes of values. */
interface Encoded {
  count: number;
  keys: Buffer;
  values: Buffer;
}

/** Per part: its entries encoded per map, kept while the part lives (a part held by every node is encoded once). */
const encodedParts = new WeakMap<Part, Partial<Record<DatapathMap, Encoded>>>();

export function binaryFragmentsOf(part: Part): Partial<Record<DatapathMap, Encoded>> {
  let f = encodedParts.get(part);
  if (f === undefined) {
    f = {};
    for (const m of DATAPATH_MAPS) {
      const list = part.entries[m];
      if (list === undefined || list.length === 0) continue;
      const { keys, values, count } = encodeEntries(m, list as Entry<typeof m>[]);
      f[m] = { count, keys: Buffer.from(keys), values: Buffer.from(values) };
    }
    encodedParts.set(part, f);
  }
  return f;
}

/**
 * The dump of a node whose parts (owners in order) are encoded as given:
 * records have fixed sizes, so the parts' keys back to back are the node's
 * keys, and likewise its values.
 */
export function binaryFraming(parts: readonly Partial<Record<DatapathMap, Encoded>>[]): Buffer[] {
  const chunks: Buffer[] = [Buffer.from(BINARY_MAGIC, "ascii"), u32(DATAPATH_MAPS.length)];
  for (const m of DATAPATH_MAPS) {
    const spec = mapSpecs[m];
    const name = Buffer.from(spec.name, "ascii");
    const present = parts.flatMap((p) => (p[m] === undefined ? [] : [p[m]]));
    const count = present.reduce((n, e) => n + e.count, 0);
    chunks.push(Buffer.from([name.length]), name, u32(count), u32(spec.keySize), u32(spec.valueSize));
    for (const e of present) chunks.push(e.keys);
    for (const e of present) chunks.push(e.values);
  }
  return chunks;
}

/** The inverse, for tests and tools: entries per map id. */
export function decodeMaps(bytes: Uint8Array): Record<DatapathMap, Entry<MapId>[]> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.subarray(0, 8).toString("ascii") !== BINARY_MAGIC) throw new Error("not a Weft datapath dump");
  let at = 8;
  const n = buf.readUInt32LE(at);
  at += 4;
  const byName = new Map(Object.values(mapSpecs).map((s) => [s.name, s.id]));
  const out = {} as Record<DatapathMap, Entry<MapId>[]>;
  for (let i = 0; i < n; i++) {
    const len = buf[at]!;
    const name = buf.subarray(at + 1, at + 1 + len).toString("ascii");
    at += 1 + len;
    const [count, keySize, valueSize] = [buf.readUInt32LE(at), buf.readUInt32LE(at + 4), buf.readUInt32LE(at + 8)];
    at += 12;
    const keys = buf.subarray(at, at + count * keySize);
    at += count * keySize;
    const values = buf.subarray(at, at + count * valueSize);
    at += count * valueSize;
    const id = byName.get(name) as DatapathMap | undefined;
    if (id === undefined) throw new Error(`unknown map ${name}`);
    out[id] = decodeEntries(id, keys, values);
  }
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
