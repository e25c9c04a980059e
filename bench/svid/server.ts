/**
 * The API side of bench/svid, in its own process so the load generator and
 * the raw-limit probe never share its event loop: the real API (embedded
 * PGlite in memory, or DATABASE_URL) with a tenant, a write token and one
 * identity. Prints one JSON line when ready; on SIGTERM prints one more line
 * with the number of issuance records and audit rows committed for the
 * tenant (the bench checks every answered request left both) and how many
 * transactions carried them, then exits.
 */
import { sql } from "drizzle-orm";
import { buildApp } from "../../api/src/app.ts";
import { inProcessConfig } from "../../api/src/config.ts";
import { issuanceCommits } from "../../api/src/ca/store.ts";

const OPERATOR = "weft_op_bench-svid-operator-token-000000";

const app = await buildApp(
  inProcessConfig({
    operatorToken: OPERATOR,
    databaseUrl: process.env.DATABASE_URL || undefined,
    trustDomainSuffix: "bench.weft",
    signingWorkers: Number(process.env.BENCH_SIGNING_WORKERS ?? 0),
  }),
);

/** Result rows from either driver under drizzle's execute(): PGlite's array or node-postgres's { rows }. */
const rowsOf = (out: unknown): unknown[] => (Array.isArray(out) ? out : (out as { rows: unknown[] }).rows);

const op = { authorization: `Bearer ${OPERATOR}` };
const inject = async (method: "POST" | "PUT", url: string, headers: Record<string, string>, payload: unknown, expect: number) => {
  const res = await app.inject({ method, url, headers, payload: payload as Record<string, unknown> });
  if (res.statusCode !== expect) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.json() as Record<string, unknown>;
};
const tenant = `bench-${process.pid}-${Date.now().toString(36)}`;
const created = await inject("POST", "/v1/tenants", op, { name: tenant }, 201);
const { token } = (await inject("POST", `/v1/tenants/${tenant}/tokens`, op, { name: "bench", scopes: ["write"] }, 201)) as { token: string };
await inject("PUT", `/v1/tenants/${tenant}/identities/web`, { authorization: `Bearer ${token}` }, { path: "/ns/bench/sa/web" }, 201);
await app.listen({ port: 0, host: "127.0.0.1" });
const { port } = app.server.address() as { port: number };
// On Postgres, one backend's pid: its parent is the postmaster, whose processes the bench counts as the server's too.
const backend = process.env.DATABASE_URL ? (rowsOf(await app.weft.db.execute(sql`SELECT pg_backend_pid() AS pid`))[0] as { pid: number }).pid : null;
console.log(JSON.stringify({ port, path: `/v1/tenants/${tenant}/identities/web/x509-svids`, token, tenant: created.name, postgresBackend: backend }));

/** Rows committed for the bench tenant, counted as the superuser (no RLS). */
async function committed(): Promise<{ issuances: number; audited: number }> {
  const rows = (await app.weft.db.execute(sql`
    SELECT count(*)::int AS issuances,
           -- The record is the issuance's audit entry too (svidIssuances in db/schema.ts): audited when it names who asked.
           (count(*) FILTER (WHERE i.actor IS NOT NULL AND i.request_id IS NOT NULL AND i.revision IS NOT NULL))::int AS audited
      FROM svid_issuances i JOIN tenants t ON t.id = i.tenant_id WHERE t.name = ${tenant} AND i.kind = 'x509-svid'`)) as unknown;
  const row = rowsOf(rows)[0] as { issuances: number; audited: number };
  return { issuances: Number(row.issuances), audited: Number(row.audited) };
}

// Exit through process.exit so that --cpu-prof writes its file.
process.on("SIGTERM", () => {
  committed()
    .then((c) => console.log(JSON.stringify({ ...c, transactions: issuanceCommits.transactions, records: issuanceCommits.records })))
    .catch((err: unknown) => console.log(JSON.stringify({ error: String(err) })))
    .finally(() => process.exit(0));
});
