// Every X.509-SVID answered has its record and audit row committed first,
// also when concurrent issuances share one group commit (ca/store.ts), and
// a group commit that fails fails every request in it with a problem and
// leaves none of its rows behind. PGlite and Postgres; in-thread and pooled
// signing.
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { issuanceCommits } from "../../api/src/ca/store.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const N = 40;
const VARIANTS = BACKENDS.flatMap((backend) => [0, 2].map((signingWorkers) => [backend, signingWorkers] as const));

describe.each(VARIANTS)("X.509-SVID records on %s, %i signing workers", (backend, signingWorkers) => {
  describe.skipIf(skipBackend(backend))(`on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let t: { tenant: string; token: string };
    const csrs = Array.from({ length: 8 }, () => makeCsr(tmp.dir).csrPem);

    beforeAll(async () => {
      app = await startApi(backend, { signingWorkers });
      t = await tenantWithToken(app, ["write"]);
    });
    afterAll(async () => app?.close());
    afterEach(() => vi.restoreAllMocks());

    const issue = (identity: string, i: number) =>
      app.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/${identity}/x509-svids`, headers: bearer(t.token), payload: { csr: csrs[i % csrs.length] } });
    const putIdentity = async (name: string) => {
      const res = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/${name}`, headers: bearer(t.token), payload: { path: `/ns/records/sa/${name}` } });
      expect(res.statusCode).toBe(201);
    };
    /**
     * Records for one identity of the test's tenant, counted as the superuser
     * (no RLS), and its issuances as the audit API lists them (one row is both).
     */
    async function rows(identity: string): Promise<{ serials: string[]; audited: number }> {
      const out = (await app.weft.db.execute(sql`
        SELECT coalesce(json_agg(i.serial), '[]'::json) AS serials FROM svid_issuances i JOIN tenants tt ON tt.id = i.tenant_id
         WHERE tt.name = ${t.tenant} AND i.identity_name = ${identity} AND i.kind = 'x509-svid'`)) as unknown;
      const row = (Array.isArray(out) ? out[0] : (out as { rows: unknown[] }).rows[0]) as { serials: string[] | string };
      const listed = await app.inject({ url: `/v1/tenants/${t.tenant}/audit?limit=1000`, headers: operator });
      expect(listed.statusCode).toBe(200);
      const audited = (listed.json().items as { action: string; resource: string }[]).filter(
        (e) => e.action === "x509-svid.issue" && e.resource === `identity/${identity}`,
      ).length;
      return { serials: typeof row.serials === "string" ? (JSON.parse(row.serials) as string[]) : row.serials, audited };
    }

    it(`${N} concurrent issuances: ${N} answers, ${N} records with their serials, ${N} audit rows, in shared transactions`, async () => {
      await putIdentity("many");
      const before = { ...issuanceCommits };
      const answers = await Promise.all(Array.from({ length: N }, (_, i) => issue("many", i)));
      expect(answers.map((a) => a.statusCode)).toEqual(Array(N).fill(201));
      const serials = answers.map((a) => (a.json() as { serial: string }).serial);
      expect(new Set(serials).size).toBe(N);
      const stored = await rows("many");
      expect([...stored.serials].sort()).toEqual([...serials].sort());
      expect(stored.audited).toBe(N);
      // Group commit: fewer transactions than records (they overlapped).
      expect(issuanceCommits.records - before.records).toBe(N);
      expect(issuanceCommits.transactions - before.transactions).toBeLessThan(N);
    });

    it("a failed batch insert fails every request in it with a problem and writes none of their rows", async () => {
      await putIdentity("failing");
      const client = (app.weft.db as unknown as { $client: Record<string, (...args: unknown[]) => Promise<unknown>> }).$client;
      const method = typeof client.exec === "function" ? "exec" : "query";
      const real = client[method]!.bind(client);
      vi.spyOn(client, method).mockImplementation((q: unknown, ...rest: unknown[]) =>
        typeof q === "string" && q.includes("INSERT INTO svid_issuances") ? Promise.reject(new Error("disk full (injected)")) : real(q, ...rest),
      );
      const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => issue("failing", i)));
      for (const a of answers) {
        expect(a.statusCode).toBeGreaterThanOrEqual(500);
        expect(a.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(a.body).not.toContain("BEGIN CERTIFICATE");
        expect(a.body).not.toContain("disk full");
      }
      expect(await rows("failing")).toEqual({ serials: [], audited: 0 });
      vi.restoreAllMocks();
      // The same requests succeed once the database takes them again, each recorded once.
      const again = await Promise.all(Array.from({ length: 4 }, (_, i) => issue("failing", i)));
      expect(again.map((a) => a.statusCode)).toEqual([201, 201, 201, 201]);
      expect((await rows("failing")).serials).toHaveLength(4);
    });

    it("keeps the signing CA's max_issued_not_after at the latest expiry it signed, batch after batch", async () => {
      // The store skips the slot's UPDATE for a batch that cannot raise it: a longer TTL must still raise it.
      const slotMax = async () => {
        const out = (await app.weft.db.execute(sql`
          SELECT (SELECT max(s.max_issued_not_after) FROM ca_slots s JOIN tenants tt ON tt.id = s.tenant_id WHERE tt.name = ${t.tenant}) AS slot,
                 (SELECT max(i.expires_at) FROM svid_issuances i JOIN tenants tt ON tt.id = i.tenant_id WHERE tt.name = ${t.tenant}) AS issued`)) as unknown;
        const row = (Array.isArray(out) ? out[0] : (out as { rows: unknown[] }).rows[0]) as { slot: string | Date; issued: string | Date };
        return { slot: new Date(row.slot).getTime(), issued: new Date(row.issued).getTime() };
      };
      const ttl = async (name: string, seconds: number) => {
        const res = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/${name}`, headers: bearer(t.token), payload: { path: `/ns/records/sa/${name}`, x509SvidTtlSeconds: seconds } });
        expect(res.statusCode).toBe(201);
      };
      await ttl("brief", 120);
      await ttl("longer", 1800);
      for (const [name, waves] of [["brief", 3], ["longer", 2], ["brief", 2]] as const) {
        for (let w = 0; w < waves; w++) {
          const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => issue(name, i)));
          expect(answers.map((a) => a.statusCode)).toEqual(Array(6).fill(201));
          const latest = Math.max(...answers.map((a) => Date.parse((a.json() as { expiresAt: string }).expiresAt)));
          const m = await slotMax();
          expect(m.slot).toBe(m.issued);
          expect(m.slot).toBeGreaterThanOrEqual(latest);
        }
      }
    });
  });
});
