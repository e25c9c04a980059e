/**
 * Retention's mechanics, shared by every table that prunes (flows, the change
 * log, the audit log): old rows are deleted in batches of bounded size, each
 * its own short transaction, so pruning a backlog never holds one long lock
 * against the writes arriving. Every replica prunes; FOR UPDATE SKIP LOCKED in
 * each batch's row choice lets two replicas pruning at once take different
 * rows instead of waiting for each other.
 */
import { sql, type SQL } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";

export const DEFAULT_PRUNE_BATCH = 1000;
/** Batches per table per run: a backlog larger than this is left to the next run. */
export const MAX_BATCHES_PER_RUN = 200;

/** Rows a DELETE removed, as node-postgres (rowCount) or PGlite (affectedRows) reports it. */
export function deletedRows(result: unknown): number {
  const r = result as { rowCount?: number | null; affectedRows?: number };
  return r.rowCount ?? r.affectedRows ?? 0;
}

/**
 * One batch's DELETE: the first `batch` rows of `table` matching `where` in
 * `order`, by `key` (a unique column, or ctid), skipping rows another pruner
 * holds. `= ANY(ARRAY(...))` rather than `IN (...)`: the planner joins an IN
 * list against a scan of the whole table (bench/postgres-plans found it),
 * where an array of keys is looked up one by one (index or TID scan).
 */
export function batchDelete(table: string, key: string, where: SQL, order: string, batch: number): SQL {
  const [t, k, o] = [sql.identifier(table), sql.identifier(key), sql.identifier(order)];
  return sql`DELETE FROM ${t} WHERE ${k} = ANY(ARRAY(SELECT ${k} FROM ${t} WHERE ${where} ORDER BY ${o} LIMIT ${batch} FOR UPDATE SKIP LOCKED))`;
}

/**
 * Runs `deleteBatch` (one transaction deleting at most `batch` rows; answers
 * how many it deleted) until a batch comes back short or the run's budget is
 * spent; answers the rows deleted in all.
 */
export async function deleteInBatches(deleteBatch: () => Promise<number>, batch: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
    const n = await deleteBatch();
    total += n;
    if (n < batch) break;
  }
  return total;
}

/** Runs `prune` every `intervalMs` (unref'd timer), one run at a time, logging what it deleted by table. */
export class PeriodicPruner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly what: string,
    private readonly prune: () => Promise<Record<string, number>>,
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs = 60_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.prune()
        .then((pruned) => {
          if (Object.values(pruned).some((n) => n > 0)) this.log.info({ pruned }, `old ${this.what} pruned`);
        })
        .catch((err: unknown) => this.log.warn({ err }, `pruning ${this.what} failed; retrying at the next interval`))
        .finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
