import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { MintLimiter } from "../../api/src/auth/tenant-tokens.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";

describe.each(BACKENDS)("token mints racing a tenant delete on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it("answers every mint 201, 404 or 409, never 500, and no minted token outlives the tenant", async () => {
      for (let round = 0; round < 2; round++) {
        const tenant = uniqueName("race");
        expect((await app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name: tenant } })).statusCode).toBe(201);
        const mints = Array.from({ length: 30 }, (_, i) =>
          app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: `m${i}`, scopes: ["read"] } }),
        );
        const del = app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}`, headers: operator });
        const answers = await Promise.all([...mints, del]);
        const deleted = answers.pop()!;
        expect(deleted.statusCode).toBe(204);
        for (const res of answers) {
          expect([201, 404, 409], res.body).toContain(res.statusCode);
          if (res.statusCode !== 201) expectProblem(res, res.statusCode);
        }
        for (const res of answers.filter((r) => r.statusCode === 201)) {
          expectProblem(await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(res.json().token) }), 401);
        }
      }
    });
  });
});

describe.each(BACKENDS)("token mint rate limit on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend, { tokenMintLimit: 3 });
    });
    afterAll(async () => app?.close());

    const mint = (tenant: string, auth: Record<string, string>, query = "") =>
      app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens${query}`, headers: auth, payload: { name: "m", scopes: ["read"] } });

    it("answers a tenant token's mints 429 with Retry-After past tokenMintLimit per tenant per minute, tenant by tenant", async () => {
      const { tenant, token } = await tenantWithToken(app, ["admin"]);
      for (let i = 0; i < 3; i++) expect((await mint(tenant, bearer(token))).statusCode).toBe(201);
      const res = await mint(tenant, bearer(token));
      expect(expectProblem(res, 429).detail).toMatch(/3 per minute/);
      const retryAfter = Number(res.headers["retry-after"]);
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, String(res.headers["retry-after"])).toBe(true);
      // A dry run answers what the mint would answer.
      expectProblem(await mint(tenant, bearer(token), "?dryRun=true"), 429);
      // The operator is not limited; other tenants' tokens are not affected.
      expect((await mint(tenant, operator)).statusCode).toBe(201);
      const other = await tenantWithToken(app, ["admin"]);
      expect((await mint(other.tenant, bearer(other.token))).statusCode).toBe(201);
    });
  });
});

describe("the mint limiter", () => {
  it("admits `limit` per key per window and stays bounded in memory", () => {
    let now = 0;
    const limiter = new MintLimiter(2, 60_000, () => now, 100);
    expect(limiter.take("a")).toBe(0);
    expect(limiter.take("a")).toBe(0);
    expect(limiter.take("a")).toBe(60);
    now = 30_000;
    expect(limiter.take("a")).toBe(30);
    now = 60_000;
    expect(limiter.take("a")).toBe(0);
    for (let i = 0; i < 10_000; i++) limiter.take(`t${i}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });
});
