// SPDX-License-Identifier: Apache-2.0
/**
 * Byte-level operations on one kernel map by fd: single and batch updates,
 * lookups, deletes and a full dump. Keys and values are the codec's bytes;
 * this module never interprets them.
 */
import { check, kernelError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

const ENOENT = 2;
const EINVAL = 22;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524; // kernel-internal code that batch ops on some map types leak

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export interface MapShape {
  name: string;
  keySize: number;
  /** size of one value (one CPU's copy for per-CPU maps) */
  valueSize: number;
  perCpu?: boolean;
}

export class BpfMap {
  /** Bytes of a value as the syscall moves it: per-CPU maps carry one 8-aligned copy per possible CPU. */
  readonly valueBytes: number;

  constructor(
    readonly fd: number,
    readonly shape: MapShape,
  ) {
    this.valueBytes = shape.perCpu ? Math.ceil(shape.valueSize / 8) * 8 * possibleCpus() : shape.valueSize;
  }

  update(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    check(libbpf().mapUpdateElem(this.fd, key, value, flags), `update an entry of map ${this.shape.name}`);
  }

  /** The value bytes, or null when the key is absent. */
  lookup(key: Uint8Array): Uint8Array | null {
    const value = new Uint8Array(this.valueBytes);
    const rc = libbpf().mapLookupElem(this.fd, key, value);
    if (rc === -ENOENT) return null;
    check(rc, `look up an entry of map ${this.shape.name}`);
    return value;
  }

  /** True when the key was there. */
  delete(key: Uint8Array): boolean {
    const rc = libbpf().mapDeleteElem(this.fd, key);
    if (rc === -ENOENT) return false;
    check(rc, `delete an entry of map ${this.shape.name}`);
    return true;
  }

  /**
   * Writes count entries (keys and values back to back) in one syscall where
   * the map type supports it, else one by one (kernels and map types without
   * batch operations answer EINVAL or ENOTSUPP).
   */
  updateBatch(keys: Uint8Array, values: Uint8Array, flags = BPF_ANY): void {
    const count = this.countOf(keys, values);
    if (count === 0) return;
    const done = [count];
    const rc = libbpf().mapUpdateBatch(this.fd, keys, values, done, batchOpts(flags));
    if (rc === 0) return;
    if (!unsupported(rc)) throw kernelError(`update ${count} entries of map ${this.shape.name} (${done[0]} written)`, rc);
    const { keySize } = this.shape;
    for (let i = 0; i < count; i++) {
      this.update(keys.subarray(i * keySize, (i + 1) * keySize), values.subarray(i * this.valueBytes, (i + 1) * this.valueBytes), flags);
    }
  }

  /** Deletes the given keys; absent keys are an error in batch mode, so this deletes one by one on ENOENT. */
  deleteBatch(keys: Uint8Array): number {
    const { keySize } = this.shape;
    const count = keys.length / keySize;
    if (count === 0) return 0;
    const done = [count];
    const rc = libbpf().mapDeleteBatch(this.fd, keys, done, batchOpts(BPF_ANY));
    if (rc === 0) return count;
    if (rc !== -ENOENT && !unsupported(rc)) throw kernelError(`delete ${count} entries of map ${this.shape.name}`, rc);
    let deleted = 0;
    for (let i = 0; i < count; i++) if (this.delete(keys.subarray(i * keySize, (i + 1) * keySize))) deleted++;
    return deleted;
  }

  /** Every key in the map, by bpf_map_get_next_key. */
  keys(): Uint8Array {
    const { keySize } = this.shape;
    const chunks: Uint8Array[] = [];
    let prev: Uint8Array | null = null;
    for (;;) {
      const next = new Uint8Array(keySize);
      const rc = libbpf().mapGetNextKey(this.fd, prev, next);
      if (rc === -ENOENT) break;
      check(rc, `iterate keys of map ${this.shape.name}`);
      chunks.push(next);
      prev = next;
    }
    return concat(chunks, keySize);
  }

  /** Every entry: keys and values back to back, batched where supported. */
  dump(): { keys: Uint8Array; values: Uint8Array; count: number } {
    const { keySize } = this.shape;
    const chunk = 1024;
    const keyChunks: Uint8Array[] = [];
    const valueChunks: Uint8Array[] = [];
    const token = new Uint8Array(Math.max(keySize, 8));
    let first = true;
    for (;;) {
      const keys = new Uint8Array(chunk * keySize);
      const values = new Uint8Array(chunk * this.valueBytes);
      const count = [chunk];
      const rc = libbpf().mapLookupBatch(this.fd, first ? null : token, token, keys, values, count, batchOpts(BPF_ANY));
      if (unsupported(rc) && first) return this.dumpByKeys();
      if (rc < 0 && rc !== -ENOENT) check(rc, `dump map ${this.shape.name}`);
      const n = count[0] ?? 0;
      keyChunks.push(keys.subarray(0, n * keySize));
      valueChunks.push(values.subarray(0, n * this.valueBytes));
      first = false;
      if (rc === -ENOENT) break;
    }
    const keys = concat(keyChunks, 1);
    return { keys, values: concat(valueChunks, 1), count: keys.length / keySize };
  }

  private dumpByKeys(): { keys: Uint8Array; values: Uint8Array; count: number } {
    const keys = this.keys();
    const { keySize } = this.shape;
    const count = keys.length / keySize;
    const values = new Uint8Array(count * this.valueBytes);
    for (let i = 0; i < count; i++) {
      const v = this.lookup(keys.subarray(i * keySize, (i + 1) * keySize));
      if (v) values.set(v, i * this.valueBytes); // deleted meanwhile: leave zeros
    }
    return { keys, values, count };
  }

  private countOf(keys: Uint8Array, values: Uint8Array): number {
    const count = keys.length / this.shape.keySize;
    if (!Number.isInteger(count) || values.length !== count * this.valueBytes) {
      throw new Error(
        `failed to write map ${this.shape.name}: ${keys.length} key bytes and ${values.length} value bytes are not whole entries of ${this.shape.keySize}+${this.valueBytes} bytes`,
      );
    }
    return count;
  }
}

function unsupported(rc: number): boolean {
  return rc === -ENOTSUPP || rc === -EOPNOTSUPP || rc === -EINVAL;
}

// struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; }
function batchOpts(elemFlags: number): Uint8Array {
  const opts = new Uint8Array(24);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 24n, true);
  view.setBigUint64(8, BigInt(elemFlags), true);
  return opts;
}

function concat(chunks: Uint8Array[], unit: number): Uint8Array {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total - (total % unit));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

let cpus: number | undefined;
export function possibleCpus(): number {
  cpus ??= check(libbpf().numPossibleCpus(), "count possible CPUs");
  return cpus;
}

/** Opens a map pinned on bpffs. The caller closes the fd (closeFd) when done. */
export function openPinnedMap(path: string, shape: MapShape): BpfMap {
  return new BpfMap(check(libbpf().objGet(path), `open pinned map ${path}`), shape);
}

export function closeFd(fd: number): void {
  libbpf().close(fd);
}
