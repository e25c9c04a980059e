import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { checkJsonText, DEFAULT_JSON_LIMITS } from "../../api/src/http/json-body.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";

// http/json-body.ts: duplicate keys and invalid UTF-8 answer 400, never "last key wins", never U+FFFD stored.

const json = { ...operator, "content-type": "application/json" };

describe("checkJsonText", () => {
  const refuses = (text: string) => {
    try {
      checkJsonText(text, DEFAULT_JSON_LIMITS);
    } catch (err) {
      return (err as { status: number; errors?: { field: string }[] });
    }
    return undefined;
  };

  it("finds duplicate keys at any depth, compared after unescaping, and names where", () => {
    expect(refuses('{"a":1,"a":2}')).toMatchObject({ status: 400, errors: [{ field: "body.a" }] });
    expect(refuses('{"a":1,"\\u0061":2}')).toMatchObject({ status: 400, errors: [{ field: "body.a" }] });
    expect(refuses('{"x":[{"b":1},{"b":1,"c":{"d":1,"d":1}}]}')).toMatchObject({ errors: [{ field: "body.x.1.c.d" }] });
    expect(refuses('{"a":"\\"a\\":1","b":{"a":2},"c":["a","a"]}')).toBeUndefined();
    expect(refuses('{"a\\\\":1,"a":2}')).toBeUndefined();
    expect(refuses('[{"a":1},{"a":1}]')).toBeUndefined();
  });

  it("refuses escapes of unpaired surrogates and __proto__ keys, and leaves paired ones alone", () => {
    expect(refuses('{"a":"\\ud800"}')).toMatchObject({ status: 400 });
    expect(refuses('{"a":"x\\uDC00y"}')).toMatchObject({ status: 400 });
    expect(refuses('{"\\ud83d":1}')).toMatchObject({ status: 400 });
    expect(refuses('{"a":"\\ud83d\\ude00"}')).toBeUndefined();
    expect(refuses('{"a":"\\\\ud800"}')).toBeUndefined();
    expect(refuses('{"__proto__":{"admin":true}}')).toMatchObject({ status: 400 });
  });
});

describe.each(BACKENDS)("JSON bodies on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let t: { tenant: string; token: string };
    beforeAll(async () => {
      app = await startApi(backend);
      t = await tenantWithToken(app, ["admin"]);
    });
    afterAll(async () => app?.close());

    const send = (method: "POST" | "PUT", url: string, payload: string | Buffer, headers: Record<string, string> = json) =>
      app.inject({ method, url, headers, payload });

    it("answers a duplicate key with 400 naming it, and writes nothing", async () => {
      const name = uniqueName("dup");
      const top = expectProblem(await send("POST", "/v1/tenants", `{"name":"${name}","name":"${uniqueName("other")}"}`), 400);
      expect(top.errors).toEqual([{ field: "body.name", message: "is a duplicate key" }]);
      const nested = expectProblem(await send("PUT", `/v1/tenants/${name}`, '{"labels":{"team":"a","team":"b"}}'), 400);
      expect(nested.errors).toEqual([{ field: "body.labels.team", message: "is a duplicate key" }]);
      const escaped = expectProblem(await send("PUT", `/v1/tenants/${name}`, '{"displayName":"a","display\\u004eame":"b"}'), 400);
      expect(escaped.errors?.[0]?.field).toBe("body.displayName");
      const identity = await send(
        "PUT",
        `/v1/tenants/${t.tenant}/identities/dup`,
        '{"path":"/ns/prod/sa/a","path":"/ns/prod/sa/b"}',
        { ...bearer(t.token), "content-type": "application/json" },
      );
      expectProblem(identity, 400);
      expectProblem(await app.inject({ url: `/v1/tenants/${name}`, headers: operator }), 404);

      // Malformed, empty and prototype-polluting bodies stay 400 problems.
      expectProblem(await send("POST", "/v1/tenants", '{"name":'), 400);
      expectProblem(await send("POST", "/v1/tenants", '{"name":"a"'), 400);
      expectProblem(await send("POST", "/v1/tenants", '{"name":"a}'), 400);
      expectProblem(await send("POST", "/v1/tenants", ""), 400);
      expectProblem(await send("POST", "/v1/tenants", `{"name":"${uniqueName("p")}","__proto__":{"x":1}}`), 400);
    });

    it("answers invalid UTF-8 with 400 and stores no U+FFFD, and keeps real non-ASCII text exactly", async () => {
      const name = uniqueName("utf");
      const body = (bytes: number[]) =>
        Buffer.concat([Buffer.from(`{"name":"${name}","displayName":"a`), Buffer.from(bytes), Buffer.from('b"}')]);
      // A stray continuation byte, a truncated sequence, an overlong '/', an encoded surrogate (CESU-8), past U+10FFFF.
      for (const bytes of [[0x80], [0xff], [0xe2, 0x82], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]) {
        const res = expectProblem(await send("POST", "/v1/tenants", body(bytes)), 400);
        expect(res.detail).toMatch(/UTF-8/);
      }
      // An escaped lone surrogate is valid JSON text but not a string Postgres can hold: U+FFFD again.
      expectProblem(await send("POST", "/v1/tenants", `{"name":"${name}","displayName":"a\\udc00b"}`), 400);
      expectProblem(await app.inject({ url: `/v1/tenants/${name}`, headers: operator }), 404);

      // Real non-ASCII text, escaped or not, is kept exactly.
      const displayName = "Zürich 東京 😀";
      const created = await send("POST", "/v1/tenants", Buffer.from(`{"name":"${name}","displayName":"Z\\u00fcrich 東京 \\ud83d\\ude00"}`));
      expect(created.statusCode, created.body).toBe(201);
      const got = await app.inject({ url: `/v1/tenants/${name}`, headers: operator });
      expect(got.json().displayName).toBe(displayName);
      expect(got.body).not.toContain("\ufffd");
      // A byte order mark is allowed in front, as before.
      const bom = await send("PUT", `/v1/tenants/${name}`, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"displayName":"b"}')]));
      expect(bom.statusCode, bom.body).toBe(200);
    });
  });
});
