/**
 * npm run bench:pg-plans: seeds a database of its own on the Postgres at
 * DATABASE_URL (10,000 nodes x 100,000 workloads; WEFT_PG_PLANS_SCALE=test
 * for the test's 2,000 x 20,000), prints EXPLAIN (ANALYZE, BUFFERS) of each
 * hot query as the role and tenant it runs under, flags every Seq Scan on a
 * big table, and drops the database. Exits 1 when anything is flagged.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { openDatabase } from "../../api/src/db/client.ts";
import { explain, hotQueries, seqScansOnBigTables } from "./hot-queries.ts";
import { FULL_SCALE, seed, TEST_SCALE } from "./seed.ts";

const url = process.env.DATABASE_URL;
if (!url) {
  console.error("DATABASE_URL must name a Postgres server this run may create a database on (scripts/throwaway-postgres.sh start DIR)");
  process.exit(2);
}
const scale = process.env.WEFT_PG_PLANS_SCALE === "test" ? TEST_SCALE : FULL_SCALE;

const admin = new pg.Client({ connectionString: url });
await admin.connect();
const name = `pg_plans_${randomBytes(4).toString("hex")}`;
await admin.query(`CREATE DATABASE ${name}`);
const own = new URL(url);
own.pathname = `/${name}`;
let flagged = 0;
try {
  const database = openDatabase({ databaseUrl: own.toString() });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
  const client = new pg.Client({ connectionString: own.toString() });
  await client.connect();
  try {
    const started = performance.now();
    const keys = await seed(client, scale);
    const { rows } = await client.query(
      `SELECT relname, n_live_tup::int AS n FROM pg_stat_user_tables WHERE n_live_tup > 1000 ORDER BY n_live_tup DESC`,
    );
    console.log(`seeded in ${((performance.now() - started) / 1000).toFixed(1)} s: ${rows.map((r) => `${r.relname} ${r.n}`).join(", ")}\n`);
    for (const q of hotQueries(client, keys)) {
      const scans = seqScansOnBigTables(await explain(client, q, "FORMAT JSON"));
      flagged += scans.length;
      console.log(`== ${q.name} (${q.where}; as ${q.role}${q.tenantId === null ? "" : `, tenant ${q.tenantId}`})${scans.length ? `  << SEQ SCAN on ${scans.join(", ")}` : ""}`);
      console.log(await explain(client, q, "ANALYZE, BUFFERS"));
      console.log();
    }
  } finally {
    await client.end();
  }
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
console.log(flagged === 0 ? "no Seq Scan on a big table" : `${flagged} Seq Scan(s) on big tables: see << above`);
process.exit(flagged === 0 ? 0 : 1);
