/**
 * bench/scale's Postgres: a throwaway cluster (as scripts/throwaway-postgres.sh
 * makes, plus pg_stat_statements preloaded so statements can be counted), or
 * the server DATABASE_URL names; and the questions the bench asks it.
 */
import { execFile } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../../test/support/api-process.ts";

const run = promisify(execFile);
const BIN = "/usr/lib/postgresql/15/bin";

export interface Throwaway {
  url: string;
  /** The postmaster's pid, for the janitor should the bench die before stop(). */
  pid: number;
  stop(): Promise<void>;
}

/** Postgres refuses to run as root: as root the cluster belongs to the 'postgres' system user. */
const asOwner = (argv: string[]) => (process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", ...argv]] : [argv[0]!, argv.slice(1)]) as [string, string[]];

export async function startThrowawayPostgres(dir: string): Promise<Throwaway> {
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) {
    const { uid, gid } = await run("id", ["-u", "postgres"]).then(async (u) => ({ uid: Number(u.stdout), gid: Number((await run("id", ["-g", "postgres"])).stdout) }));
    chownSync(dir, uid, gid);
    // mkdtemp makes 0700 folders; the postgres user must be able to walk in.
    chmodSync(dirname(dir), 0o711);
  }
  await run(...asOwner([`${BIN}/initdb`, "-D", `${dir}/data`, "-U", "weft", "--auth=trust", "--no-sync", "-E", "UTF8"]));
  const port = await freePort();
  const options = [
    `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir}`,
    "-c fsync=off -c max_connections=300",
    "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
  ].join(" ");
  const stop = async () => {
    await run(...asOwner([`${BIN}/pg_ctl`, "-D", `${dir}/data`, "-m", "fast", "-w", "stop"])).catch(() => undefined);
  };
  try {
    await run(...asOwner([`${BIN}/pg_ctl`, "-D", `${dir}/data`, "-l", `${dir}/server.log`, "-w", "-t", "60", "-o", options, "start"]));
  } catch (err) {
    let log = "";
    try {
      log = readFileSync(`${dir}/server.log`, "utf8");
    } catch {
      // no log yet
    }
    throw new Error(`failed to start Postgres: ${(err as Error).message}\n${log}`);
  }
  const pid = Number(readFileSync(`${dir}/data/postmaster.pid`, "utf8").split("\n")[0]);
  return { url: `postgres://weft@127.0.0.1:${port}/postgres`, pid, stop };
}

/** The same server as `url`, with an application_name that tells one replica's connections from another's. */
export function urlNamed(url: string, applicationName: string): string {
  const u = new URL(url);
  u.searchParams.set("application_name", applicationName);
  return u.toString();
}

export class Observer {
  private constructor(
    private readonly client: pg.Client,
    /** Whether pg_stat_statements is loaded (a given DATABASE_URL may not preload it). */
    readonly statements: boolean,
  ) {}

  static async connect(url: string): Promise<Observer> {
    const client = new pg.Client({ connectionString: urlNamed(url, "weft-bench-scale") });
    await client.connect();
    let statements = true;
    try {
      await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      await client.query("SELECT pg_stat_statements_reset()");
    } catch {
      statements = false;
    }
    return new Observer(client, statements);
  }

  async connectionsOf(applicationName: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", [applicationName]);
    return Number(rows[0]!.n);
  }

  async resetStatements(): Promise<void> {
    if (this.statements) await this.client.query("SELECT pg_stat_statements_reset()");
  }

  /** Statements run since the last reset by anyone but this observer, most called first. */
  async statementsSinceReset(): Promise<{ calls: number; top: { calls: number; query: string }[] }> {
    if (!this.statements) return { calls: Number.NaN, top: [] };
    // This observer's own statements name the pg_stat views; the API's never do.
    const { rows } = await this.client.query<{ calls: string; query: string }>(
      "SELECT calls, query FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' ORDER BY calls DESC",
    );
    return { calls: rows.reduce((sum, r) => sum + Number(r.calls), 0), top: rows.slice(0, 5).map((r) => ({ calls: Number(r.calls), query: r.query })) };
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}
