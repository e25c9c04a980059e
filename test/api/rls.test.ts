import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { APP_ROLE, TENANT_SETTING } from "../../api/src/db/schema.ts";
import { BACKENDS, backendDatabase, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

describe.each(BACKENDS)("row-level security on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: number;
    let b: number;
    beforeAll(async () => {
      app = await startApi(backend);
      a = (await app.weft.directory.byName((await tenantWithToken(app)).tenant))!.id;
      b = (await app.weft.directory.byName((await tenantWithToken(app)).tenant))!.id;
    });
    afterAll(async () => app?.close());

    /** Runs `query` as the app role in a transaction that always rolls back, with the tenant setting if given. */
    async function asApp(tenantId: number | null, query: ReturnType<typeof sql>): Promise<Record<string, unknown>[]> {
      let rows: Record<string, unknown>[] = [];
      await app.weft.db
        .transaction(async (tx) => {
          await tx.execute(sql.raw(`SET LOCAL ROLE ${APP_ROLE}`));
          if (tenantId !== null) await tx.execute(sql`SELECT set_config(${TENANT_SETTING}, ${String(tenantId)}, true)`);
          rows = ((await tx.execute(query)) as unknown as { rows: Record<string, unknown>[] }).rows;
          throw new Error("rollback");
        })
        .catch((err: Error) => {
          if (err.message !== "rollback") throw err;
        });
      return rows;
    }

    it("forces row-level security on every table with a tenant_id column", async () => {
      const r = (await app.weft.db.execute(sql`
        SELECT c.relname AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
         WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1`)) as unknown as { rows: { name: string; enabled: boolean; forced: boolean }[] };
      expect(r.rows.map((t) => t.name)).toEqual(expect.arrayContaining(["workload_health", "flows", "flow_aggregates", "http_routes", "traffic_policies"]));
      expect(r.rows.filter((t) => !t.enabled || !t.forced).map((t) => t.name)).toEqual([]);
    });

    it("shows the app role no tenant-owned row without the tenant setting, though rows exist", async () => {
      const all = (await app.weft.db.execute(sql`SELECT count(*)::int AS n FROM api_tokens`)) as unknown as { rows: { n: number }[] };
      expect(all.rows[0]!.n).toBeGreaterThanOrEqual(2);
      for (const table of ["api_tokens", "audit_log", "change_log"]) {
        expect(await asApp(null, sql.raw(`SELECT * FROM ${table}`))).toEqual([]);
      }
    });

    it("shows only the set tenant's rows", async () => {
      for (const table of ["api_tokens", "audit_log", "change_log"]) {
        const rows = await asApp(a, sql.raw(`SELECT tenant_id FROM ${table}`));
        expect(rows.length).toBeGreaterThan(0);
        expect(new Set(rows.map((r) => Number(r.tenant_id)))).toEqual(new Set([a]));
      }
    });

    it("refuses to write a row for another tenant than the one set", async () => {
      const err = (await asApp(
        a,
        sql`INSERT INTO change_log (revision, tenant_id, kind, name, op) VALUES (0, ${b}, 'tenant', 'x', 'upsert') RETURNING id`,
      ).then(
        () => undefined,
        (e: Error) => e,
      )) as (Error & { cause?: Error }) | undefined;
      expect(err?.cause?.message).toMatch(/row-level security/);
    });
  });
});
