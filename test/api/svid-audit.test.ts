// An X.509- or JWT-SVID issuance's record is its audit entry (one row,
// svidIssuances in db/schema.ts): GET .../audit lists it among audit_log's
// rows in one id order, pages through both tables without a gap or a repeat,
// never lists another tenant's, and never lists a pre-0016 issuance twice.
// The caches on the issuance path (identity, token) stop issuance at the
// next request after a delete or a revocation. PGlite and Postgres.
import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { KEK_BYTES, Kek } from "../../api/src/ca/kek.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, expectProblem, operator, skipBackend, startApi, tenantWithToken, twoReplicas } from "../support/api.ts";
import { until } from "../support/until.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

interface Entry {
  id: number;
  actor: string;
  action: string;
  resource: string;
  requestId: string;
  clientRequestId: string | null;
  revision: number;
  at: string;
}

describe.each(BACKENDS)("SVID issuances in the audit log on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    const csr = makeCsr(tmp.dir).csrPem;

    beforeAll(async () => {
      app = await startApi(backend, { signingWorkers: 0 });
    });
    afterAll(async () => app?.close());

    const put = (t: { tenant: string; token: string }, name: string) =>
      app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/${name}`, headers: bearer(t.token), payload: { path: `/ns/audit/sa/${name}` } });
    const x509 = (t: { tenant: string; token: string }, name: string, headers: Record<string, string> = {}) =>
      app.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/${name}/x509-svids`, headers: { ...bearer(t.token), ...headers }, payload: { csr } });
    const jwt = (t: { tenant: string; token: string }, name: string) =>
      app.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/${name}/jwt-svids`, headers: bearer(t.token), payload: { audience: ["db"] } });
    const listAll = async (tenant: string, limit = 1000): Promise<Entry[]> => {
      const out: Entry[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 200; pages++) {
        const res = await app.inject({ url: `/v1/tenants/${tenant}/audit?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, headers: operator });
        expect(res.statusCode, res.body).toBe(200);
        const body = res.json() as { items: Entry[]; nextCursor?: string | null };
        out.push(...body.items);
        if (!body.nextCursor) return out;
        cursor = body.nextCursor;
      }
      throw new Error("audit pages never ended");
    };

    it("lists each issuance once, with who asked, between the writes around it in commit order", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      expect((await put(t, "a")).statusCode).toBe(201);
      const first = await x509(t, "a", { "x-request-id": "client-id-1" });
      expect(first.statusCode).toBe(201);
      expect((await put(t, "b")).statusCode).toBe(201);
      expect((await jwt(t, "b")).statusCode).toBe(201);
      const entries = await listAll(t.tenant);
      const jti = JSON.parse(Buffer.from(t.token.split(".")[1]!, "base64url").toString()).jti as string;
      expect(entries.map((e) => `${e.action} ${e.resource}`)).toEqual([
        `tenant.create tenant/${t.tenant}`,
        "ca.bootstrap bundle/bundle",
        `token.create token/${jti}`,
        "identity.create identity/a",
        "x509-svid.issue identity/a",
        "identity.create identity/b",
        "jwt-svid.issue identity/b",
      ]);
      const issued = entries[4]!;
      expect(issued).toMatchObject({ actor: `token:${jti}`, requestId: first.headers["x-request-id"], clientRequestId: "client-id-1" });
      expect(Date.parse(issued.at)).toBeGreaterThan(Date.now() - 60_000);
      // Revisions never go backwards along the log, and every entry has one.
      const revisions = entries.map((e) => e.revision);
      expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
      expect(new Set(entries.map((e) => e.id)).size).toBe(entries.length);
    });

    // PGlite only: on the shared Postgres other suites' writes move the global revision meanwhile.
    it.runIf(backend === "pglite")("takes no revision: an issuance leaves the global revision where it was, and is audited at it", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      expect((await put(t, "r")).statusCode).toBe(201);
      const before = await currentRevision(app);
      const answers = await Promise.all([x509(t, "r"), x509(t, "r"), jwt(t, "r")]);
      expect(answers.map((r) => r.statusCode)).toEqual([201, 201, 201]);
      expect(await currentRevision(app)).toBe(before);
      const issued = (await listAll(t.tenant)).filter((e) => e.action.endsWith("svid.issue"));
      expect(issued.map((e) => e.revision)).toEqual([before, before, before]);
    });

    it("pages through both tables one entry at a time without a gap or a repeat", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      for (const name of ["p", "q"]) {
        expect((await put(t, name)).statusCode).toBe(201);
        const issued = await Promise.all([x509(t, name), x509(t, name), jwt(t, name)]);
        expect(issued.map((r) => r.statusCode)).toEqual([201, 201, 201]);
      }
      const whole = await listAll(t.tenant);
      expect(whole).toHaveLength(3 + 2 * 4); // tenant, CA, token; then per identity: create and three issuances
      expect(await listAll(t.tenant, 1)).toEqual(whole);
      expect(await listAll(t.tenant, 2)).toEqual(whole);
      const ids = whole.map((e) => e.id);
      expect(ids).toEqual([...ids].sort((x, y) => x - y));
    });

    it("never lists another tenant's issuances, whatever the cursor", async () => {
      const a = await tenantWithToken(app, ["admin"]);
      const b = await tenantWithToken(app, ["admin"]);
      expect((await put(a, "secret")).statusCode).toBe(201);
      expect((await x509(a, "secret")).statusCode).toBe(201);
      const aIds = (await listAll(a.tenant)).map((e) => e.id);
      // b's own log, read with its admin token from the start and with a cursor from before a's ids.
      for (const cursor of [undefined, Buffer.from(JSON.stringify([0])).toString("base64url")]) {
        const res = await app.inject({ url: `/v1/tenants/${b.tenant}/audit?limit=1000${cursor ? `&cursor=${cursor}` : ""}`, headers: bearer(b.token) });
        expect(res.statusCode, res.body).toBe(200);
        const items = res.json().items as Entry[];
        expect(items.length).toBeGreaterThan(0);
        expect(items.filter((e) => aIds.includes(e.id) || e.resource === "identity/secret")).toEqual([]);
      }
      // a's log through b's token: b's token cannot see tenant a.
      const foreign = await app.inject({ url: `/v1/tenants/${a.tenant}/audit`, headers: bearer(b.token) });
      expect([403, 404]).toContain(foreign.statusCode);
      expect(foreign.body).not.toContain("identity/secret");
    });

    it("lists an issuance recorded before migration 0016 once, from its audit_log row", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      expect((await put(t, "old")).statusCode).toBe(201);
      const tenantId = Number((await app.weft.directory.byName(t.tenant))!.id);
      // What 0014's code wrote: a record without actor, and an audit_log row beside it.
      await app.weft.db.execute(sql`
        WITH slot AS (SELECT id FROM ca_slots WHERE tenant_id = ${tenantId} LIMIT 1)
        INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at)
        SELECT ${tenantId}, slot.id, 'x509-svid', 'old', 'spiffe://x/ns/audit/sa/old', 'ab', now(), now() + interval '1 hour' FROM slot`);
      await app.weft.db.execute(sql`
        INSERT INTO audit_log (tenant_id, actor, action, resource, request_id, revision)
        VALUES (${tenantId}, 'token:legacy', 'x509-svid.issue', 'identity/old', 'legacy-request', 1)`);
      const entries = (await listAll(t.tenant)).filter((e) => e.action === "x509-svid.issue");
      expect(entries).toEqual([expect.objectContaining({ actor: "token:legacy", requestId: "legacy-request" })]);
    });

    it("refuses issuance at the next request once the identity is deleted", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      expect((await put(t, "gone")).statusCode).toBe(201);
      expect((await x509(t, "gone")).statusCode).toBe(201); // the identity is cached now
      const del = await app.inject({ method: "DELETE", url: `/v1/tenants/${t.tenant}/identities/gone`, headers: bearer(t.token) });
      expect(del.statusCode).toBe(204);
      expectProblem(await x509(t, "gone"), 404);
      expectProblem(await jwt(t, "gone"), 404);
    });

    it("refuses issuance at the next request once the token is revoked", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      expect((await put(t, "w")).statusCode).toBe(201);
      const second = await app.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/tokens`, headers: operator, payload: { name: "svid", scopes: ["write"] } });
      const token = second.json() as { token: string; id: string };
      const w = { tenant: t.tenant, token: token.token };
      expect((await x509(w, "w")).statusCode).toBe(201); // the token's verification is cached now
      const revoked = await app.inject({ method: "DELETE", url: `/v1/tenants/${t.tenant}/tokens/${token.id}`, headers: bearer(t.token) });
      expect(revoked.statusCode).toBe(204);
      expectProblem(await x509(w, "w"), 401);
    });
  });
});

describe.each(BACKENDS)("issuance on another replica after a delete or a revocation, %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`two replicas on ${backendDatabase(backend)}`, () => {
    let replicas: Awaited<ReturnType<typeof twoReplicas>>;
    const csr = makeCsr(tmp.dir).csrPem;

    beforeAll(async () => {
      // One KEK, as replicas of a deployment share WEFT_KEK: each opens the CA the other made.
      replicas = await twoReplicas(backend, { signingWorkers: 0, kek: new Kek(randomBytes(KEK_BYTES)) });
    });
    afterAll(async () => replicas?.close());

    // The identity cache of replica b hears of a's delete through the change feed (NOTIFY on
    // Postgres); the revocation through its revocation poll (200 ms in tests). Bound: 2 s.
    it("replica b stops issuing within 2 s of a delete or a revocation made on replica a", async () => {
      const { a, b } = replicas;
      const t = await tenantWithToken(a, ["admin"]);
      const issueOn = (app: WeftApp, token: string, name: string) =>
        app.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/${name}/x509-svids`, headers: bearer(token), payload: { csr } });
      for (const name of ["one", "two"]) {
        const res = await a.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/${name}`, headers: bearer(t.token), payload: { path: `/ns/r/sa/${name}` } });
        expect(res.statusCode).toBe(201);
      }
      const minted = (await a.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/tokens`, headers: operator, payload: { name: "svid", scopes: ["write"] } })).json() as {
        token: string;
        id: string;
      };
      expect((await issueOn(b, minted.token, "one")).statusCode).toBe(201);
      expect((await issueOn(b, minted.token, "two")).statusCode).toBe(201);

      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${t.tenant}/identities/one`, headers: bearer(t.token) })).statusCode).toBe(204);
      const deletedAt = Date.now();
      await until("replica b refuses the deleted identity", 2000, async () => ((await issueOn(b, minted.token, "one")).statusCode === 404 ? true : undefined));
      const afterDelete = Date.now() - deletedAt;

      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${t.tenant}/tokens/${minted.id}`, headers: bearer(t.token) })).statusCode).toBe(204);
      const revokedAt = Date.now();
      await until("replica b refuses the revoked token", 2000, async () => ((await issueOn(b, minted.token, "two")).statusCode === 401 ? true : undefined));
      const afterRevoke = Date.now() - revokedAt;
      expect(afterDelete).toBeLessThan(2000);
      expect(afterRevoke).toBeLessThan(2000);
    });
  });
});
