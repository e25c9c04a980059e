// SPDX-License-Identifier: Apache-2.0
/**
 * The stream outcomes the agent turns into flow events (issue #18 item 7):
 * one record per stream at its end, and one per refused handshake, kept
 * until the agent drains them with the `events` control op. Bounded: when
 * the agent does not drain (stopped, slow), the newest outcomes are dropped
 * and counted, so a flood of refused connections costs at most `capacity`
 * records of memory and the agent still learns how many it missed.
 */
import type { OutcomeDrain, TransportOutcome } from "./control-schema.ts";

export const OUTCOMES_MAX = 4096;

/** What is known of a stream before it ends. */
export type OutcomeStart = Omit<TransportOutcome, "result" | "bytes" | "end">;

export class OutcomeBuffer {
  private held: TransportOutcome[] = [];
  private lost = 0;

  readonly capacity: number;
  private readonly now: () => number;

  constructor(capacity = OUTCOMES_MAX, now: () => number = Date.now) {
    this.capacity = capacity;
    this.now = now;
  }

  /** Records an outcome that ended now. */
  record(outcome: Omit<TransportOutcome, "end">): void {
    if (this.held.length >= this.capacity) {
      this.lost++;
      return;
    }
    this.held.push({ ...outcome, end: Math.max(outcome.start, this.now()) });
  }

  /** Everything held, oldest first, and the count dropped since the last drain; both start over. */
  drain(): OutcomeDrain {
    const drained = { events: this.held, lost: this.lost };
    this.held = [];
    this.lost = 0;
    return drained;
  }
}
