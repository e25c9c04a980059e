// Issue 20 item 3: the hot queries use an index on a seeded database
// (bench/postgres-plans at a smaller scale: 2,000 nodes x 20,000 workloads),
// read from EXPLAIN (FORMAT JSON) as the role and tenant each runs under.
// `npm run bench:pg-plans` prints the same plans, analyzed, at 10,000 x 100,000.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { explain, hotQueries, seqScansOnBigTables, type HotQuery } from "../../bench/postgres-plans/hot-queries.ts";
import { seed, TEST_SCALE } from "../../bench/postgres-plans/seed.ts";
import { openDatabase } from "../../api/src/db/client.ts";
import { LOG_PRUNER_ROLE } from "../../api/src/db/schema.ts";
import { freshPostgres, skipBackend } from "../support/api.ts";

describe.skipIf(skipBackend("postgres"))(`hot queries on a seeded Postgres (${TEST_SCALE.nodes} nodes, ${TEST_SCALE.workloads} workloads)`, () => {
  let own: Awaited<ReturnType<typeof freshPostgres>> | undefined;
  let client: pg.Client;
  let queries: HotQuery[] = [];

  beforeAll(async () => {
    own = await freshPostgres("query_plans");
    const database = openDatabase({ databaseUrl: own.url });
    try {
      await database.migrate();
    } finally {
      await database.close();
    }
    client = new pg.Client({ connectionString: own.url });
    await client.connect();
    queries = hotQueries(client, await seed(client, TEST_SCALE));
  }, 120_000);
  afterAll(async () => {
    await client?.end();
    await own?.drop();
  });

  it("reads no big table with a Seq Scan in any hot query", async () => {
    expect(queries.length).toBeGreaterThanOrEqual(12);
    const found: Record<string, string[]> = {};
    for (const q of queries) {
      const scans = seqScansOnBigTables(await explain(client, q, "FORMAT JSON"));
      if (scans.length > 0) found[q.name] = scans;
    }
    expect(found).toEqual({});
  });

  it("flags a query that has no index to use", async () => {
    // The pruner's role sees every tenant's rows: no tenant filter lends the query an index.
    const unindexed: HotQuery = { name: "audit by actor", where: "nowhere", role: LOG_PRUNER_ROLE, tenantId: null, text: "SELECT * FROM audit_log WHERE actor = $1", params: ["x"] };
    expect(seqScansOnBigTables(await explain(client, unindexed, "FORMAT JSON"))).toEqual(["audit_log"]);
  });
});
