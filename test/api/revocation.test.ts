import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, tenantWithToken, twoReplicas } from "../support/api.ts";

const POLL_MS = 200;
/** The bound the README promises is a few poll intervals; the test allows 3 s. */
const DEADLINE_MS = 3000;

/** Polls until the request answers `status`, or the deadline passes; returns the last status seen. */
async function eventually(request: () => Promise<{ statusCode: number }>, status: number): Promise<number> {
  const end = Date.now() + DEADLINE_MS;
  let last = 0;
  while (Date.now() < end) {
    last = (await request()).statusCode;
    if (last === status) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  return last;
}

describe.each(BACKENDS)("revocation on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`two API replicas in process sharing ${backendDatabase(backend)}`, () => {
    let a: WeftApp;
    let b: WeftApp;
    let close: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      ({ a, b, close } = await twoReplicas(backend, { revocationPollMs: POLL_MS }));
    });
    afterAll(async () => close?.());

    const readTenant = (app: WeftApp, tenant: string, token: string) =>
      app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) });

    it("refuses a revoked token at once on the replica that revoked it and within the bound on another", async () => {
      const { tenant, token } = await tenantWithToken(a, ["read"]);
      // Both replicas have verified and cached it.
      expect((await readTenant(a, tenant, token)).statusCode).toBe(200);
      expect((await readTenant(b, tenant, token)).statusCode).toBe(200);
      const { items } = (await a.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator })).json();
      const revoke = await a.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${items[0].id}`, headers: operator });
      expect(revoke.statusCode).toBe(204);

      const here = await readTenant(a, tenant, token);
      expect(expectProblem(here, 401).detail).toBe("token revoked");
      expect(here.headers["www-authenticate"]).toMatch(/^Bearer realm="weft", error="invalid_token"/);
      expect(await eventually(() => readTenant(b, tenant, token), 401)).toBe(401);
      expect(expectProblem(await readTenant(b, tenant, token), 401).detail).toBe("token revoked");
    });

    it("revokes every token of a deleted tenant, on both replicas", async () => {
      const { tenant, token } = await tenantWithToken(a, ["admin"]);
      expect((await readTenant(b, tenant, token)).statusCode).toBe(200);
      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${tenant}`, headers: operator })).statusCode).toBe(204);
      expect(expectProblem(await readTenant(a, tenant, token), 401).detail).toBe("token revoked");
      expect(await eventually(() => readTenant(b, tenant, token), 401)).toBe(401);
    });

    it("lets a tenant token mint no wider than its own scopes and only for its own tenant", async () => {
      const { tenant, token: admin } = await tenantWithToken(a, ["admin"]);
      const other = await tenantWithToken(a, ["admin"]);
      const mint = (t: string, token: string, scopes: string[]) =>
        a.inject({ method: "POST", url: `/v1/tenants/${t}/tokens`, headers: bearer(token), payload: { name: "m", scopes } });

      const reader = await mint(tenant, admin, ["read"]);
      expect(reader.statusCode).toBe(201);
      const readToken = reader.json().token as string;
      expect(expectProblem(await mint(tenant, readToken, ["admin"]), 403).detail).toMatch(/admin scope/);
      expect(expectProblem(await mint(tenant, readToken, ["read"]), 403).detail).toMatch(/admin scope/);
      expect(expectProblem(await mint(other.tenant, admin, ["read"]), 404).detail).toBe(`tenant "${other.tenant}" not found`);

      // A token it minted works for its own tenant only.
      const minted = await mint(tenant, admin, ["admin", "read"]);
      expect(minted.statusCode).toBe(201);
      expect((await readTenant(b, tenant, minted.json().token)).statusCode).toBe(200);
      expect((await readTenant(b, other.tenant, minted.json().token)).statusCode).toBe(404);
    });
  });
});
