/**
 * Retention (WEFT_FLOW_RETENTION): rows older than the retention are deleted
 * in batches of bounded size, each its own short transaction, so pruning a
 * day of flows never holds one long lock against the batches arriving.
 * Every replica prunes; SKIP LOCKED lets two replicas pruning at once take
 * different rows instead of waiting for each other.
 */
import { sql } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "../../db/client.ts";
import { asFlowWriter } from "./ingest.ts";

export const DEFAULT_PRUNE_BATCH = 1000;
/** Batches per table per run: a backlog larger than this is left to the next run. */
const MAX_BATCHES_PER_RUN = 200;

/** table, column of its age: the aggregates age by their interval's end, batch ids by their arrival. */
const TABLES = [
  { table: "flows", age: "time" },
  { table: "flow_aggregates", age: "end" },
  { table: "flow_batches", age: "received_at" },
] as const;

export interface PruneResult {
  flows: number;
  flow_aggregates: number;
  flow_batches: number;
}

/** Deletes rows older than `retentionMs` before `now`, `batch` at a time; answers how many per table. */
export async function pruneFlows(db: Db, retentionMs: number, opts: { batch?: number; now?: number } = {}): Promise<PruneResult> {
  const batch = opts.batch ?? DEFAULT_PRUNE_BATCH;
  const before = new Date((opts.now ?? Date.now()) - retentionMs);
  const result: PruneResult = { flows: 0, flow_aggregates: 0, flow_batches: 0 };
  for (const { table, age } of TABLES) {
    for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
      // ctid: flow_batches has no single-column key; one statement, one batch.
      const deleted = await asFlowWriter(db, (tx) =>
        tx.execute(sql`
          DELETE FROM ${sql.identifier(table)} WHERE ctid IN (
            SELECT ctid FROM ${sql.identifier(table)} WHERE ${sql.identifier(age)} < ${before.toISOString()}::timestamptz
            LIMIT ${batch} FOR UPDATE SKIP LOCKED)`),
      );
      const n = (deleted as unknown as { rowCount?: number; affectedRows?: number }).rowCount ?? (deleted as unknown as { affectedRows?: number }).affectedRows ?? 0;
      result[table] += n;
      if (n < batch) break;
    }
  }
  return result;
}

/** Prunes every `intervalMs` (unref'd timer); one run at a time. */
export class FlowPruner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly db: Db,
    private readonly retentionMs: number,
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs = 60_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = pruneFlows(this.db, this.retentionMs)
        .then((r) => {
          if (r.flows + r.flow_aggregates + r.flow_batches > 0) this.log.info({ pruned: r }, "old flows pruned");
        })
        .catch((err: unknown) => this.log.warn({ err }, "pruning flows failed; retrying at the next interval"))
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
