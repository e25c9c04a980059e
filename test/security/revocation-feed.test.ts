import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, tenantWithToken, twoReplicas } from "../support/api.ts";

/** The poll is a minute away: only the change feed (LISTEN/NOTIFY) can explain a refusal within a second. */
const POLL_MS = 60_000;
const DEADLINE_MS = 1000;

async function statusWithin(request: () => Promise<{ statusCode: number }>, status: number): Promise<{ status: number; ms: number }> {
  const start = Date.now();
  let last = 0;
  while (Date.now() - start < DEADLINE_MS) {
    last = (await request()).statusCode;
    if (last === status) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return { status: last, ms: Date.now() - start };
}

describe.each(BACKENDS)("revocations through the change feed on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`two API replicas in process sharing ${backendDatabase(backend)}`, () => {
    let a: WeftApp;
    let b: WeftApp;
    let close: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      ({ a, b, close } = await twoReplicas(backend, { revocationPollMs: POLL_MS }));
    });
    afterAll(async () => close?.());

    const readTenant = (app: WeftApp, tenant: string, token: string) => app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) });

    it("reaches another replica at once when a token is revoked", async () => {
      const { tenant, token } = await tenantWithToken(a, ["read"]);
      expect((await readTenant(b, tenant, token)).statusCode).toBe(200);
      const { items } = (await a.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator })).json();
      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${items[0].id}`, headers: operator })).statusCode).toBe(204);
      expect((await statusWithin(() => readTenant(b, tenant, token), 401)).status).toBe(401);
      expect(expectProblem(await readTenant(b, tenant, token), 401).detail).toBe("token revoked");
    });

    it("reaches another replica at once when a token's parent is revoked", async () => {
      const { tenant } = await tenantWithToken(a, ["read"]);
      const parent = (await a.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: "p", scopes: ["admin"] } })).json();
      const child = (
        await a.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: bearer(parent.token), payload: { name: "c", scopes: ["read"] } })
      ).json();
      expect((await readTenant(b, tenant, child.token)).statusCode).toBe(200);
      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${parent.id}`, headers: operator })).statusCode).toBe(204);
      expect((await statusWithin(() => readTenant(b, tenant, child.token), 401)).status).toBe(401);
    });

    it("reaches another replica at once when the tenant is deleted", async () => {
      const { tenant, token } = await tenantWithToken(a, ["admin"]);
      expect((await readTenant(b, tenant, token)).statusCode).toBe(200);
      // Another tenant's read on b keeps its tenant cache warm; the token must be refused, not just its tenant missing.
      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${tenant}`, headers: operator })).statusCode).toBe(204);
      const other = await tenantWithToken(a, ["admin"]);
      expect((await statusWithin(() => b.inject({ url: `/v1/tenants/${other.tenant}`, headers: bearer(token) }), 401)).status).toBe(401);
    });
  });
});
