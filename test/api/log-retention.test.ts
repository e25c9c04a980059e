// Issue 20 item 3: the change log and the audit log are pruned in bounded
// batches, past their retention only, without holding up the writes that
// arrive meanwhile; the change log's horizon is raised before rows go.
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { pruneLogs } from "../../api/src/db/log-retention.ts";
import { APP_ROLE } from "../../api/src/db/schema.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, freshPostgres, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

const DAY = 86_400_000;
const RETENTION = { changeLogMs: 7 * DAY, auditMs: 30 * DAY };

describe.each(BACKENDS)("change-log and audit retention on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)} (a database of its own)`, () => {
    let app: WeftApp;
    let t: { tenant: string; token: string };
    let own: Awaited<ReturnType<typeof freshPostgres>> | undefined;
    let written = 0;
    const rows = async <T>(q: ReturnType<typeof sql>) => ((await app.weft.db.execute(q)) as unknown as { rows: T[] }).rows;
    const count = async () =>
      (await rows<{ changes: number; audits: number }>(sql`SELECT (SELECT count(*) FROM change_log)::int AS changes, (SELECT count(*) FROM audit_log)::int AS audits`))[0]!;
    const horizon = async () => Number((await rows<{ p: string }>(sql`SELECT pruned_through AS p FROM change_log_horizon WHERE id = 1`))[0]!.p);
    const write = async () => {
      const res = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/id-${++written}`, headers: bearer(t.token), payload: { path: `/id-${written}` } });
      expect(res.statusCode, res.body).toBe(201);
    };
    /** Ages every change and audit row at or below `revision` by `days`. */
    const age = async (revision: number, days: number) => {
      await app.weft.db.execute(sql`UPDATE change_log SET at = now() - make_interval(days => ${days}) WHERE revision <= ${revision}`);
      await app.weft.db.execute(sql`UPDATE audit_log SET at = now() - make_interval(days => ${days}) WHERE revision <= ${revision}`);
    };

    beforeAll(async () => {
      // Retention reaches every row of both logs: on Postgres, a database no other suite shares.
      if (backend === "postgres") own = await freshPostgres("log_retention");
      app = await startApi(backend, own ? { databaseUrl: own.url } : {});
      t = await tenantWithToken(app);
    });
    afterAll(async () => {
      await app?.close();
      await own?.drop();
    });

    it("deletes in batches only what is older than each log's retention, raising the change log's horizon first; two pruners delete each row once", async () => {
      for (let i = 0; i < 6; i++) await write();
      const old = await currentRevision(app);
      // Changes 10 days old: past the change log's 7 days, within the audit log's 30.
      await age(old, 10);
      for (let i = 0; i < 3; i++) await write();
      const before = await count();
      const oldChanges = (await rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM change_log WHERE revision <= ${old}`))[0]!.n;
      expect(oldChanges).toBeGreaterThanOrEqual(6);

      let batches = 0;
      const opts = { batch: 2, inBatch: async () => void batches++ };
      const [first, second] = await Promise.all([pruneLogs(app.weft.db, RETENTION, opts), pruneLogs(app.weft.db, RETENTION, opts)]);
      expect(first.change_log + second.change_log).toBe(oldChanges);
      expect(first.audit_log + second.audit_log).toBe(0);
      expect(batches).toBeGreaterThanOrEqual(Math.ceil(oldChanges / 2));
      expect(first.changeLogHorizon).toBe(old);
      expect(await horizon()).toBe(old);
      expect(await count()).toEqual({ changes: before.changes - oldChanges, audits: before.audits });
      expect((await rows<{ min: string }>(sql`SELECT min(revision)::text AS min FROM change_log`))[0]!.min).toBe(String(old + 1));

      // Forty days: past the audit log's retention too; the horizon never moves down.
      await age(old, 40);
      const audits = (await rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_log WHERE revision <= ${old}`))[0]!.n;
      // An SVID issuance's audit entry is its record: an old one goes with the audit log, a young one stays.
      const issuance = (serial: string, days: number, revision: number) => sql`
        INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at, actor, request_id, revision)
        SELECT id, gen_random_uuid(), 'x509-svid', 'id-1', 'spiffe://' || trust_domain || '/id-1', ${serial},
               now() - make_interval(days => ${days}), now() - make_interval(days => ${days}) + interval '1 hour', 'operator', 'r', ${revision}
        FROM tenants WHERE name = ${t.tenant}`;
      await app.weft.db.execute(issuance("0ld", 40, old));
      await app.weft.db.execute(issuance("fresh", 1, old + 1));
      const again = await pruneLogs(app.weft.db, RETENTION, { batch: 2 });
      expect(again).toEqual({ change_log: 0, audit_log: audits + 1, changeLogHorizon: old });
      expect((await rows<{ serial: string }>(sql`SELECT serial FROM svid_issuances WHERE serial IN ('0ld', 'fresh')`)).map((r) => r.serial)).toEqual(["fresh"]);
      expect(await count()).toEqual({ changes: before.changes - oldChanges, audits: before.audits - audits });
      // What is left still reads: the audit list and the change list of the tenant.
      const list = await app.inject({ url: `/v1/tenants/${t.tenant}/audit?limit=100`, headers: bearer(t.token) });
      expect(list.statusCode).toBe(200);
      expect((list.json() as { items: { revision: number }[] }).items.every((i) => i.revision > old)).toBe(true);

      // GET /changes?since= below the horizon would read as "nothing else changed": 410 instead.
      const changes = (query: string) => app.inject({ url: `/v1/tenants/${t.tenant}/changes${query}`, headers: bearer(t.token) });
      const gone = await changes(`?since=${old - 1}`);
      expect(gone.statusCode, gone.body).toBe(410);
      expect(gone.headers["content-type"]).toMatch(/application\/problem\+json/);
      expect(gone.json().detail).toContain(`after revision ${old}`);
      const fromHorizon = await changes(`?since=${old}`);
      expect(fromHorizon.statusCode, fromHorizon.body).toBe(200);
      expect((fromHorizon.json() as { items: { revision: number }[] }).items.length).toBeGreaterThan(0);
      const retained = await changes("");
      expect(retained.statusCode, retained.body).toBe(200);
      expect((retained.json() as { items: { revision: number }[] }).items.every((i) => i.revision > old)).toBe(true);
    });

    it("lets no request transaction raise the change log's horizon or delete another tenant's log rows", async () => {
      const asApp = (statement: ReturnType<typeof sql>) =>
        app.weft.db
          .transaction(async (tx) => {
            await tx.execute(sql.raw(`SET LOCAL ROLE ${APP_ROLE}`));
            await tx.execute(statement);
          })
          .then(
            () => undefined,
            (e: Error & { cause?: Error }) => e.cause?.message ?? e.message,
          );
      expect(await asApp(sql`UPDATE change_log_horizon SET pruned_through = 1000000 WHERE id = 1`)).toMatch(/permission denied/);
      expect(await asApp(sql`DELETE FROM audit_log`)).toBeUndefined();
      expect((await rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_log`))[0]!.n).toBeGreaterThan(0);
    });

    it.skipIf(backend === "pglite")("lets a write commit while a pruning batch holds its rows", async () => {
      for (let i = 0; i < 4; i++) await write();
      const old = await currentRevision(app);
      await age(old, 400);
      const committed: number[] = [];
      const inBatch = async () => {
        // Inside the open batch transaction: a write on another connection must not wait for it.
        const started = performance.now();
        const done = write().then(() => true);
        const inTime = await Promise.race([done, new Promise<false>((r) => setTimeout(() => r(false), 5000))]);
        expect(inTime, "a write waited for the pruning batch").toBe(true);
        committed.push(performance.now() - started);
      };
      const result = await pruneLogs(app.weft.db, RETENTION, { batch: 3, inBatch });
      expect(result.change_log).toBeGreaterThanOrEqual(4);
      expect(result.audit_log).toBeGreaterThanOrEqual(4);
      expect(committed.length).toBeGreaterThanOrEqual(4);
      // The writes made while batches were open are newer than the retention: all kept.
      const kept = await rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM change_log WHERE revision > ${old}`);
      expect(kept[0]!.n).toBeGreaterThanOrEqual(committed.length);
    }, 60_000);
  });
});
