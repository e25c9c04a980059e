// SPDX-License-Identifier: Apache-2.0
/**
 * The last N flows, for GET /flows: a ring of N slots allocated once, so
 * the memory it holds is bounded by N whatever the event rate; the oldest
 * flow is overwritten by the newest.
 */
export class FlowRing<T> {
  private readonly slots: (T | undefined)[];
  /** Index of the next write. */
  private next = 0;
  private held = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new Error(`failed to make a flow ring: capacity ${capacity} is not a positive integer`);
    this.slots = new Array<T | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.held;
  }

  push(item: T): void {
    this.slots[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    if (this.held < this.capacity) this.held++;
  }

  /** The newest `limit` items (all when absent), oldest first. */
  last(limit = this.held): T[] {
    const n = Math.max(0, Math.min(limit, this.held));
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = this.slots[(this.next - n + i + this.capacity) % this.capacity]!;
    return out;
  }
}
