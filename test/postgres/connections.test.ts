// Issue 20 item 3: each replica's connections to Postgres. The query pool
// opens at most WEFT_DB_POOL_MAX connections; every LISTEN channel shares
// one direct connection, which comes back by itself when it is cut.
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../../api/src/db/client.ts";
import { bearer, freshPostgres, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { until } from "../support/until.ts";

describe.skipIf(skipBackend("postgres"))("a replica's connections to Postgres", () => {
  let own: Awaited<ReturnType<typeof freshPostgres>> | undefined;
  let database: Database;
  let observer: pg.Client;
  const POOL_MAX = 3;
  /** Backends connected to this suite's database, other than the observer. */
  const backends = async () =>
    (
      await observer.query<{ query: string }>(
        `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      )
    ).rows;

  beforeAll(async () => {
    own = await freshPostgres("connections");
    database = openDatabase({ databaseUrl: own.url, dbPoolMax: POOL_MAX });
    await database.migrate();
    observer = new pg.Client({ connectionString: own.url });
    await observer.connect();
  });
  afterAll(async () => {
    await database?.close();
    await observer?.end();
    await own?.drop();
  });

  it("opens no more query connections than WEFT_DB_POOL_MAX however many queries wait", async () => {
    let peak = 0;
    const sampling = (async () => {
      for (let i = 0; i < 20; i++) {
        peak = Math.max(peak, (await backends()).length);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    await Promise.all(Array.from({ length: 12 }, () => database.db.execute(sql`SELECT pg_sleep(0.1)`)));
    await sampling;
    expect(peak).toBe(POOL_MAX);
  });

  it("carries every channel on one connection, and listens again after that connection is cut", async () => {
    const heard: string[] = [];
    const offA = await database.listen("weft_test_a", (p) => heard.push(`a:${p}`));
    const offB = await database.listen("weft_test_b", (p) => heard.push(`b:${p}`));
    const listening = (await backends()).filter((b) => /^LISTEN/i.test(b.query));
    expect(listening).toHaveLength(1);

    await observer.query(`SELECT pg_notify('weft_test_a', '1'), pg_notify('weft_test_b', '2')`);
    await until("both notifications", 5000, () => (heard.length === 2 ? true : undefined));
    expect(heard.sort()).toEqual(["a:1", "b:2"]);

    // Cut it, as a restarting server or a network fault would.
    const { rows } = await observer.query(
      `SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`,
    );
    expect(rows.map((r) => r.cut)).toEqual([true]);
    // Notifications sent while it was away are lost; once back, it hears every channel again.
    await until("notifications after the reconnect", 10_000, async () => {
      await observer.query(`SELECT pg_notify('weft_test_a', 'again'), pg_notify('weft_test_b', 'again')`);
      await new Promise((r) => setTimeout(r, 100));
      return heard.includes("a:again") && heard.includes("b:again") ? true : undefined;
    });

    // Unsubscribing one channel leaves the other.
    await offA();
    heard.length = 0;
    await observer.query(`SELECT pg_notify('weft_test_a', '3'), pg_notify('weft_test_b', '4')`);
    await until("the remaining channel", 5000, () => (heard.includes("b:4") ? true : undefined));
    expect(heard).not.toContain("a:3");
    await offB();
  }, 30_000);

  it("answers 503 problem+json with Retry-After when no pooled connection frees up within WEFT_DB_POOL_WAIT, and serves again once one does", async () => {
    const app = await startApi("postgres", { databaseUrl: own!.url, dbPoolMax: 1, dbPoolWaitMs: 300 });
    try {
      const t = await tenantWithToken(app);
      const list = () => app.inject({ url: `/v1/tenants/${t.tenant}/identities`, headers: bearer(t.token) });
      // The pool's one connection held by a slow statement, as a stuck database would hold it.
      // drizzle's queries are lazy thenables: Promise.resolve starts this one now.
      const holding = Promise.resolve(app.weft.db.execute(sql`SELECT pg_sleep(2)`));
      await until("the slow statement to hold the connection", 5000, async () =>
        (await backends()).some((b) => b.query.includes("pg_sleep(2)")) ? true : undefined,
      );
      const busy = await list();
      expect(busy.statusCode, busy.body).toBe(503);
      expect(busy.headers["content-type"]).toMatch(/application\/problem\+json/);
      expect(busy.headers["retry-after"]).toBe("1");
      expect(busy.json().detail).toContain("busy");
      await holding;
      expect((await list()).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  }, 30_000);
});
