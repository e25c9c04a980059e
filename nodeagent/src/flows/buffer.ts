// SPDX-License-Identifier: Apache-2.0
/**
 * The last N flows, for GET /flows, kept as the kernel wrote them: N
 * records of a fixed size in one buffer allocated once, the oldest
 * overwritten by the newest. Raw bytes rather than objects, because every
 * buffered object outlives the garbage collector's young generation and at
 * thousands of flows a second V8 grows that generation by tens of MiB to
 * hold them; 4096 records here are 288 KiB, decoded only when read.
 */
export class RecordRing {
  private readonly bytes: Uint8Array;
  /** Index of the next write. */
  private next = 0;
  private held = 0;

  constructor(
    readonly capacity: number,
    readonly recordSize: number,
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new Error(`failed to make a flow ring: capacity ${capacity} is not a positive integer`);
    this.bytes = new Uint8Array(capacity * recordSize);
  }

  get size(): number {
    return this.held;
  }

  /** Copies records laid back to back in `records` (a whole number of them). */
  push(records: Uint8Array): void {
    const n = records.length / this.recordSize;
    if (!Number.isInteger(n)) throw new Error(`failed to keep flows: ${records.length} bytes are not whole records of ${this.recordSize}`);
    // Only the newest `capacity` can stay.
    const skip = Math.max(0, n - this.capacity);
    for (let i = skip; i < n; i++) {
      this.bytes.set(records.subarray(i * this.recordSize, (i + 1) * this.recordSize), this.next * this.recordSize);
      this.next = (this.next + 1) % this.capacity;
    }
    this.held = Math.min(this.capacity, this.held + n);
  }

  /** The newest `limit` records (all when absent), oldest first, back to back in a new array. */
  last(limit = this.held): Uint8Array {
    const n = Math.max(0, Math.min(limit, this.held));
    const out = new Uint8Array(n * this.recordSize);
    const first = (this.next - n + this.capacity) % this.capacity;
    const tail = Math.min(n, this.capacity - first);
    out.set(this.bytes.subarray(first * this.recordSize, (first + tail) * this.recordSize), 0);
    out.set(this.bytes.subarray(0, (n - tail) * this.recordSize), tail * this.recordSize);
    return out;
  }
}
