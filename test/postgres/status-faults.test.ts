// Review of the status group commit during Postgres faults, on a throwaway cluster of this file's own
// (scripts/throwaway-postgres.sh): it is stopped, a backend frozen and a row locked under the API. Every report must be
// answered with a problem (never left hanging), no node's fault may hold another node's report, the
// process must survive connections cut under it, and reports must be stored again once Postgres is back.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import type { LightMyRequestResponse } from "fastify";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { openDatabase } from "../../api/src/db/client.ts";
import { bearer, skipBackend, startApi } from "../support/api.ts";
import { registeredNode } from "../support/nodes.ts";
import { until } from "../support/until.ts";

type Registered = Awaited<ReturnType<typeof registeredNode>>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PG_BIN = "/usr/lib/postgresql/15/bin";
// Above twice the status batch's lock timeout (mesh/nodes.ts): a batch held by a locked row is written again item by item within it.
const POOL_WAIT_MS = 5_000;

describe.skipIf(skipBackend("postgres"))("status reports during Postgres faults", () => {
  let dir: string;
  let url: string;
  let app: WeftApp;
  let nodes: Registered[];
  /** Errors nobody caught while a test ran: a pg client's 'error' with no listener ends a real server. */
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);

  const asOwner = (cmd: string, args: string[]) =>
    userInfo().uid === 0 ? execFileSync("runuser", ["-u", "postgres", "--", cmd, ...args], { stdio: "pipe" }) : execFileSync(cmd, args, { stdio: "pipe" });
  const pgCtl = (...args: string[]) => asOwner(`${PG_BIN}/pg_ctl`, ["-D", join(dir, "data"), "-w", "-t", "60", ...args]);
  const start = () =>
    pgCtl("-l", join(dir, "server.log"), "-o", `-p ${new URL(url).port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c max_connections=300`, "start");
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // a backend that ended meanwhile
      }
    }
  };

  const report = (n: Registered, wave = 0) =>
    app.inject({ method: "PUT", url: `/v1/nodes/${n.name}/status`, headers: bearer(n.credential), payload: { appliedRevision: 1, hash: "h", counters: { wave }, errors: [] } });
  /** A 5xx problem document, the kind an agent retries. */
  const expectUnavailable = (res: LightMyRequestResponse) => {
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(500);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  };
  /** The answer, or "hung" when none came within `ms` (a liveness bound, far above any answer's time). */
  const within = <T>(ms: number, p: Promise<T>) => Promise.race([p, sleep(ms).then(() => "hung" as const)]);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-status-faults-"));
    const out = execFileSync("bash", ["scripts/throwaway-postgres.sh", "start", dir]).toString();
    url = /DATABASE_URL=(\S+)/.exec(out)![1]!;
    app = await startApi("postgres", { databaseUrl: url, dbPoolWaitMs: POOL_WAIT_MS });
    nodes = await Promise.all(Array.from({ length: 12 }, () => registeredNode(app)));
    for (const n of nodes) expect((await report(n)).statusCode).toBe(200);
    process.on("uncaughtException", onUncaught);
  }, 120_000);
  beforeEach(() => {
    uncaught.length = 0;
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    await app?.close().catch(() => {});
    if (dir) {
      execFileSync("bash", ["scripts/throwaway-postgres.sh", "stop", dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("a pooled connection cut between a transaction's statements fails that transaction, not the process", async () => {
    const database = openDatabase({ databaseUrl: url });
    const observer = new pg.Client({ connectionString: url });
    await observer.connect();
    try {
      const tx = database.db.transaction(async (tx) => {
        const [{ pid }] = ((await tx.execute(sql`SELECT pg_backend_pid() AS pid`)) as unknown as { rows: [{ pid: number }] }).rows;
        await observer.query("SELECT pg_terminate_backend($1)", [pid]);
        // The server's FATAL arrives while no statement of this transaction is running.
        await sleep(300);
        await tx.execute(sql`SELECT 1`);
      });
      await expect(tx).rejects.toThrow();
      expect(uncaught).toEqual([]);
      // The pool replaces the connection.
      expect(((await database.db.execute(sql`SELECT 1 AS one`)) as unknown as { rows: unknown[] }).rows).toEqual([{ one: 1 }]);
    } finally {
      await observer.end();
      await database.close();
    }
  });

  it("a row lock nobody releases on one node's row holds no other node's report; that node's own is refused, not left hanging", async () => {
    const [locked, ...others] = nodes as [Registered, ...Registered[]];
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      // An operator's psql left in a transaction, or a write stuck behind something: the row stays locked.
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM nodes WHERE name = $1 FOR UPDATE", [locked.name]);
      const theirs = report(locked, 1);
      await sleep(20);
      const answers = await within(20_000, Promise.all(others.map((n) => report(n, 1))));
      expect(answers).not.toBe("hung");
      for (const res of answers as LightMyRequestResponse[]) expect(res.statusCode, res.body).toBe(200);
      const own = await within(20_000, theirs);
      expect(own).not.toBe("hung");
      expectUnavailable(own as LightMyRequestResponse);
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      await holder.end();
    }
    expect((await report(locked, 2)).statusCode).toBe(200);
    expect(uncaught).toEqual([]);
  }, 120_000);

  it("a batch whose connection stops answering holds no report queued behind it past the pool's wait; the queue goes on once it answers", async () => {
    const [first, ...others] = nodes as [Registered, ...Registered[]];
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    let frozen: number | undefined;
    try {
      // The batch carrying first's report waits on a lock; its backend is then frozen (a half-open connection,
      // a hung host: nothing answers and nothing errs), and the lock let go so nothing else waits on it.
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM nodes WHERE name = $1 FOR UPDATE", [first.name]);
      const stuck = report(first, 3);
      frozen = await until("the batch waiting on the lock", 5_000, async () => {
        const { rows } = await holder.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'update "nodes"%'`);
        return rows[0]?.pid;
      });
      signal([frozen], "SIGSTOP");
      await holder.query("ROLLBACK");
      const answers = await within(10 * POOL_WAIT_MS, Promise.all(others.map((n) => report(n, 3))));
      expect(answers).not.toBe("hung");
      for (const res of answers as LightMyRequestResponse[]) {
        expectUnavailable(res);
        expect(res.statusCode).toBe(503);
        expect(res.headers["retry-after"]).toBe("1");
      }
      expectUnavailable((await within(10 * POOL_WAIT_MS, stuck)) as LightMyRequestResponse);
    } finally {
      if (frozen !== undefined) signal([frozen], "SIGCONT");
      await holder.end();
    }
    await until("reports stored again", 20_000, async () => ((await Promise.all(nodes.map((n) => report(n, 4)))).every((r) => r.statusCode === 200) ? true : undefined));
    expect(uncaught).toEqual([]);
  }, 120_000);

  it("Postgres stopped while reports are in flight: each is answered 5xx, none hangs, the process lives; reports are stored once it is back", async () => {
    let stopped = false;
    let down = 0;
    const log: { status: number; problem: boolean; afterStop: boolean }[] = [];
    const loops = nodes.map(async (n) => {
      for (let i = 0; !stopped; i++) {
        const afterStop = down > 0;
        const res = await report(n, 100 + i);
        log.push({ status: res.statusCode, problem: /^application\/problem\+json/.test(String(res.headers["content-type"])), afterStop });
      }
    });
    await until("reports flowing", 10_000, () => (log.filter((l) => l.status === 200).length > 50 ? true : undefined));
    pgCtl("-m", "fast", "stop");
    down = Date.now();
    // Every loop gets answers while the server is down: nothing waits for it to return.
    await until("answers while Postgres is down", 20_000, () => (log.filter((l) => l.afterStop).length >= nodes.length * 3 ? true : undefined));
    const during = log.filter((l) => l.afterStop);
    expect(during.filter((l) => l.status < 500 || !l.problem)).toEqual([]);
    start();
    await until("reports stored again", 30_000, () => (log.slice(-nodes.length).every((l) => l.status === 200) ? true : undefined));
    stopped = true;
    await Promise.all(loops);
    expect(uncaught).toEqual([]);
  }, 120_000);
});
