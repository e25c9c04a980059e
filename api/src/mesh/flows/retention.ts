/**
 * Retention (WEFT_FLOW_RETENTION): flows, aggregates and batch ids older than
 * the retention are deleted in bounded batches (db/pruning.ts) as the flow
 * writer role.
 */
import { sql } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "../../db/client.ts";
import { batchDelete, DEFAULT_PRUNE_BATCH, deletedRows, deleteInBatches, PeriodicPruner } from "../../db/pruning.ts";
import { asFlowWriter } from "./ingest.ts";

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
    // ctid: flow_batches has no single-column key; oldest first, on the index of its age.
    const where = sql`${sql.identifier(age)} < ${before.toISOString()}::timestamptz`;
    result[table] = await deleteInBatches(async () => deletedRows(await asFlowWriter(db, (tx) => tx.execute(batchDelete(table, "ctid", where, age, batch)))), batch);
  }
  return result;
}

/** Prunes flows every `intervalMs`. */
export const flowPruner = (db: Db, retentionMs: number, log: FastifyBaseLogger, intervalMs?: number): PeriodicPruner =>
  new PeriodicPruner("flows", async () => ({ ...(await pruneFlows(db, retentionMs)) }), log, intervalMs);
