import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { putIntent, requireMatch } from "../../api/src/mesh/preconditions.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";

// RFC 9110 13.1.1: If-Match uses the strong comparison, so W/"n" matches nothing; If-None-Match stays weak.

describe("If-Match comparison", () => {
  it("never matches a weak tag, and still matches a strong one or *", () => {
    expect(() => requireMatch('"5"', 'W/"5"')).toThrow(/does not match/);
    expect(() => requireMatch('"5"', ' W/"5" , W/"6"')).toThrow(/does not match/);
    expect(() => requireMatch('"5"', '"5"')).not.toThrow();
    expect(() => requireMatch('"5"', 'W/"5", "5"')).not.toThrow();
    expect(() => requireMatch('"5"', "*")).not.toThrow();
    expect(() => putIntent('"5"', 'W/"5"')).toThrow(/does not match/);
    // If-None-Match compares weakly: a weak copy of the current tag still means "it exists".
    expect(() => putIntent('"5"', undefined, 'W/"5"')).toThrow(/If-None-Match/);
  });
});

describe.each(BACKENDS)("conditional requests on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it("answers a tenant PUT or DELETE whose If-Match is the weak form of the current ETag with 412", async () => {
      const name = uniqueName("weak");
      const created = await app.inject({ method: "PUT", url: `/v1/tenants/${name}`, headers: operator, payload: { displayName: "a" } });
      expect(created.statusCode).toBe(201);
      const etag = created.headers.etag as string;
      expect(etag).toMatch(/^"\d+"$/);

      const put = (ifMatch: string) =>
        app.inject({ method: "PUT", url: `/v1/tenants/${name}`, headers: { ...operator, "if-match": ifMatch }, payload: { displayName: "b" } });
      expectProblem(await put(`W/${etag}`), 412);
      expectProblem(await app.inject({ method: "DELETE", url: `/v1/tenants/${name}`, headers: { ...operator, "if-match": `W/${etag}` } }), 412);
      const unchanged = await app.inject({ url: `/v1/tenants/${name}`, headers: operator });
      expect(unchanged.json().displayName).toBe("a");
      expect(unchanged.headers.etag).toBe(etag);
      // A GET's If-None-Match compares weakly: the weak form still answers 304.
      expect((await app.inject({ url: `/v1/tenants/${name}`, headers: { ...operator, "if-none-match": `W/${etag}` } })).statusCode).toBe(304);

      const replaced = await put(`W/${etag}, ${etag}`);
      expect(replaced.statusCode).toBe(200);
      const deleted = await app.inject({ method: "DELETE", url: `/v1/tenants/${name}`, headers: { ...operator, "if-match": replaced.headers.etag as string } });
      expect(deleted.statusCode).toBe(204);
    });

    it("answers the same for a tenant's resources", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      const url = `/v1/tenants/${t.tenant}/identities/web`;
      const created = await app.inject({ method: "PUT", url, headers: bearer(t.token), payload: { path: "/ns/prod/sa/web" } });
      expect(created.statusCode, created.body).toBe(201);
      const etag = created.headers.etag as string;
      const weak = { ...bearer(t.token), "if-match": `W/${etag}` };
      expectProblem(await app.inject({ method: "PUT", url, headers: weak, payload: { path: "/ns/prod/sa/other" } }), 412);
      expectProblem(await app.inject({ method: "DELETE", url, headers: weak }), 412);
      expect((await app.inject({ url, headers: bearer(t.token) })).json().path).toBe("/ns/prod/sa/web");
      expect((await app.inject({ method: "DELETE", url, headers: { ...bearer(t.token), "if-match": etag } })).statusCode).toBe(204);
    });
  });
});
