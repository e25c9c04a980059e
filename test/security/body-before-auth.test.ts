import { connect } from "node:net";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";

// The guard authenticates and authorizes in onRequest: a stranger's body is
// never read into memory, let alone parsed (auth/guard.ts, http/json-body.ts).

/** About 1 MB of JSON nested as deep as it goes: the body that cost 0.15-0.5 s to parse before the 401. */
const DEEP = "[".repeat(500_000) + "]".repeat(500_000);

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

/** A POST over its own connection; the answer as soon as it comes, whatever became of the upload. */
function post(port: number, path: string, body: string, headers: Record<string, string> = {}, method = "POST"): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method, agent: false, headers: { "content-type": "application/json", ...headers } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode!, contentType: res.headers["content-type"], body: text }));
        res.on("error", reject);
      },
    );
    // The server may answer and close while the body is still going out: that is the point.
    req.on("error", (err) => reject(err));
    req.end(body);
  });
}

/**
 * Sends a request's headers announcing a 1 MB JSON body, and a few bytes of
 * it, and never the rest: resolves with the status line the server answers.
 * A guard that waited for the body would never answer (bounded here).
 */
function headersOnly(port: number, path: string, authorization?: string, method = "POST"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    const bound = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${path} ${authorization}: no answer while the body was withheld; got: ${JSON.stringify(received)}`));
    }, 15_000);
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => {
      received += c;
      const eol = received.indexOf("\r\n");
      if (eol !== -1) {
        clearTimeout(bound);
        socket.destroy();
        resolve(received.slice(0, eol));
      }
    });
    socket.on("error", (err) => {
      clearTimeout(bound);
      reject(err);
    });
    socket.write(
      [
        `${method} ${path} HTTP/1.1`,
        "host: 127.0.0.1",
        "content-type: application/json",
        `content-length: ${DEEP.length}`,
        ...(authorization ? [`authorization: ${authorization}`] : []),
        "",
        "[[[[",
      ].join("\r\n"),
    );
  });
}

describe.each(BACKENDS)("a stranger's body is never parsed, on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let port: number;
    let t: { tenant: string; token: string };
    beforeAll(async () => {
      app = await startApi(backend);
      t = await tenantWithToken(app, ["admin"]);
      await app.listen({ port: 0, host: "127.0.0.1" });
      port = (app.server.address() as { port: number }).port;
    });
    afterAll(async () => app?.close());

    it("answers 8 concurrent unauthenticated 1 MB deeply nested bodies with 401 without parsing any (nor an unrouted one)", async () => {
      const before = app.jsonBodyStats.parsed;
      const answers = await Promise.all([
        ...Array.from({ length: 4 }, () => post(port, "/v1/tenants", DEEP)),
        ...Array.from({ length: 2 }, () => post(port, "/v1/tenants", DEEP, bearer("garbage-token"))),
        ...Array.from({ length: 2 }, () => post(port, `/v1/tenants/${t.tenant}/identities/x`, DEEP, bearer(`${t.token}x`), "PUT")),
        // No route takes it: the 404 is answered before the body too.
        post(port, "/v1/no/such/route", DEEP),
      ]);
      expect(answers.pop()!.status).toBe(404);
      for (const a of answers) {
        expect(a.status, a.body.slice(0, 300)).toBe(401);
        expect(a.contentType).toMatch(/^application\/problem\+json/);
      }
      expect(app.jsonBodyStats.parsed - before).toBe(0);

      // The same body with the operator's token is read and parsed (and refused for its depth).
      const admitted = await post(port, "/v1/tenants", DEEP, operator);
      expect(admitted.status, admitted.body.slice(0, 300)).toBe(400);
      expect(admitted.contentType).toMatch(/^application\/problem\+json/);
      expect(app.jsonBodyStats.parsed - before).toBe(1);
    });

    it("answers 401, 403 and another tenant's 404 before the body has even been sent", async () => {
      expect(await headersOnly(port, "/v1/tenants")).toBe("HTTP/1.1 401 Unauthorized");
      expect(await headersOnly(port, "/v1/tenants", "Bearer nope-not-a-token")).toBe("HTTP/1.1 401 Unauthorized");
      // A tenant token on an operator route: 403; on another tenant's route: the 404 of a missing tenant.
      expect(await headersOnly(port, "/v1/tenants", `Bearer ${t.token}`)).toBe("HTTP/1.1 403 Forbidden");
      expect(await headersOnly(port, `/v1/tenants/${uniqueName("other")}/identities/x`, `Bearer ${t.token}`, "PUT")).toBe("HTTP/1.1 404 Not Found");
      expect(await headersOnly(port, "/v1/no/such/route")).toBe("HTTP/1.1 404 Not Found");

      // As before, a malformed tenant name is left to validation (400) once the token passes.
      const bad = await app.inject({ method: "PUT", url: "/v1/tenants/Not_A_Label/identities/x", headers: bearer(t.token), payload: { path: "/a" } });
      expectProblem(bad, 400);
      expectProblem(await app.inject({ method: "PUT", url: "/v1/tenants/Not_A_Label/identities/x", payload: { path: "/a" } }), 401);
    });

    it("refuses JSON nested deeper than 64 levels (400) or with more than 10,000 keys (413), as problems", async () => {
      const nested = (depth: number) => `{"name":"${uniqueName("d")}","labels":${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;
      const send = (payload: string) =>
        app.inject({ method: "POST", url: "/v1/tenants", headers: { ...operator, "content-type": "application/json" }, payload });
      const deep = expectProblem(await send(nested(65)), 400);
      expect(deep.detail).toMatch(/deeper than 64/);
      // 64 levels pass the parser and reach the schema (labels must be an object: a validation 400 naming it).
      const atLimit = expectProblem(await send(nested(64)), 400);
      expect(atLimit.errors?.map((e) => e.field)).toContain("body.labels");

      const keys = (n: number) => `{${Array.from({ length: n }, (_v, i) => `"k${i}":${i}`).join(",")}}`;
      const many = expectProblem(await send(keys(10_001)), 413);
      expect(many.detail).toMatch(/more than 10000 keys/);
      // 10,000 keys are parsed: the schema then refuses the unknown fields.
      expectProblem(await send(keys(10_000)), 400);
    });

    it("takes its limits from the configuration", async () => {
      const strict = await startApi(backend, { jsonMaxDepth: 3, jsonMaxKeys: 4 });
      try {
        const send = (payload: string) =>
          strict.inject({ method: "POST", url: "/v1/tenants", headers: { ...operator, "content-type": "application/json" }, payload });
        expect((await send(`{"name":"${uniqueName("c")}","labels":{"a":"b"}}`)).statusCode).toBe(201);
        expectProblem(await send(`{"name":"x","labels":{"a":[[1]]}}`), 400);
        expectProblem(await send(`{"name":"x","labels":{"a":"1","b":"2","c":"3"}}`), 413);
      } finally {
        await strict.close();
      }
    });
  });
});
