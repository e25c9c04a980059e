// SPDX-License-Identifier: Apache-2.0
/**
 * What the API says a node should hold, checked before anything reaches the
 * kernel, and deltas patched onto the last good full state.
 *
 * Validation: the answer's shape (revision, hash, the six maps as arrays of
 * {key, value}), every entry through the codec (which names map, entry and
 * field of the first bad one), and no key twice in a map. The API's hash is
 * sha256 over per-owner digests (api/src/compiler/types.ts NodeDatapath): the
 * flat entries it serves do not carry owners, so the agent cannot recompute
 * it and only checks that it is a well-formed digest; it reports that hash
 * back verbatim as "what I applied".
 *
 * Keys are compared by their encoded bytes, the same identity the kernel map
 * uses, so the agent never needs its own notion of key equality per map.
 */
import { encodeEntries, encodeKeys, maps as mapSpecs, type Entry, type KeyOf } from "@weft/codec";
import { MANAGED_MAPS, type ManagedMap } from "../datapath/index.ts";

export type DesiredMaps = { [M in ManagedMap]: Entry<M>[] };

export interface DesiredState {
  revision: number;
  hash: string;
  maps: DesiredMaps;
}

export interface Delta {
  revision: number;
  hash: string;
  upserts: DesiredMaps;
  deletes: { [M in ManagedMap]: KeyOf<M>[] };
}

export class InvalidDatapath extends Error {}

const HASH = /^[0-9a-f]{64}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function header(body: unknown, what: string): { revision: number; hash: string; b: Record<string, unknown> } {
  if (!isObject(body)) throw new InvalidDatapath(`failed to validate ${what}: not a JSON object`);
  const { revision, hash } = body;
  if (typeof revision !== "number" || !Number.isSafeInteger(revision) || revision < 0) {
    throw new InvalidDatapath(`failed to validate ${what}: revision ${JSON.stringify(revision)} is not an integer >= 0`);
  }
  if (typeof hash !== "string" || !HASH.test(hash)) {
    throw new InvalidDatapath(`failed to validate ${what}: hash ${JSON.stringify(hash)} is not a sha256 hex digest`);
  }
  return { revision, hash, b: body };
}

/** Hex of each encoded key, in entry order. */
function keyHexes(id: ManagedMap, keys: Uint8Array): string[] {
  const size = mapSpecs[id].keySize;
  const out: string[] = [];
  for (let o = 0; o < keys.length; o += size) out.push(Buffer.from(keys.buffer, keys.byteOffset + o, size).toString("hex"));
  return out;
}

function checkEntries(id: ManagedMap, raw: unknown, what: string): Entry<ManagedMap>[] {
  if (!Array.isArray(raw)) throw new InvalidDatapath(`failed to validate ${what}: map ${id} is not an array`);
  raw.forEach((e, i) => {
    if (!isObject(e) || !isObject(e.key) || !isObject(e.value)) throw new InvalidDatapath(`failed to validate ${what}: ${id}[${i}] is not {key, value}`);
  });
  let keys: Uint8Array;
  try {
    keys = encodeEntries(id, raw as Entry<typeof id>[]).keys;
  } catch (err) {
    throw new InvalidDatapath(`failed to validate ${what}: ${(err as Error).message}`);
  }
  const seen = new Set<string>();
  keyHexes(id, keys).forEach((k, i) => {
    if (seen.has(k)) throw new InvalidDatapath(`failed to validate ${what}: ${id}[${i}] repeats a key (${JSON.stringify((raw[i] as Entry<ManagedMap>).key)})`);
    seen.add(k);
  });
  return raw as Entry<ManagedMap>[];
}

/** Validates a full answer {revision, hash, maps}; throws InvalidDatapath naming the first problem. */
export function validateFull(body: unknown): DesiredState {
  const { revision, hash, b } = header(body, "datapath");
  if (!isObject(b.maps)) throw new InvalidDatapath("failed to validate datapath: no maps object");
  const out = {} as Record<ManagedMap, Entry<ManagedMap>[]>;
  for (const id of MANAGED_MAPS) out[id] = checkEntries(id, b.maps[id], `datapath revision ${revision}`);
  const extra = Object.keys(b.maps).filter((k) => !(MANAGED_MAPS as readonly string[]).includes(k));
  if (extra.length) throw new InvalidDatapath(`failed to validate datapath revision ${revision}: unknown maps ${extra.join(", ")}`);
  return { revision, hash, maps: out as DesiredMaps };
}

/** Validates a delta {revision, hash, upserts, deletes}; a map absent from either side is unchanged. */
export function validateDelta(body: unknown): Delta {
  const { revision, hash, b } = header(body, "datapath delta");
  if (!isObject(b.upserts) || !isObject(b.deletes)) throw new InvalidDatapath("failed to validate datapath delta: no upserts and deletes objects");
  const upserts = {} as Record<ManagedMap, Entry<ManagedMap>[]>;
  const deletes = {} as Record<ManagedMap, KeyOf<ManagedMap>[]>;
  const what = `datapath delta to revision ${revision}`;
  for (const id of MANAGED_MAPS) {
    upserts[id] = b.upserts[id] === undefined ? [] : checkEntries(id, b.upserts[id], what);
    const dels = b.deletes[id] ?? [];
    if (!Array.isArray(dels) || !dels.every(isObject)) throw new InvalidDatapath(`failed to validate ${what}: deletes.${id} is not an array of keys`);
    try {
      encodeKeys(id, dels as unknown as KeyOf<typeof id>[]);
    } catch (err) {
      throw new InvalidDatapath(`failed to validate ${what}: deletes: ${(err as Error).message}`);
    }
    deletes[id] = dels as unknown as KeyOf<ManagedMap>[];
  }
  return { revision, hash, upserts: upserts as DesiredMaps, deletes: deletes as Delta["deletes"] };
}

/**
 * The full state after a delta: deletes, then upserts (an upsert wins over a
 * delete of the same key: a key that moved between owners). The base is not
 * changed, so a delta that later fails to apply leaves the last good state.
 */
export function patch(base: DesiredState, delta: Delta): DesiredState {
  const maps = {} as Record<ManagedMap, Entry<ManagedMap>[]>;
  for (const id of MANAGED_MAPS) {
    const table = new Map<string, Entry<ManagedMap>>();
    const current = base.maps[id] as Entry<typeof id>[];
    keyHexes(id, encodeKeys(id, current.map((e) => e.key))).forEach((k, i) => table.set(k, current[i]!));
    for (const k of keyHexes(id, encodeKeys(id, delta.deletes[id] as KeyOf<typeof id>[]))) table.delete(k);
    const ups = delta.upserts[id] as Entry<typeof id>[];
    keyHexes(id, encodeKeys(id, ups.map((e) => e.key))).forEach((k, i) => table.set(k, ups[i]!));
    maps[id] = [...table.values()];
  }
  return { revision: delta.revision, hash: delta.hash, maps: maps as DesiredMaps };
}

export function isEmptyDelta(delta: Delta): boolean {
  return MANAGED_MAPS.every((id) => delta.upserts[id].length === 0 && delta.deletes[id].length === 0);
}

export function entryCounts(state: DesiredState): Record<ManagedMap, number> {
  return Object.fromEntries(MANAGED_MAPS.map((id) => [id, state.maps[id].length])) as Record<ManagedMap, number>;
}
