import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { installErrorHandling } from "../../api/src/http/error-handler.ts";
import { buildValidator, nonFinitePath } from "../../api/src/http/validation.ts";
import { BACKENDS, backendDatabase, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

describe.each(BACKENDS)("numbers that coerce to Infinity on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it.each(["9".repeat(600), "1e400", "Infinity"])("answers 400 naming query.limit for limit=%s", async (limit) => {
      const res = await app.inject({ url: `/v1/tenants?limit=${limit}`, headers: operator });
      expectProblem(res, 400);
      expect(res.json().errors).toEqual([{ field: "query.limit", message: "must be a finite number" }]);
    });

    it.each(["1e400", "-1e400", "9".repeat(600)])("answers 400 naming body.ttlSeconds for a JSON number %s, and mints nothing", async (n) => {
      const { tenant } = await tenantWithToken(app, ["admin"]);
      const res = await app.inject({
        method: "POST",
        url: `/v1/tenants/${tenant}/tokens`,
        headers: { ...operator, "content-type": "application/json" },
        payload: `{"name":"big","scopes":["read"],"ttlSeconds":${n}}`,
      });
      expect(expectProblem(res, 400).errors?.map((e) => e.field)).toEqual(["body.ttlSeconds"]);
      const list = await app.inject({ url: `/v1/tenants/${tenant}/tokens`, headers: operator });
      expect(list.json().items.map((t: { name: string }) => t.name)).not.toContain("big");
    });
  });
});

describe("the validator refuses non-finite numbers in every part", () => {
  // ajv keeps a body's number and integer fields finite; coercion (query strings) and
  // fields of no type (Type.Unknown) are where Infinity can get past it.
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify({
      ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: true } },
      schemaController: { compilersFactory: { buildValidator } },
    });
    installErrorHandling(app);
    const n = Type.Object({ x: Type.Number() }, { additionalProperties: false });
    const body = Type.Object({ a: Type.Array(n), any: Type.Optional(Type.Unknown()) });
    app.post("/n", { schema: { body, querystring: n } }, async (request) => request.body);
    await app.ready();
  });
  afterAll(async () => app?.close());
  const post = (query: string, payload: string) =>
    app.inject({ method: "POST", url: `/n?${query}`, headers: { "content-type": "application/json" }, payload });

  it("in a body, naming the field as it lies", async () => {
    const typed = await post("x=1", '{"a":[{"x":1},{"x":1e400}]}');
    expect(typed.statusCode).toBe(400);
    expect(typed.json().errors).toEqual([{ field: "body.a.1.x", message: "must be number" }]);
    const untyped = await post("x=1", '{"a":[],"any":{"deep":[0,-1e400]}}');
    expect(untyped.statusCode).toBe(400);
    expect(untyped.json().errors).toEqual([{ field: "body.any.deep.1", message: "must be a finite number" }]);
  });

  it("in a query string", async () => {
    const res = await post("x=-1e400", '{"a":[]}');
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: "query.x", message: "must be a finite number" }]);
  });

  it("lets finite numbers through, and bodies keep their JSON types", async () => {
    expect((await post("x=2.5", '{"a":[{"x":-0.5}]}')).json()).toEqual({ a: [{ x: -0.5 }] });
    const res = await post("x=2.5", '{"a":[{"x":"1"}]}');
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: "body.a.0.x", message: "must be number" }]);
  });

  it("finds the path of the first non-finite number", () => {
    expect(nonFinitePath({ a: [1, { b: Number.NEGATIVE_INFINITY }] })).toBe("/a/1/b");
    expect(nonFinitePath(Number.NaN)).toBe("");
    expect(nonFinitePath({ a: "Infinity", b: [1, 2] })).toBeNull();
  });
});
