/**
 * Retention of the change log (WEFT_CHANGE_LOG_RETENTION) and the audit log
 * (WEFT_AUDIT_RETENTION), pruned in bounded batches (pruning.ts) as the log
 * pruner role (migrations/0015).
 *
 * What the change log must keep. Its readers are each replica's follower,
 * which pulls the changes past the revision it applied last
 * (follower/follow.ts), and tenants reading GET /changes?since=. Agents'
 * ?since deltas come from the follower's in-memory history, not from the
 * log. A follower pulls on every change event, every request and every 5 s
 * while polls are held, so a live replica trails the head by one failed pull
 * at most; only a replica cut off from Postgres for longer than the retention
 * can be behind what the log still holds. The bound is therefore by age: the
 * horizon is the newest revision whose change is older than the retention,
 * never above it. The horizon is raised (change_log_horizon) before any row
 * at or below it is deleted, in a transaction of its own, so any snapshot
 * that misses pruned rows also sees the raised horizon: a follower whose
 * applied revision is below it can tell that it cannot catch up from the log
 * and reloads everything (follower/follow.ts pull).
 */
import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { batchDelete, DEFAULT_PRUNE_BATCH, deletedRows, deleteInBatches } from "./pruning.ts";
import { LOG_PRUNER_ROLE } from "./schema.ts";
import type { Tx } from "./transactions.ts";

export interface LogRetention {
  /** Unset: the change log is kept whole. */
  changeLogMs?: number | undefined;
  /** Unset: the audit log is kept whole. */
  auditMs?: number | undefined;
}

export interface LogPruneOptions {
  batch?: number;
  now?: number;
  /** Runs inside each batch's transaction after its DELETE, before it commits (tests hold a batch open with it). */
  inBatch?: () => Promise<void>;
}

export interface LogPruneResult {
  change_log: number;
  audit_log: number;
  /** The change log's horizon after this run (it holds every change after this revision); undefined without a change-log retention. */
  changeLogHorizon: number | undefined;
}

async function asLogPruner<T>(db: Db, body: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT set_config('role', ${LOG_PRUNER_ROLE}, true)`);
    return body(tx);
  });
}

const rowsOf = <T>(result: unknown): T[] => (result as { rows: T[] }).rows;

/** Deletes change-log rows at or below the horizon that `retentionMs` allows, after raising the horizon. */
async function pruneChangeLog(db: Db, retentionMs: number, opts: LogPruneOptions): Promise<{ deleted: number; horizon: number }> {
  const batch = opts.batch ?? DEFAULT_PRUNE_BATCH;
  const before = new Date((opts.now ?? Date.now()) - retentionMs).toISOString();
  const horizon = await asLogPruner(db, async (tx) => {
    const [newestOld] = rowsOf<{ revision: string }>(
      await tx.execute(sql`SELECT revision FROM change_log WHERE at < ${before}::timestamptz ORDER BY at DESC LIMIT 1`),
    );
    const [raised] = rowsOf<{ pruned_through: string }>(
      await tx.execute(sql`
        UPDATE change_log_horizon SET pruned_through = GREATEST(pruned_through, ${newestOld?.revision ?? 0}::bigint)
        WHERE id = 1 RETURNING pruned_through`),
    );
    return Number(raised?.pruned_through ?? 0);
  });
  if (horizon === 0) return { deleted: 0, horizon };
  const deleted = await deleteInBatches(
    () =>
      asLogPruner(db, async (tx) => {
        const n = deletedRows(
          await tx.execute(batchDelete("change_log", "id", sql`revision <= ${horizon}`, "revision", batch)),
        );
        await opts.inBatch?.();
        return n;
      }),
    batch,
  );
  return { deleted, horizon };
}

/**
 * Deletes audit rows older than `retentionMs`, oldest first: the order keeps
 * each batch on the index of `at` (bench/postgres-plans), where a bare LIMIT
 * lets the planner choose a scan of the table that reads every young row
 * once the old ones are gone.
 */
async function pruneAuditLog(db: Db, retentionMs: number, opts: LogPruneOptions): Promise<number> {
  const batch = opts.batch ?? DEFAULT_PRUNE_BATCH;
  const before = new Date((opts.now ?? Date.now()) - retentionMs).toISOString();
  // An SVID issuance's audit entry is its issuance record (schema.ts svidIssuances): the audit log is both tables.
  const auditTables = [
    { table: "audit_log", at: "at" },
    { table: "svid_issuances", at: "issued_at" },
  ] as const;
  let deleted = 0;
  for (const { table, at } of auditTables) {
    deleted += await deleteInBatches(
      () =>
        asLogPruner(db, async (tx) => {
          const n = deletedRows(
            await tx.execute(batchDelete(table, "id", sql`${sql.identifier(at)} < ${before}::timestamptz`, at, batch)),
          );
          await opts.inBatch?.();
          return n;
        }),
      batch,
    );
  }
  return deleted;
}

/** One retention run over both logs; a log without a retention is left whole. */
export async function pruneLogs(db: Db, retention: LogRetention, opts: LogPruneOptions = {}): Promise<LogPruneResult> {
  const change = retention.changeLogMs === undefined ? undefined : await pruneChangeLog(db, retention.changeLogMs, opts);
  const audit = retention.auditMs === undefined ? 0 : await pruneAuditLog(db, retention.auditMs, opts);
  return { change_log: change?.deleted ?? 0, audit_log: audit, changeLogHorizon: change?.horizon };
}
