import { chmodSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { lockDataDir } from "./data-dir-lock.ts";
import { NotificationListener, type NotificationHandler } from "./listener.ts";
import * as schema from "./schema.ts";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
export type { NotificationHandler } from "./listener.ts";

/**
 * WEFT_DB_POOL_MAX's default: connections one replica's query pool may open.
 * A replica is one JavaScript thread whose statements are short; writes
 * queue on the revision counter's row lock whatever the pool size, so more
 * connections buy reads in parallel at most. Ten per replica, plus its one
 * LISTEN connection, lets eight replicas share Postgres's default
 * max_connections of 100 with room for superusers and an operator's psql.
 */
export const DEFAULT_POOL_MAX = 10;
/**
 * WEFT_DB_POOL_WAIT's default: past it a request waiting for a pooled
 * connection fails as a 503 (http/error-handler.ts) instead of queueing without end
 * behind a stuck database.
 */
export const DEFAULT_POOL_WAIT_MS = 10_000;

/** How to reach Postgres (server.ts reads them from the environment: config.ts). */
export interface PostgresOptions {
  /** DATABASE_URL: every query; may point at PgBouncer in transaction mode. */
  url: string;
  /** WEFT_DATABASE_DIRECT_URL: the server itself, for LISTEN and the migration lock (session state); default url. */
  directUrl?: string | undefined;
  /** WEFT_DB_POOL_MAX: the query pool's size (default DEFAULT_POOL_MAX). */
  poolMax?: number | undefined;
  /** WEFT_DB_POOL_WAIT: how long a query waits for a pooled connection (default DEFAULT_POOL_WAIT_MS). */
  poolWaitMs?: number | undefined;
}

/** The one storage handle the app holds: drizzle plus the bits drizzle has no words for. */
export interface Database {
  readonly db: Db;
  readonly kind: "pglite" | "postgres";
  /** Applies pending migrations; safe to run from several processes at once. */
  migrate(): Promise<void>;
  /** Subscribes to a NOTIFY channel; resolves to an unsubscribe function. */
  listen(channel: string, handler: NotificationHandler): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export const MIGRATIONS_FOLDER = new URL("../../../migrations", import.meta.url).pathname;
/** Any fixed 64-bit key; it only has to be the same in every Weft process. */
const MIGRATION_LOCK_KEY = 0x77656674; // "weft"

/**
 * The embedded database's files are every tenant's data and every sealed
 * key: no one but the owner may read them. The directory (and any parent it
 * creates, such as .weft/) is made 0700; one left readable by an older
 * version, a restore or a copy is tightened, files to 0600 and directories
 * to 0700. server.ts sets the umask so that files created later are too.
 */
export function privateDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  tighten(dataDir);
}

function tighten(path: string): void {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) return;
  if (stat.mode & 0o077) chmodSync(path, stat.mode & 0o700);
  if (stat.isDirectory()) for (const name of readdirSync(path)) tighten(join(path, name));
}

function openPglite(dataDir: string | undefined): Database {
  if (dataDir) privateDataDir(dataDir);
  // Before PGlite touches a file: two processes on one directory would corrupt it.
  const lock = dataDir ? lockDataDir(dataDir) : undefined;
  let client: PGlite;
  try {
    client = new PGlite(dataDir);
  } catch (err) {
    lock?.release();
    throw err;
  }
  return pgliteDatabase(client, dataDir, lock);
}

/**
 * Wraps an open PGlite client. Exported for an in-memory client started some
 * other way: the test suites start theirs from a dump of a migrated one
 * (PGlite's initdb costs seconds, a dump's load one).
 */
export function pgliteDatabase(client: PGlite, dataDir?: string, lock?: { release(): void }): Database {
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  return {
    db,
    kind: "pglite",
    // One process owns a PGlite directory, so there is nobody to race.
    migrate: () => migratePglite(db as never, { migrationsFolder: MIGRATIONS_FOLDER }),
    async listen(channel, handler) {
      const unsubscribe = await client.listen(channel, handler);
      return async () => unsubscribe();
    },
    async close() {
      try {
        await client.close();
        // Files PGlite wrote while open (without server.ts's umask: tests, embedders) get the same treatment.
        if (dataDir) tighten(dataDir);
      } finally {
        lock?.release();
      }
    },
  };
}

/**
 * Queries go through the pool one statement or one transaction at a time and
 * keep no session state (no session SET, no named prepared statement, no
 * session advisory lock), so DATABASE_URL may be PgBouncer in transaction
 * mode. What needs a session of its own (LISTEN, the migration lock) takes a
 * direct connection.
 */
function openPostgres(opts: PostgresOptions): Database {
  const directUrl = opts.directUrl ?? opts.url;
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolMax ?? DEFAULT_POOL_MAX,
    connectionTimeoutMillis: opts.poolWaitMs ?? DEFAULT_POOL_WAIT_MS,
    idleTimeoutMillis: 30_000,
  });
  // A dropped idle connection must not crash the process; the pool replaces it.
  pool.on("error", () => {});
  // Nor one dropped while checked out (a transaction between its statements, when Postgres restarts or a
  // backend is terminated): the pool listens to idle clients only, and an 'error' nobody listens to ends
  // the process. The transaction's next statement fails instead, and the pool drops the client on release.
  pool.on("connect", (client) => client.on("error", () => {}));
  const db = drizzlePg(pool, { schema }) as unknown as Db;
  const listener = new NotificationListener(directUrl);
  return {
    db,
    kind: "postgres",
    async migrate() {
      const client = new pg.Client({ connectionString: directUrl });
      await client.connect();
      try {
        // Session-level lock on this one connection: a second process starting
        // at the same moment waits here, then finds nothing left to apply.
        await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
        await migratePg(drizzlePg(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
      } finally {
        // Ending the session releases the lock even if the unlock fails.
        await client.end().catch(() => {});
      }
    },
    listen: (channel, handler) => listener.listen(channel, handler),
    async close() {
      await listener.close();
      await pool.end();
    },
  };
}

/** Real Postgres when a URL is given, else PGlite in dataDir (in memory when dataDir is undefined). */
export function openDatabase(opts: {
  databaseUrl?: string | undefined;
  databaseDirectUrl?: string | undefined;
  dbPoolMax?: number | undefined;
  dbPoolWaitMs?: number | undefined;
  dataDir?: string | undefined;
}): Database {
  return opts.databaseUrl
    ? openPostgres({ url: opts.databaseUrl, directUrl: opts.databaseDirectUrl, poolMax: opts.dbPoolMax, poolWaitMs: opts.dbPoolWaitMs })
    : openPglite(opts.dataDir);
}
