// Migration 0016 on a database that already holds issuances: records written
// before it (with their audit_log rows) keep their ids and are listed once;
// the records written after it take audit ids past every id of both tables,
// so no id repeats in the audit listing. Applied to PGlite from a copy of
// migrations/ that stops at 0015.
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { afterAll, expect, it } from "vitest";
import { tempDir } from "../ca/helpers.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const rowsOf = (out: unknown) => (Array.isArray(out) ? out : (out as { rows: unknown[] }).rows) as Record<string, unknown>[];

it("keeps pre-0016 issuances, lists none twice, and starts new ids past both tables", async () => {
  const upTo15 = `${tmp.dir}/migrations-0015`;
  cpSync("migrations", upTo15, { recursive: true });
  const journalPath = `${upTo15}/meta/_journal.json`;
  const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { idx: number; tag: string }[] };
  expect(journal.entries.some((e) => e.tag === "0016_svid_issuance_audits")).toBe(true);
  // 0016 and every later migration: the migrator applies only what is newer than the last one applied,
  // so a later one left in would make the full run below skip 0016.
  for (const e of journal.entries.filter((e) => e.idx >= 16)) rmSync(`${upTo15}/${e.tag}.sql`);
  journal.entries = journal.entries.filter((e) => e.idx < 16);
  writeFileSync(journalPath, JSON.stringify(journal));

  const client = new PGlite();
  try {
    const db = drizzle(client);
    await migrate(db, { migrationsFolder: upTo15 });
    // As 0015's code left things: records numbered by their own sequence, well past audit_log's.
    await db.execute(sql`INSERT INTO tenants (name, trust_domain, revision) VALUES ('old', 'old.test', 1)`);
    const [tenant] = rowsOf(await db.execute(sql`SELECT id FROM tenants WHERE name = 'old'`));
    const tid = Number(tenant!.id);
    await db.execute(sql`SELECT setval('svid_issuances_id_seq', 5000)`);
    await db.execute(sql`
      INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at)
      VALUES (${tid}, gen_random_uuid(), 'x509-svid', 'web', 'spiffe://old.test/web', 'aa', now(), now() + interval '1 hour')`);
    await db.execute(sql`
      INSERT INTO audit_log (tenant_id, actor, action, resource, request_id, revision)
      VALUES (${tid}, 'token:t', 'x509-svid.issue', 'identity/web', 'r1', 1)`);

    await migrate(db, { migrationsFolder: "migrations" });
    const [old] = rowsOf(await db.execute(sql`SELECT id, actor FROM svid_issuances`));
    expect(old).toMatchObject({ actor: null });
    expect(Number(old!.id)).toBe(5001);
    // A record written now takes the shared sequence: past 5001 and past every audit id.
    await db.execute(sql`
      INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at, actor, request_id, revision)
      VALUES (${tid}, gen_random_uuid(), 'x509-svid', 'web', 'spiffe://old.test/web', 'bb', now(), now() + interval '1 hour', 'token:t', 'r2', 2)`);
    await db.execute(sql`INSERT INTO audit_log (tenant_id, actor, action, resource, request_id, revision) VALUES (${tid}, 'token:t', 'identity.create', 'identity/x', 'r3', 3)`);
    const ids = rowsOf(
      await db.execute(sql`SELECT id FROM audit_log UNION ALL SELECT id FROM svid_issuances WHERE actor IS NOT NULL ORDER BY id`),
    ).map((r) => Number(r.id));
    expect(new Set(ids).size).toBe(ids.length);
    const [fresh] = rowsOf(await db.execute(sql`SELECT id FROM svid_issuances WHERE serial = 'bb'`));
    expect(Number(fresh!.id)).toBeGreaterThan(5001);
    // The old sequence is gone with the column default that used it.
    expect(rowsOf(await db.execute(sql`SELECT to_regclass('svid_issuances_id_seq') AS seq`))[0]!.seq).toBeNull();
  } finally {
    await client.close();
  }
});
