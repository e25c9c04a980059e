import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import {
  BACKENDS,
  backendDatabase,
  bearer,
  currentRevision,
  expectProblem,
  operator,
  skipBackend,
  startApi,
  tenantWithToken,
  uniqueName,
} from "../support/api.ts";

describe.each(BACKENDS)("?dryRun=true on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let tenant: string;
    let admin: string;
    beforeAll(async () => {
      app = await startApi(backend);
      ({ tenant, token: admin } = await tenantWithToken(app, ["admin"]));
    });
    afterAll(async () => app?.close());

    /** Everything a write could leave behind that a client can see. */
    const snapshot = async () => ({
      revision: await currentRevision(app),
      tenant: (await app.inject({ url: `/v1/tenants/${tenant}`, headers: operator })).body,
      tokens: (await app.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator })).json(),
      audit: (await app.inject({ url: `/v1/tenants/${tenant}/audit`, headers: operator })).json(),
      changes: (await app.inject({ url: `/v1/tenants/${tenant}/changes`, headers: operator })).json(),
    });

    /** Runs a dry-run request and checks that nothing at all changed. */
    async function dry(opts: InjectOptions) {
      const before = await snapshot();
      const res = await app.inject(opts);
      expect(await snapshot()).toEqual(before);
      return res;
    }

    it("POST /v1/tenants answers the tenant it would create and creates nothing", async () => {
      const name = uniqueName("dry");
      const res = await dry({ method: "POST", url: "/v1/tenants?dryRun=true", headers: operator, payload: { name, displayName: "D" } });
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({ name, displayName: "D", trustDomain: `${name}.test.weft` });
      expectProblem(await app.inject({ url: `/v1/tenants/${name}`, headers: operator }), 404);
      // Still validated and still checked against what exists.
      expectProblem(await dry({ method: "POST", url: "/v1/tenants?dryRun=true", headers: operator, payload: { name: "X" } }), 400);
      expectProblem(await dry({ method: "POST", url: "/v1/tenants?dryRun=true", headers: operator, payload: { name: tenant } }), 409);
    });

    it("PUT creates or replaces nothing, answering 201 or 200 as the real write would", async () => {
      const name = uniqueName("dry");
      const create = await dry({ method: "PUT", url: `/v1/tenants/${name}?dryRun=true`, headers: operator, payload: {} });
      expect(create.statusCode).toBe(201);
      expectProblem(await app.inject({ url: `/v1/tenants/${name}`, headers: operator }), 404);

      const replace = await dry({
        method: "PUT",
        url: `/v1/tenants/${tenant}?dryRun=true`,
        headers: operator,
        payload: { displayName: "would be" },
      });
      expect(replace.statusCode).toBe(200);
      expect(replace.json()).toMatchObject({ name: tenant, displayName: "would be" });
      const current = await app.inject({ url: `/v1/tenants/${tenant}`, headers: operator });
      expect(current.json().displayName).toBe("");

      const stale = await dry({
        method: "PUT",
        url: `/v1/tenants/${tenant}?dryRun=true`,
        headers: { ...operator, "if-match": '"0"' }, // no write ever takes revision 0
        payload: {},
      });
      expectProblem(stale, 412);
    });

    it("DELETE of a tenant deletes nothing and revokes none of its tokens", async () => {
      const res = await dry({ method: "DELETE", url: `/v1/tenants/${tenant}?dryRun=true`, headers: operator });
      expect(res.statusCode).toBe(204);
      expect((await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(admin) })).statusCode).toBe(200);
      expectProblem(await dry({ method: "DELETE", url: `/v1/tenants/${uniqueName("none")}?dryRun=true`, headers: operator }), 404);
    });

    it("POST of a token answers its metadata without a usable secret and mints nothing", async () => {
      const res = await dry({
        method: "POST",
        url: `/v1/tenants/${tenant}/tokens?dryRun=true`,
        headers: bearer(admin),
        payload: { name: "ci", scopes: ["read"], ttlSeconds: 3600 },
      });
      expect(res.statusCode).toBe(201);
      const body = res.json();
      expect(body).toMatchObject({ name: "ci", scopes: ["read"], createdBy: expect.stringMatching(/^token:/) });
      expect(body.token).toBeUndefined();
      expectProblem(await app.inject({ url: `/v1/tenants/${tenant}/tokens/${body.id}`, headers: operator }), 404);
    });

    it("DELETE of a token keeps it working", async () => {
      const { id } = (await app.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator })).json().items[0];
      const res = await dry({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${id}?dryRun=true`, headers: operator });
      expect(res.statusCode).toBe(204);
      expect((await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(admin) })).statusCode).toBe(200);
      const missing = "00000000-0000-4000-8000-000000000000";
      expectProblem(await dry({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${missing}?dryRun=true`, headers: operator }), 404);
    });

    it("refuses a misspelt dryRun instead of writing for real", async () => {
      const name = uniqueName("typo");
      const res = await dry({ method: "POST", url: "/v1/tenants?dryrun=true", headers: operator, payload: { name } });
      expect(expectProblem(res, 400).errors).toEqual([{ field: "query.dryrun", message: "is not a known field" }]);
      expectProblem(await app.inject({ url: `/v1/tenants/${name}`, headers: operator }), 404);
    });
  });
});
