// SPDX-License-Identifier: Apache-2.0
/**
 * A BPF ring buffer's consumer side, read without blocking: drain() copies
 * out what the programs have committed so far. The agent calls it on a timer
 * rather than waiting on the ring's epoll fd, because Node cannot wait on an
 * arbitrary fd without a native addon, and a ring of 1 MiB drained every
 * 100 ms holds far more than the events' rate limit lets in meanwhile.
 */
import koffi from "koffi";
import { kernelError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

/** Returned by the sample callback to stop a consume once the caller's bound is reached. */
const STOP = -1;

/**
 * koffi array types by length. koffi never frees a type it made, so making
 * one per record (as a plain koffi.array call per sample would) leaks about
 * 200 bytes an event: hundreds of MiB a day at the default rate. The
 * programs write records of one size (struct weft_flow_event), so this holds
 * one entry.
 */
const byteArrays = new Map<number, koffi.IKoffiCType>();
function byteArray(n: number): koffi.IKoffiCType {
  let t = byteArrays.get(n);
  if (!t) byteArrays.set(n, (t = koffi.array("uint8_t", n, "Typed")));
  return t;
}

export class RingBufferReader {
  private readonly rb: unknown;
  private readonly callback: koffi.IKoffiRegisteredCallback;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private limit = Infinity;
  private closed = false;

  /** `fd` is the ring buffer map's; it stays the caller's to close. */
  constructor(fd: number) {
    const lib = libbpf();
    this.callback = koffi.register((_ctx: unknown, data: unknown, size: number | bigint) => {
      const n = Number(size);
      // Copied: the record's pages are the kernel's again as soon as this returns.
      this.pending.push(new Uint8Array(koffi.decode(data, byteArray(n)) as Uint8Array));
      this.pendingBytes += n;
      return this.pendingBytes >= this.limit ? STOP : 0;
    }, koffi.pointer(lib.types.ringBufferSample));
    const rb = lib.ringBufferNew(fd, this.callback, null, null);
    if (rb === null) {
      koffi.unregister(this.callback);
      throw kernelError("open the ring buffer", -koffi.errno());
    }
    this.rb = rb;
  }

  /**
   * The records committed since the last drain, in order, each a copy;
   * stops after about maxBytes (the rest stays in the ring for next time).
   */
  drain(maxBytes = Infinity): Uint8Array[] {
    if (this.closed) throw new Error("ring buffer reader is closed");
    this.limit = maxBytes;
    const rc = libbpf().ringBufferConsume(this.rb) as number;
    const out = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (rc < 0 && rc !== STOP) throw kernelError("consume the ring buffer", rc);
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libbpf().ringBufferFree(this.rb);
    koffi.unregister(this.callback);
  }
}
