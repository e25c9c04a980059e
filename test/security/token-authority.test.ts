import { randomUUID } from "node:crypto";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

/**
 * A token's signature is not enough: its authority is its api_tokens row
 * (which revocation and tenant deletion remove), and no token lives longer
 * than WEFT_TOKEN_MAX_TTL whatever its signature says. The forgeries below are
 * signed with the real key, as someone holding a copy of it would sign them.
 */
describe.each(BACKENDS)("token authority on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    const MAX_TTL = 3600;
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend, { tokenMaxTtlSeconds: MAX_TTL });
    });
    afterAll(async () => app?.close());

    const readTenant = (tenant: string, token: string) => app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) });
    const tenantIdOf = async (tenant: string) => (await app.weft.directory.byName(tenant))!.id;
    const now = () => Math.floor(Date.now() / 1000);

    it("refuses a validly signed token whose jti has no token row", async () => {
      const { tenant } = await tenantWithToken(app, ["read"]);
      const forged = await app.weft.tokens.mint({
        tokenId: randomUUID(),
        tenantId: await tenantIdOf(tenant),
        scopes: ["admin"],
        expiresAt: now() + 600,
      });
      expect(expectProblem(await readTenant(tenant, forged), 401).detail).toBe("token invalid");
      // Asked again (the answer may be cached), still refused.
      expectProblem(await readTenant(tenant, forged), 401);
    });

    it("refuses a token claiming wider scopes, another tenant or a later expiry than its row", async () => {
      const { tenant, token } = await tenantWithToken(app, ["read"]);
      const other = await tenantWithToken(app, ["read"]);
      const claims = decodeJwt(token) as { jti: string; tid: number; exp: number };
      const sign = (c: Partial<{ tenantId: number; scopes: ("read" | "write" | "admin")[]; expiresAt: number }>) =>
        app.weft.tokens.mint({ tokenId: claims.jti, tenantId: claims.tid, scopes: ["read"], expiresAt: claims.exp, ...c });
      expect((await readTenant(tenant, await sign({}))).statusCode).toBe(200);
      expectProblem(await readTenant(tenant, await sign({ scopes: ["admin"] })), 401);
      expectProblem(await readTenant(other.tenant, await sign({ tenantId: await tenantIdOf(other.tenant) })), 401);
      expectProblem(await readTenant(tenant, await sign({ expiresAt: claims.exp + 60 })), 401);
    });

    it("refuses a token whose expiry exceeds the maximum lifetime, even with a valid signature and row", async () => {
      const { tenant, token } = await tenantWithToken(app, ["read"]);
      const claims = decodeJwt(token) as { jti: string; tid: number };
      const long = await app.weft.tokens.mint({ tokenId: claims.jti, tenantId: claims.tid, scopes: ["read"], expiresAt: now() + 10 * 365 * 86_400 });
      expect(expectProblem(await readTenant(tenant, long), 401).detail).toMatch(/maximum/);
    });

    it("caps what a mint may ask for at the maximum lifetime (422 naming body.ttlSeconds)", async () => {
      const { tenant } = await tenantWithToken(app, ["admin"]);
      const res = await app.inject({
        method: "POST",
        url: `/v1/tenants/${tenant}/tokens`,
        headers: operator,
        payload: { name: "long", scopes: ["read"], ttlSeconds: MAX_TTL + 1 },
      });
      expect(expectProblem(res, 422).errors).toEqual([{ field: "body.ttlSeconds", message: expect.stringMatching(/3600/) }]);
      // The default lifetime (30 days) is longer than this maximum: a mint without ttlSeconds gets the maximum.
      const dflt = await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: "dflt", scopes: ["read"] } });
      expect(dflt.statusCode).toBe(201);
      const { exp, iat } = decodeJwt(dflt.json().token) as { exp: number; iat: number };
      expect(exp - iat).toBeLessThanOrEqual(MAX_TTL);
      expect((await readTenant(tenant, dflt.json().token)).statusCode).toBe(200);
    });
  });
});
