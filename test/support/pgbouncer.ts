/**
 * PgBouncer (Debian's pgbouncer package) in front of a Postgres database, on
 * a free loopback port, for the suites that run the API through a pooler.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./api-process.ts";
import { commandUnavailableReason } from "./prerequisites.ts";
import { until } from "./until.ts";

export const PGBOUNCER = "/usr/sbin/pgbouncer";

export const pgbouncerUnavailableReason = (): string | null => commandUnavailableReason(PGBOUNCER, ["--version"], "apt-get install pgbouncer");

export interface PgBouncer {
  /** DATABASE_URL through the pooler. */
  url: string;
  /** Its admin console (SHOW POOLS, SHOW SERVERS). */
  show(what: "POOLS" | "SERVERS" | "CLIENTS"): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

/**
 * Transaction pooling with `poolSize` server connections per database and
 * user: each transaction (or statement outside one) gets whichever server
 * connection is free, so session state set by one client shows up in others.
 */
export async function startPgBouncer(upstreamUrl: string, opts: { poolSize: number }): Promise<PgBouncer> {
  const upstream = new URL(upstreamUrl);
  const db = upstream.pathname.slice(1);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "weft-pgbouncer-"));
  // PgBouncer refuses to run as root: as root it runs as postgres (throwaway-postgres.sh's user too).
  const asRoot = userInfo().uid === 0;
  writeFileSync(
    join(dir, "pgbouncer.ini"),
    [
      "[databases]",
      `${db} = host=${upstream.hostname} port=${upstream.port} dbname=${db} user=${decodeURIComponent(upstream.username)}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      "auth_type = any",
      "admin_users = pgbouncer",
      "pool_mode = transaction",
      `default_pool_size = ${opts.poolSize}`,
      "min_pool_size = 0",
      "reserve_pool_size = 0",
      "max_client_conn = 500",
      // Transaction mode's contract: nothing resets a server connection between clients.
      "server_reset_query =",
      `logfile = ${join(dir, "pgbouncer.log")}`,
      "",
    ].join("\n"),
  );
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString());
    chownSync(dir, uid, -1);
    chownSync(join(dir, "pgbouncer.ini"), uid, -1);
  }
  const args = [PGBOUNCER, join(dir, "pgbouncer.ini")];
  const child: ChildProcess = asRoot ? spawn("runuser", ["-u", "postgres", "--", ...args], { stdio: "ignore" }) : spawn(args[0]!, args.slice(1), { stdio: "ignore" });
  let exited = false;
  child.on("exit", () => (exited = true));
  const url = `postgres://${upstream.username}@127.0.0.1:${port}/${db}`;
  const adminUrl = `postgres://pgbouncer@127.0.0.1:${port}/pgbouncer`;
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      await until("pgbouncer to exit", 10_000, () => (exited ? true : undefined));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until("pgbouncer to accept connections", 10_000, async () => {
      if (exited) throw new Error("pgbouncer exited at start");
      const c = new pg.Client({ connectionString: url });
      try {
        await c.connect();
        await c.query("SELECT 1");
        return true;
      } catch {
        return undefined;
      } finally {
        await c.end().catch(() => {});
      }
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    async show(what) {
      // A query without parameters goes by the simple protocol, the only one the admin console speaks.
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        return (await c.query(`SHOW ${what}`)).rows as Record<string, unknown>[];
      } finally {
        await c.end().catch(() => {});
      }
    },
    stop,
  };
}
