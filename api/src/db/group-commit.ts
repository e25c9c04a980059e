import { DEFAULT_POOL_WAIT_MS } from "./client.ts";

/**
 * Group commit: items submitted while a batch is being written wait for the
 * next batch, so one transaction carries them all, and each caller still
 * waits for its own item to commit. A transaction's fixed cost (begin, the
 * role, commit: four round trips, each a socket write and a wake-up) is paid
 * once per batch instead of once per item, which is what lets one replica
 * take thousands of agents' status reports or SVID records a second.
 *
 * One bad item must not fail the rest: a batch that the database refused
 * (a statement's error, with its SQLSTATE) is written again item by item,
 * and only the bad item's caller sees its error. A batch that failed for
 * want of the database (no connection, a pool timeout, a server shutting
 * down) fails as a whole: item by item would wait out each failure in turn,
 * while the queue behind grew; so does the rest of a batch being written
 * item by item once one item fails so.
 *
 * No caller waits longer than maxWaitMs (WEFT_DB_POOL_WAIT, as a request
 * waiting for a pooled connection does): a write that does not return (its
 * connection's server stopped answering, a lock waited for without a
 * timeout) would otherwise hold every caller queued behind it without end,
 * and the queue would grow for as long. A caller told so whose item was
 * already being written may still see it committed; one still queued is
 * dropped.
 */
export class GroupCommit<I, R> {
  #queue: { item: I; settled: boolean; settle(err: unknown, result?: R): void }[] = [];
  #draining = false;

  /**
   * `writeBatch` commits its items in one transaction and answers one
   * result per item, in their order.
   */
  constructor(
    private readonly writeBatch: (items: I[]) => Promise<R[]>,
    private readonly maxBatch = 256,
    private readonly maxWaitMs = DEFAULT_POOL_WAIT_MS,
  ) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const entry = {
        item,
        settled: false,
        settle(err: unknown, result?: R) {
          if (entry.settled) return;
          entry.settled = true;
          clearTimeout(timer);
          if (err === undefined) resolve(result as R);
          else reject(err);
        },
      };
      const timer = setTimeout(() => entry.settle(new GroupCommitTimeout(this.maxWaitMs)), this.maxWaitMs);
      timer.unref();
      this.#queue.push(entry);
      if (!this.#draining) {
        this.#draining = true;
        // Start on the next turn of the event loop, not now: requests already
        // received get to reach the queue first and share the transaction.
        // (PGlite runs a whole transaction as one chain of microtasks, which
        // would otherwise starve them until it ends: batches of one.)
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.maxBatch).filter((p) => !p.settled);
        if (batch.length === 0) continue;
        try {
          const results = await this.writeBatch(batch.map((p) => p.item));
          batch.forEach((p, i) => p.settle(undefined, results[i]));
        } catch (err) {
          if (batch.length === 1 || !refusedByStatement(err)) for (const p of batch) p.settle(err ?? new Error("group commit failed"));
          else
            for (const [i, p] of batch.entries()) {
              if (p.settled) continue;
              try {
                const [result] = await this.writeBatch([p.item]);
                p.settle(undefined, result);
              } catch (e) {
                const failed = e ?? err;
                p.settle(failed);
                // The database went away meanwhile: the rest would each wait out the same failure.
                if (!refusedByStatement(failed)) {
                  for (const rest of batch.slice(i + 1)) rest.settle(failed);
                  break;
                }
              }
            }
        }
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.#draining = false;
    }
  }
}

/** A caller's item not committed within maxWaitMs: the database is stuck or the replica overloaded (a 503). */
export class GroupCommitTimeout extends Error {
  override name = "GroupCommitTimeout";
  constructor(ms: number) {
    super(`not committed within ${ms} ms`);
  }
}

/**
 * Whether the database refused a statement (an error with a SQLSTATE, from
 * Postgres or PGlite) rather than being out of reach: SQLSTATE classes 08
 * (connection), 53 (resources), 57 (operator intervention, a shutdown), 58
 * and XX (system, internal) say the database, not the item, failed.
 */
export function refusedByStatement(err: unknown): boolean {
  // drizzle wraps the driver's error in its own (DrizzleQueryError), with the driver's as the cause.
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && !["08", "53", "57", "58", "XX"].includes(code.slice(0, 2));
}
