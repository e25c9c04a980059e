/**
 * Reads across every tenant as the read-only platform role (migrations/0008):
 * what the change-log follower and the cross-tenant checks of a write (address
 * and VIP clashes) need; everything else stays tenant-bound.
 */
import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { APP_ROLE, PLATFORM_ROLE } from "./schema.ts";
import type { Tx } from "./transactions.ts";

/**
 * Runs `fn` as the read-only platform role, then returns to the app role:
 * inside a write transaction, the rest of the write stays tenant-bound.
 */
export async function withPlatformRead<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
  // The read-only platform role sees every tenant's rows (migrations/0008);
  // back to the app role, tenant setting untouched, before the write goes on.
  await tx.execute(sql`SELECT set_config('role', ${PLATFORM_ROLE}, true)`);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    // An error may have aborted the transaction, which then takes no more
    // statements: the role dies with it, and the first error is the one to tell.
    await tx.execute(sql`SELECT set_config('role', ${APP_ROLE}, true)`).catch(() => undefined);
    throw err;
  }
  await tx.execute(sql`SELECT set_config('role', ${APP_ROLE}, true)`);
  return result;
}

/** A read transaction as the platform role over every tenant's rows, on one consistent snapshot. */
export async function platformRead<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(
    async (tx) => {
      await tx.execute(sql`SELECT set_config('role', ${PLATFORM_ROLE}, true)`);
      return fn(tx);
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}
