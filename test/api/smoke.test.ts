import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

describe.each(BACKENDS)("smoke on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it("answers health and readiness", async () => {
      expect((await app.inject("/healthz")).json()).toEqual({ status: "ok" });
      expect((await app.inject("/readyz")).statusCode).toBe(200);
    });

    it("lets a tenant read token read its own tenant and nobody else's", async () => {
      const a = await tenantWithToken(app, ["read"]);
      const b = await tenantWithToken(app, ["read"]);
      const own = await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: bearer(a.token) });
      expect(own.statusCode).toBe(200);
      const foreign = await app.inject({ url: `/v1/tenants/${b.tenant}`, headers: bearer(a.token) });
      const missing = await app.inject({ url: `/v1/tenants/no-such-tenant`, headers: operator });
      expect(foreign.statusCode).toBe(404);
      expect(missing.statusCode).toBe(404);
    });
  });
});
