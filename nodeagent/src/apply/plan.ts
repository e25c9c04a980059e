// SPDX-License-Identifier: Apache-2.0
/**
 * The diff of one map, on encoded bytes: desired entries (as the codec wrote
 * them) against what the kernel holds (as bpf_map_lookup_batch returned it).
 * Keys compare by their bytes, so two keys the codec would decode alike but
 * that differ in a byte (garbage in padding written by someone else) are two
 * keys, exactly as the kernel's hash sees them. Pure: no kernel access.
 */

export interface Encoded {
  keys: Uint8Array;
  values: Uint8Array;
  count: number;
}

export interface MapPlan {
  /** entries to write: new keys and keys whose value changed */
  upserts: Encoded;
  /** keys to remove: present in the kernel, absent from the desired state */
  deletes: { keys: Uint8Array; count: number };
}

/**
 * Keys as u32 words: every key of the ABI is a multiple of 4 bytes (the
 * structs are 4-aligned), so a key compares as 1 to 4 words. The table below
 * is open addressing over those words; a Map keyed by strings of the bytes
 * cost ~1.5 µs per entry here, most of an apply's time.
 */
function words(bytes: Uint8Array): Uint32Array {
  // Fresh buffers from the codec and from map dumps start 4-aligned; copy otherwise.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 2);
}

function hashKey(w: Uint32Array, o: number, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ w[o + i]!, 0x01000193);
  // murmur3's finaliser: the low bits pick the slot, so mix the high ones in.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function sameWords(a: Uint32Array, ao: number, b: Uint32Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

function sameBytes(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

/** Index of n keys (w words each) in `keys`: slot -> entry index, -1 empty. */
class KeyIndex {
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(
    private readonly keys: Uint32Array,
    private readonly w: number,
  ) {
    let size = 16;
    while (size < (keys.length / w) * 2) size *= 2; // load factor <= 0.5
    this.slots = new Int32Array(size).fill(-1);
    this.mask = size - 1;
  }

  /** Adds entry i; returns the index of an earlier entry with the same key, or -1. */
  add(i: number): number {
    const { keys, w, slots, mask } = this;
    for (let s = hashKey(keys, i * w, w) & mask; ; s = (s + 1) & mask) {
      const e = slots[s]!;
      if (e === -1) {
        slots[s] = i;
        return -1;
      }
      if (sameWords(keys, e * w, keys, i * w, w)) return e;
    }
  }

  /** The entry whose key equals other's key j, or -1. */
  find(other: Uint32Array, j: number): number {
    const { keys, w, slots, mask } = this;
    for (let s = hashKey(other, j * w, w) & mask; ; s = (s + 1) & mask) {
      const e = slots[s]!;
      if (e === -1 || sameWords(keys, e * w, other, j * w, w)) return e;
    }
  }
}

/**
 * Plans one map. Throws when the desired state names a key twice (a
 * malformed datapath: which of the two values is meant is unknowable).
 */
export function planMap(map: string, keySize: number, valueSize: number, desired: Encoded, current: Encoded): MapPlan {
  if (keySize % 4 !== 0) throw new Error(`failed to plan map ${map}: key size ${keySize} is not a multiple of 4`);
  const w = keySize / 4;
  const dk = words(desired.keys);
  const index = new KeyIndex(dk, w);
  for (let i = 0; i < desired.count; i++) {
    const had = index.add(i);
    if (had !== -1) throw new Error(`failed to plan map ${map}: desired entries ${had} and ${i} have the same key`);
  }

  // same[i] = 1: desired entry i is already in the kernel with the same value.
  const same = new Uint8Array(desired.count);
  const ck = words(current.keys);
  const deleteKeys = new Uint8Array(current.count * keySize);
  let deletes = 0;
  for (let j = 0; j < current.count; j++) {
    const i = index.find(ck, j);
    if (i === -1) {
      deleteKeys.set(current.keys.subarray(j * keySize, (j + 1) * keySize), deletes * keySize);
      deletes++;
    } else if (sameBytes(desired.values, i * valueSize, current.values, j * valueSize, valueSize)) {
      same[i] = 1;
    }
  }

  let upserts = 0;
  for (let i = 0; i < desired.count; i++) if (same[i] === 0) upserts++;
  let upsertKeys: Uint8Array;
  let upsertValues: Uint8Array;
  if (upserts === desired.count) {
    // The common first apply: nothing to pick, no copy.
    upsertKeys = desired.keys;
    upsertValues = desired.values;
  } else {
    upsertKeys = new Uint8Array(upserts * keySize);
    upsertValues = new Uint8Array(upserts * valueSize);
    for (let i = 0, o = 0; i < desired.count; i++) {
      if (same[i] === 1) continue;
      upsertKeys.set(desired.keys.subarray(i * keySize, (i + 1) * keySize), o * keySize);
      upsertValues.set(desired.values.subarray(i * valueSize, (i + 1) * valueSize), o * valueSize);
      o++;
    }
  }
  return {
    upserts: { keys: upsertKeys, values: upsertValues, count: upserts },
    deletes: { keys: deleteKeys.subarray(0, deletes * keySize), count: deletes },
  };
}
