import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../api/src/app.ts";
import { openDatabase, type Database } from "../../api/src/db/client.ts";
import { BACKENDS, backendDatabase, freshPostgres, operator, skipBackend, testConfig } from "../support/api.ts";

async function applied(database: Database): Promise<number> {
  const res = (await database.db.execute(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`)) as unknown as {
    rows: { n: number }[];
  };
  return res.rows[0]!.n;
}

describe.each(BACKENDS)("migrations on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API started twice in process on ${backendDatabase(backend)}`, () => {
    it("makes a second start on the same database a no-op", async () => {
      const config = testConfig(backend);
      const database = openDatabase(config);
      try {
        const first = await buildApp(config, { database });
        const migrations = await applied(database);
        expect(migrations).toBeGreaterThanOrEqual(2);
        const created = await first.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name: `mig-${randomBytes(4).toString("hex")}` } });
        expect(created.statusCode).toBe(201);
        await first.close();
        const second = await buildApp(config, { database });
        expect(await applied(database)).toBe(migrations);
        // The data written before survives the second start.
        expect((await second.inject({ url: `/v1/tenants/${created.json().name}`, headers: operator })).statusCode).toBe(200);
        await second.close();
      } finally {
        await database.close();
      }
    });
  });
});

describe.skipIf(skipBackend("postgres"))("two processes starting at once on a fresh Postgres", () => {
  it("both come up, and the migrations are applied once", async () => {
    const fresh = await freshPostgres("weft_mig");
    try {
      const config = testConfig("postgres", { databaseUrl: fresh.url });
      const apps = await Promise.all([buildApp(config), buildApp(config)]);
      for (const app of apps) expect((await app.inject("/readyz")).statusCode).toBe(200);
      expect(await applied(apps[0]!.weft.database)).toBe(await applied(apps[1]!.weft.database));
      const journal = (await import("../../migrations/meta/_journal.json", { with: { type: "json" } })).default as { entries: unknown[] };
      expect(await applied(apps[0]!.weft.database)).toBe(journal.entries.length);
      // Both replicas share one signing key: a token minted by one is good on the other.
      const [one, two] = apps as [Awaited<ReturnType<typeof buildApp>>, Awaited<ReturnType<typeof buildApp>>];
      await one.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name: "shared" } });
      const { token } = (
        await one.inject({ method: "POST", url: "/v1/tenants/shared/tokens", headers: operator, payload: { name: "t", scopes: ["read"] } })
      ).json();
      expect((await two.inject({ url: "/v1/tenants/shared", headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200);
      await Promise.all(apps.map((app) => app.close()));
    } finally {
      await fresh.drop();
    }
  });
});
