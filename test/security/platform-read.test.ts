import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { read } from "../../api/src/db/transactions.ts";
import { withPlatformRead } from "../../api/src/db/platform-read.ts";
import { BACKENDS, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { identity } from "../support/mesh.ts";

type Rows = { rows: Record<string, unknown>[] };

/**
 * The boundary: a request's transaction runs as weft_app with its tenant set.
 * Before, the platform-wide read policies opened on a setting
 * (weft.platform_read) that such a transaction could set for itself; now they
 * name a separate read-only role, so no setting opens them.
 */
describe.each(BACKENDS)("platform-wide reads on %s", (backend) => {
  describe.skipIf(skipBackend(backend))("a request transaction cannot read other tenants", () => {
    let app: WeftApp;
    let a: number;
    let b: number;
    beforeAll(async () => {
      app = await startApi(backend);
      const ta = await tenantWithToken(app);
      const tb = await tenantWithToken(app);
      await identity(app, ta.token, ta.tenant, "mine");
      await identity(app, tb.token, tb.tenant, "theirs");
      a = (await app.weft.directory.byName(ta.tenant))!.id;
      b = (await app.weft.directory.byName(tb.tenant))!.id;
    });
    afterAll(async () => app?.close());

    const tenantsSeen = (rows: Record<string, unknown>[]) => new Set(rows.map((r) => Number(r.tenant_id)));

    it("ignores weft.platform_read set by the request's own transaction", async () => {
      for (const table of ["identities", "workloads", "services", "policies", "change_log"]) {
        const rows = await read(app.weft.db, a, async (tx) => {
          await tx.execute(sql`SELECT set_config('weft.platform_read', 'on', true)`);
          return ((await tx.execute(sql.raw(`SELECT tenant_id FROM ${table}`))) as unknown as Rows).rows;
        });
        expect(tenantsSeen(rows).has(b), table).toBe(false);
      }
    });

    it("lets the platform path read every tenant, and only read", async () => {
      const seen = await read(app.weft.db, a, (tx) =>
        withPlatformRead(tx, async () => ((await tx.execute(sql`SELECT tenant_id FROM identities`)) as unknown as Rows).rows),
      );
      expect(tenantsSeen(seen).has(a) && tenantsSeen(seen).has(b)).toBe(true);
      const write = read(app.weft.db, a, (tx) =>
        withPlatformRead(tx, () => tx.execute(sql`UPDATE identities SET selectors = '{}'::jsonb WHERE tenant_id = ${b}`)),
      );
      await expect(write).rejects.toThrow();
    });

    it("returns to the tenant-bound role after a platform read inside the same transaction", async () => {
      const after = await read(app.weft.db, a, async (tx) => {
        await withPlatformRead(tx, async () => tx.execute(sql`SELECT 1`));
        return ((await tx.execute(sql`SELECT tenant_id FROM identities`)) as unknown as Rows).rows;
      });
      expect(tenantsSeen(after)).toEqual(new Set([a]));
    });
  });
});
