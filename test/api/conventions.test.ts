import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { DNS_LABEL_MESSAGE } from "../../api/src/http/schemas.ts";
import { BACKENDS, backendDatabase, expectProblem, operator, skipBackend, startApi, uniqueName } from "../support/api.ts";

describe.each(BACKENDS)("PUT/GET/DELETE conventions on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const put = (name: string, payload: object, headers: Record<string, string> = {}) =>
      app.inject({ method: "PUT", url: `/v1/tenants/${name}`, headers: { ...operator, ...headers }, payload });
    const get = (name: string, headers: Record<string, string> = {}) =>
      app.inject({ url: `/v1/tenants/${name}`, headers: { ...operator, ...headers } });

    it("answers a URL no route matches with 404, with or without a token", async () => {
      for (const headers of [{}, operator]) {
        for (const url of ["/v1/nothing-here", "/v1/tenants/acme/gadgets/x"]) {
          const res = await app.inject({ url, headers });
          expect(res.statusCode, url).toBe(404);
          expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
          expect(res.json().detail).toContain("no route for GET");
        }
      }
    });

    it("creates with 201 and replaces with 200, each with the ETag the GET then shows", async () => {
      const name = uniqueName("put");
      const created = await put(name, { displayName: "one" });
      expect(created.statusCode).toBe(201);
      const etag1 = created.headers.etag as string;
      expect(etag1).toMatch(/^"\d+"$/);
      expect(created.json()).toMatchObject({ name, displayName: "one", labels: {}, trustDomain: `${name}.test.weft`, etag: etag1 });
      expect((await get(name)).headers.etag).toBe(etag1);

      const replaced = await put(name, { displayName: "two", labels: { team: "a" } });
      expect(replaced.statusCode).toBe(200);
      const etag2 = replaced.headers.etag as string;
      expect(etag2).not.toBe(etag1);
      expect(replaced.json()).toMatchObject({ name, displayName: "two", labels: { team: "a" }, etag: etag2 });
      const read = await get(name);
      expect(read.statusCode).toBe(200);
      expect(read.headers.etag).toBe(etag2);
      expect(read.json()).toEqual(replaced.json());
    });

    it("refuses a PUT whose If-Match is not the current ETag with 412, and changes nothing", async () => {
      const name = uniqueName("ifm");
      const etag1 = (await put(name, { displayName: "one" })).headers.etag as string;
      const etag2 = (await put(name, { displayName: "two" }, { "if-match": etag1 })).headers.etag as string;
      expectProblem(await put(name, { displayName: "three" }, { "if-match": etag1 }), 412);
      expect((await get(name)).json()).toMatchObject({ displayName: "two", etag: etag2 });
      expectProblem(await put(uniqueName("absent"), {}, { "if-match": etag1 }), 412);
    });

    it("makes a PUT create-only with If-None-Match: *", async () => {
      const name = uniqueName("inm");
      expect((await put(name, { displayName: "first" }, { "if-none-match": "*" })).statusCode).toBe(201);
      const refused = expectProblem(await put(name, { displayName: "second" }, { "if-none-match": "*" }), 412);
      expect(refused.detail).toMatch(/exists/);
      expect((await get(name)).json()).toMatchObject({ displayName: "first" });
    });

    it("answers DELETE with 204 and a GET after it with 404; a DELETE with a stale If-Match is 412", async () => {
      const name = uniqueName("del");
      const etag1 = (await put(name, {})).headers.etag as string;
      await put(name, { displayName: "x" });
      expectProblem(await app.inject({ method: "DELETE", url: `/v1/tenants/${name}`, headers: { ...operator, "if-match": etag1 } }), 412);
      expect((await get(name)).statusCode).toBe(200);
      const deleted = await app.inject({ method: "DELETE", url: `/v1/tenants/${name}`, headers: operator });
      expect(deleted.statusCode).toBe(204);
      expect(deleted.body).toBe("");
      expect(expectProblem(await get(name), 404).detail).toBe(`tenant "${name}" not found`);
      expectProblem(await app.inject({ method: "DELETE", url: `/v1/tenants/${name}`, headers: operator }), 404);
    });

    it("answers a GET carrying the current ETag in If-None-Match with 304 and no body", async () => {
      const name = uniqueName("cond");
      const etag1 = (await put(name, {})).headers.etag as string;
      const notModified = await get(name, { "if-none-match": etag1 });
      expect(notModified.statusCode).toBe(304);
      expect(notModified.body).toBe("");
      expect(notModified.headers.etag).toBe(etag1);
      const etag2 = (await put(name, { displayName: "new" })).headers.etag as string;
      const fresh = await get(name, { "if-none-match": etag1 });
      expect(fresh.statusCode).toBe(200);
      expect(fresh.headers.etag).toBe(etag2);
    });

    it("answers errors as problem+json naming each bad field, with the DNS-label message", async () => {
      const res = await app.inject({
        method: "POST",
        url: "/v1/tenants",
        headers: operator,
        payload: { name: "Bad_Name", colour: "red" },
      });
      const body = expectProblem(res, 400);
      expect(body.title).toBe("Bad Request");
      expect(body.instance).toBe("/v1/tenants");
      expect(body.errors).toEqual(
        expect.arrayContaining([
          { field: "body.name", message: DNS_LABEL_MESSAGE },
          { field: "body.colour", message: "is not a known field" },
        ]),
      );
      expect(body.errors).toHaveLength(2);
      expect(body.detail).toMatch(/^invalid request: (body\.name, body\.colour|body\.colour, body\.name)$/);
    });

    it("bounds label keys and values", async () => {
      const name = uniqueName("lbl");
      const longKey = expectProblem(await put(name, { labels: { ["k".repeat(64)]: "v" } }), 400);
      expect(longKey.errors).toContainEqual({ field: "body.labels", message: expect.stringMatching(/property name/) });
      expectProblem(await put(name, { labels: { k: "v".repeat(254) } }), 400);
      expectProblem(await get(name), 404);
      expect((await put(name, { labels: { ["k".repeat(63)]: "v".repeat(253) } })).statusCode).toBe(201);
    });

    it("checks names in the path as DNS labels too", async () => {
      for (const bad of ["UPPER", "-lead", "trail-", "a".repeat(64), "under_score"]) {
        const body = expectProblem(await get(bad), 400);
        expect(body.errors).toContainEqual({ field: "path.tenant", message: DNS_LABEL_MESSAGE });
      }
      const missing = expectProblem(await app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: {} }), 400);
      expect(missing.errors).toEqual([{ field: "body.name", message: "is required" }]);
    });

    it("puts the server's own request id on every response, whatever the client sent", async () => {
      const answers = await Promise.all([
        app.inject("/healthz"),
        app.inject("/no/such/route"),
        app.inject({ url: "/v1/tenants" }),
        app.inject({ url: "/v1/tenants?limit=0", headers: operator }),
        app.inject({ url: "/v1/tenants", headers: operator }),
      ]);
      const ids = answers.map((r) => r.headers["x-request-id"]);
      for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(new Set(ids).size).toBe(ids.length);

      // A client's id is never taken as the request's (test/security/request-id.test.ts: it is logged beside it).
      const sent = await app.inject({ url: "/healthz", headers: { "x-request-id": "client-req.42:a_b" } });
      expect(sent.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      const problem = expectProblem(await app.inject({ url: "/v1/tenants", headers: { "x-request-id": "trace-7" } }), 401);
      expect(problem.requestId).toMatch(/^[0-9a-f-]{36}$/);
      for (const bad of ["has space", "x".repeat(129), "semi;colon"]) {
        const replaced = await app.inject({ url: "/healthz", headers: { "x-request-id": bad } });
        expect(replaced.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      }
    });
  });
});
