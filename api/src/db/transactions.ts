import { eq, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { APP_ROLE, TENANT_SETTING, auditLog, changeLog, revisionCounter } from "./schema.ts";

export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export const CHANGES_CHANNEL = "weft_changes";

export interface Change {
  tenantId: number;
  kind: string;
  name: string;
  op: "upsert" | "delete";
}

/** What a write carries besides its rows: who asked, under which request, and whether to keep it. */
export interface WriteContext {
  actor: string;
  requestId: string;
  /** The caller's own x-request-id, when safe; recorded beside requestId. */
  clientRequestId?: string | null;
  dryRun: boolean;
  /**
   * Told, once the transaction ends (committed or not), how long it held the
   * revision lock: from the counter's row lock taken to commit or rollback,
   * every other writer's wait (weft_write_lock_seconds).
   */
  lockHeld?: ((seconds: number) => void) | undefined;
}

export interface WriteScope {
  tx: Tx;
  /** The global revision this write takes; rows it touches store it as their ETag. */
  revision: number;
  /** Binds row-level security to a tenant for the rest of the transaction. */
  setTenant(tenantId: number): Promise<void>;
  /** Appends to the change log and the audit log, and notifies every replica at commit. */
  record(change: Change, action: string): Promise<void>;
}

/** Thrown to roll back a dry run after everything, constraints included, has been checked. */
class DryRunRollback<T> extends Error {
  constructor(readonly result: T) {
    super("dry run");
  }
}

async function enterAppRole(tx: Tx, tenantId: number | null, lockTimeoutMs?: number): Promise<void> {
  // Row-level security binds only non-superuser, non-owner roles. set_config
  // on "role" is SET LOCAL ROLE, and lets the tenant (and a lock timeout) ride
  // in the same round trip: every request's transaction pays for this (PGlite
  // ~1 ms a statement).
  const settings = [sql`set_config('role', ${APP_ROLE}, true)`];
  if (tenantId !== null) settings.push(sql`set_config(${TENANT_SETTING}, ${String(tenantId)}, true)`);
  if (lockTimeoutMs !== undefined) settings.push(sql`set_config('lock_timeout', ${`${lockTimeoutMs}ms`}, true)`);
  await tx.execute(sql`SELECT ${sql.join(settings, sql`, `)}`);
}

async function setTenantOn(tx: Tx, tenantId: number): Promise<void> {
  await tx.execute(sql`SELECT set_config(${TENANT_SETTING}, ${String(tenantId)}, true)`);
}

/**
 * Runs one write: a transaction that takes the next global revision (its row
 * lock orders commits), lets `body` change rows, and appends every change to
 * the change log and the audit log. A dry run does all of it and rolls back.
 *
 * Why the revision is taken first and held to commit (issue 20 weighed a
 * sequence, or taking it last): the lock is what makes revisions commit in
 * order, so the follower (follower/follow.ts pull) can read the change log up
 * to the counter and never pass a revision still in flight; it is what lets a
 * write's capacity admission see everything committed before it and nothing
 * commit beside it (catchUp, then admitWrite: two writes that each fit, but
 * not together, are never both admitted; test/api/replica-revisions.test.ts);
 * and it orders the choice of pod CIDR blocks and the address checks. A
 * sequence would let revisions commit out of order, and the follower would
 * need a watermark of the revisions in flight, while admission would still
 * need a lock of its own; taking it last would run the body's checks
 * unordered and catch the compiler up after rows changed. So the lock stays,
 * and what runs under it is kept short: admission counts incrementally
 * (follower/admission.ts), catch-up reads nothing when the follower is
 * current, and record() is one statement.
 */
export async function write<T>(
  db: Db,
  ctx: WriteContext,
  tenantId: number | null,
  body: (scope: WriteScope) => Promise<T>,
): Promise<{ result: T; changes: Change[] }> {
  const changes: Change[] = [];
  let locked: number | undefined;
  try {
    const result = await db.transaction(async (tx) => {
      await enterAppRole(tx, tenantId);
      const [row] = await tx
        .update(revisionCounter)
        .set({ revision: sql`${revisionCounter.revision} + 1` })
        .where(eq(revisionCounter.id, 1))
        .returning({ revision: revisionCounter.revision });
      if (!row) throw new Error("revision_counter row is missing: migrations did not run");
      locked = performance.now();
      const revision = row.revision;
      const scope: WriteScope = {
        tx,
        revision,
        setTenant: (id) => setTenantOn(tx, id),
        async record(change, action) {
          changes.push(change);
          // One statement, not three: it runs under the revision lock, where every round trip is every writer's wait.
          await tx.execute(sql`WITH logged AS (
              INSERT INTO ${changeLog} (revision, tenant_id, kind, name, op)
              VALUES (${revision}, ${change.tenantId}, ${change.kind}, ${change.name}, ${change.op})
            ), audited AS (
              INSERT INTO ${auditLog} (tenant_id, actor, action, resource, request_id, client_request_id, revision)
              VALUES (${change.tenantId}, ${ctx.actor}, ${action}, ${`${change.kind}/${change.name}`}, ${ctx.requestId}, ${ctx.clientRequestId ?? null}, ${revision})
            )
            SELECT pg_notify(${CHANGES_CHANNEL}, ${JSON.stringify({ revision, ...change })})`);
        },
      };
      const value = await body(scope);
      if (ctx.dryRun) throw new DryRunRollback(value);
      return value;
    });
    return { result, changes };
  } catch (err) {
    if (err instanceof DryRunRollback) return { result: err.result as T, changes: [] };
    throw err;
  } finally {
    if (locked !== undefined) ctx.lockHeld?.((performance.now() - locked) / 1000);
  }
}

/**
 * A read under the app role, scoped to one tenant when given. lockTimeoutMs:
 * a row lock waited for longer fails the transaction (SQLSTATE 55P03).
 */
export async function read<T>(db: Db, tenantId: number | null, body: (tx: Tx) => Promise<T>, lockTimeoutMs?: number): Promise<T> {
  return db.transaction(async (tx) => {
    await enterAppRole(tx, tenantId, lockTimeoutMs);
    return body(tx);
  });
}
