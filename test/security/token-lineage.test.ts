import { decodeJwt } from "jose";
import { inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { revocations } from "../../api/src/db/schema.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

/** Tokens cannot outlive or outrank the token that minted them. */
describe.each(BACKENDS)("token lineage on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const mint = (tenant: string, auth: Record<string, string>, payload: object) =>
      app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: auth, payload });
    const readTenant = (tenant: string, token: string) => app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) });

    it("caps a child's expiry at its parent's and answers the real expiresAt", async () => {
      const { tenant } = await tenantWithToken(app, ["read"]);
      const parent = await mint(tenant, operator, { name: "short", scopes: ["admin"], ttlSeconds: 120 });
      expect(parent.statusCode).toBe(201);
      const child = await mint(tenant, bearer(parent.json().token), { name: "long", scopes: ["admin"], ttlSeconds: 31_536_000 });
      expect(child.statusCode).toBe(201);
      expect(child.json().expiresAt).toBe(parent.json().expiresAt);
      expect(decodeJwt(child.json().token).exp).toBe(decodeJwt(parent.json().token).exp);
      const info = await app.inject({ url: `/v1/tenants/${tenant}/tokens/${child.json().id}`, headers: operator });
      expect(info.json().expiresAt).toBe(parent.json().expiresAt);
      // A shorter request is honoured as asked.
      const shorter = await mint(tenant, bearer(parent.json().token), { name: "shorter", scopes: ["read"], ttlSeconds: 60 });
      expect(Date.parse(shorter.json().expiresAt)).toBeLessThan(Date.parse(parent.json().expiresAt));
    });

    it("records the parent: parentId, null when the operator minted it", async () => {
      const { tenant } = await tenantWithToken(app, ["read"]);
      const parent = await mint(tenant, operator, { name: "p", scopes: ["admin"] });
      expect(parent.json().parentId).toBeNull();
      const child = await mint(tenant, bearer(parent.json().token), { name: "c", scopes: ["write"] });
      expect(child.json().parentId).toBe(parent.json().id);
      const info = await app.inject({ url: `/v1/tenants/${tenant}/tokens/${child.json().id}`, headers: operator });
      expect(info.json()).toMatchObject({ id: child.json().id, parentId: parent.json().id });
      const list = (await app.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator })).json();
      expect(list.items.find((t: { id: string }) => t.id === parent.json().id).parentId).toBeNull();
    });

    it("revokes everything a token minted, transitively, in one write, each revocation recorded and audited", async () => {
      const { tenant, token: reader } = await tenantWithToken(app, ["read"]);
      const a = (await mint(tenant, operator, { name: "a", scopes: ["admin"] })).json();
      const b = (await mint(tenant, bearer(a.token), { name: "b", scopes: ["admin"] })).json();
      const c = (await mint(tenant, bearer(b.token), { name: "c", scopes: ["read"] })).json();
      const sibling = (await mint(tenant, operator, { name: "s", scopes: ["read"] })).json();
      for (const t of [a, b, c]) expect((await readTenant(tenant, t.token)).statusCode).toBe(200);

      // A dry run revokes nothing.
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${a.id}?dryRun=true`, headers: operator })).statusCode).toBe(204);
      expect((await readTenant(tenant, c.token)).statusCode).toBe(200);

      const revoke = await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${a.id}`, headers: operator });
      expect(revoke.statusCode).toBe(204);
      for (const t of [a, b, c]) expect(expectProblem(await readTenant(tenant, t.token), 401).detail).toBe("token revoked");
      expect((await readTenant(tenant, sibling.token)).statusCode).toBe(200);
      expect((await readTenant(tenant, reader)).statusCode).toBe(200);

      const left = (await app.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator })).json().items.map((t: { id: string }) => t.id);
      for (const t of [a, b, c]) expect(left).not.toContain(t.id);
      const revoked = await app.weft.db.select().from(revocations).where(inArray(revocations.tokenId, [a.id, b.id, c.id]));
      expect(revoked.map((r) => r.tokenId).sort()).toEqual([a.id, b.id, c.id].sort());
      expect(new Set(revoked.map((r) => r.revision)).size).toBe(1);

      const audit = (await app.inject({ url: `/v1/tenants/${tenant}/audit?limit=1000`, headers: operator })).json().items as {
        action: string;
        resource: string;
        revision: number;
      }[];
      const revokes = audit.filter((e) => e.action.startsWith("token.revoke"));
      expect(revokes.map((e) => [e.action, e.resource]).sort()).toEqual(
        [
          ["token.revoke", `token/${a.id}`],
          ["token.revoke.cascade", `token/${b.id}`],
          ["token.revoke.cascade", `token/${c.id}`],
        ].sort(),
      );
      expect(new Set(revokes.map((e) => e.revision)).size).toBe(1);
      // The deleted parent's tokens cannot mint either.
      expectProblem(await mint(tenant, bearer(b.token), { name: "late", scopes: ["read"] }), 401);
    });

    it("revoking a middle token leaves its parent and takes its children", async () => {
      const { tenant } = await tenantWithToken(app, ["read"]);
      const a = (await mint(tenant, operator, { name: "a", scopes: ["admin"] })).json();
      const b = (await mint(tenant, bearer(a.token), { name: "b", scopes: ["admin"] })).json();
      const c = (await mint(tenant, bearer(b.token), { name: "c", scopes: ["read"] })).json();
      // A token may revoke its own child.
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${b.id}`, headers: bearer(a.token) })).statusCode).toBe(204);
      expect((await readTenant(tenant, a.token)).statusCode).toBe(200);
      expectProblem(await readTenant(tenant, b.token), 401);
      expectProblem(await readTenant(tenant, c.token), 401);
    });
  });
});
