// Issue 20 item 3: the API runs through PgBouncer in transaction mode. Queries
// go through the pooler, which shares two server connections among every
// replica's pool; LISTEN and the migration lock take the direct URL
// (WEFT_DATABASE_DIRECT_URL). Nothing the API sends through the pooler may
// leave session state behind, and the check that says so catches it when
// something does.
import { X509Certificate } from "node:crypto";
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { bearer, expectProblem, freshPostgres, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { addressIn, joinToken } from "../support/nodes.ts";
import { pgbouncerUnavailableReason, startPgBouncer, type PgBouncer } from "../support/pgbouncer.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { recordStatements, sessionStateIn, type SentStatement } from "../support/session-state.ts";
import { untilHolds } from "../support/until.ts";

/** Server connections the pooler keeps per database: far fewer than the replicas' pools open. */
const SERVER_CONNECTIONS = 2;
const POOL_MAX = 8;

const skip = skipBackend("postgres") || skipWithout("PgBouncer", pgbouncerUnavailableReason());
const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe.skipIf(skip)("the API through PgBouncer in transaction mode", () => {
  let own: Awaited<ReturnType<typeof freshPostgres>> | undefined;
  let bouncer: PgBouncer | undefined;
  let recorder: ReturnType<typeof recordStatements> | undefined;
  let a: WeftApp;
  let b: WeftApp;
  const throughPooler = (): SentStatement[] => recorder!.statements;

  beforeAll(async () => {
    own = await freshPostgres("pgbouncer");
    bouncer = await startPgBouncer(own.url, { poolSize: SERVER_CONNECTIONS });
    recorder = recordStatements(Number(new URL(bouncer.url).port));
    const config = { databaseUrl: bouncer.url, databaseDirectUrl: own.url, dbPoolMax: POOL_MAX };
    a = await startApi("postgres", config);
    b = await startApi("postgres", config);
  }, 60_000);
  afterAll(async () => {
    recorder?.stop();
    await a?.close();
    await b?.close();
    await bouncer?.stop();
    await own?.drop();
  });

  it("serves writes, reads, a long poll woken by the other replica's write, and an SVID, on two shared server connections", async () => {
    const t = await tenantWithToken(a, ["admin"]);
    const other = await tenantWithToken(b, ["admin"]);
    const put = (app: WeftApp, path: string, payload: Record<string, unknown>) =>
      app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/${path}`, headers: bearer(t.token), payload });
    const web = await put(a, "identities/web", { path: "/web" });
    expect(web.statusCode, web.body).toBe(201);

    const { token } = await joinToken(a);
    const reg = await b.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: token, name: "bouncer-node", zone: "z" } });
    expect(reg.statusCode, reg.body).toBe(201);
    const node = { authorization: `Bearer ${reg.json().credential as string}` };
    const podCidr = reg.json().node.podCidr as string;
    expect((await put(a, "workloads/web-1", { identity: "web", node: "bouncer-node", addresses: [addressIn(podCidr)] })).statusCode).toBe(201);

    // Reads on the other replica see the write; the other tenant does not (RLS's set_config is per transaction).
    expect((await b.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-1`, headers: bearer(t.token) })).statusCode).toBe(200);
    expectProblem(await b.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-1`, headers: bearer(other.token) }), 404);

    const first = await b.inject({ url: "/v1/nodes/bouncer-node/datapath", headers: node });
    expect(first.statusCode, first.body).toBe(200);
    const etag = first.headers.etag as string;
    let answered = false;
    const poll = b.inject({ url: "/v1/nodes/bouncer-node/datapath?wait=20", headers: { ...node, "if-none-match": etag } }).then((res) => {
      answered = true;
      return res;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(answered, "the poll answered before any write").toBe(false);
    // B hears of A's write only through NOTIFY on its direct LISTEN connection.
    const startedAt = performance.now();
    expect((await put(a, "workloads/web-2", { identity: "web", node: "bouncer-node", addresses: [addressIn(podCidr)] })).statusCode).toBe(201);
    const woken = await poll;
    expect(woken.statusCode, woken.body).toBe(200);
    expect(woken.headers.etag).not.toBe(etag);
    expect(woken.json().revision).toBeGreaterThan(first.json().revision);
    // Well inside the follower's 5-s fallback poll: the NOTIFY woke it.
    expect(performance.now() - startedAt).toBeLessThan(2500);

    const csr = makeCsr(tmp.dir);
    const svid = await a.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/web/x509-svids`, headers: bearer(t.token), payload: { csr: csr.csrPem } });
    expect(svid.statusCode, svid.body).toBe(201);
    const leaf = new X509Certificate((svid.json() as { certificate: string }).certificate);
    expect(leaf.subjectAltName).toBe(`URI:${web.json().spiffeId as string}`);
    // The issuance is recorded (its audit row, written in batches) through the pooler too.
    await untilHolds(
      "the issuance's audit row",
      async () => ((await b.inject({ url: `/v1/tenants/${t.tenant}/audit?limit=100`, headers: bearer(t.token) })).json() as { items: { action: string }[] }).items.map((i) => i.action),
      (actions) => actions.includes("x509-svid.issue"),
    );

    // Many requests at once open many client connections on both replicas; the server sees two.
    const burst = await Promise.all(
      Array.from({ length: 24 }, (_, i) => (i % 2 ? a : b).inject({ url: `/v1/tenants/${t.tenant}/workloads?limit=10`, headers: bearer(t.token) })),
    );
    expect(burst.map((r) => r.statusCode)).toEqual(burst.map(() => 200));
    const clients = (await bouncer!.show("CLIENTS")).filter((c) => c.database !== "pgbouncer");
    const servers = await bouncer!.show("SERVERS");
    expect(clients.length).toBeGreaterThan(SERVER_CONNECTIONS);
    expect(servers.length).toBeLessThanOrEqual(SERVER_CONNECTIONS);
  }, 60_000);

  it("sends nothing through the pooler that keeps session state, and no named prepared statement", () => {
    const sent = throughPooler();
    // The check saw the traffic: hundreds of statements from both replicas.
    expect(sent.length).toBeGreaterThan(100);
    expect(sent.filter((s) => sessionStateIn(s) !== null).map((s) => `${sessionStateIn(s)}: ${s.text.slice(0, 120)}`)).toEqual([]);
  });

  it("the check catches session state sent through the app's pool, the kind that leaks across clients", async () => {
    const before = throughPooler().length;
    await a.weft.db.execute(sql`SET application_name = 'leaked-by-a'`);
    const caught = throughPooler().slice(before).map(sessionStateIn);
    expect(caught).toContain("session-level SET");

    // Why it matters: with one server connection, another client inherits that session's setting.
    const single = await startPgBouncer(own!.url, { poolSize: 1 });
    const one = new pg.Client({ connectionString: single.url });
    const two = new pg.Client({ connectionString: single.url });
    try {
      await one.connect();
      await two.connect();
      await one.query("SET application_name = 'set-by-one'");
      expect((await two.query("SHOW application_name")).rows[0].application_name).toBe("set-by-one");
      // A transaction-scoped setting, as the API's set_config(..., true) makes, does not leak.
      await one.query("BEGIN; SELECT set_config('weft.tenant_id', '42', true); COMMIT");
      expect((await two.query("SELECT current_setting('weft.tenant_id', true) AS v")).rows[0].v).toBe("");
    } finally {
      await one.end().catch(() => {});
      await two.end().catch(() => {});
      await single.stop();
    }
  }, 30_000);

  it("knows each kind of session state and passes what ends with the transaction", () => {
    const leaks = [
      "SET search_path TO x",
      "SET SESSION statement_timeout = 0",
      "select 1; set role weft_app",
      "SELECT set_config('role', 'weft_app', false)",
      "PREPARE q AS SELECT 1",
      "LISTEN weft_changes",
      "SELECT pg_advisory_lock(1)",
      "CREATE TEMP TABLE t (x int)",
      "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
      "DISCARD ALL",
    ];
    for (const text of leaks) expect(sessionStateIn({ text }), text).not.toBeNull();
    expect(sessionStateIn({ text: "select 1", name: "q1" })).toMatch(/named prepared statement/);
    const fine = [
      "SET LOCAL role weft_app",
      "set transaction isolation level repeatable read",
      "SELECT set_config('role', 'weft_app', true), set_config('weft.tenant_id', '1', true)",
      "SELECT pg_advisory_xact_lock(7)",
      'update "revision_counter" set "revision" = "revision" + 1 where "id" = 1 returning "revision"',
      "insert into settings (k) values ('SET x')",
    ];
    for (const text of fine) expect(sessionStateIn({ text }), text).toBeNull();
  });
});
