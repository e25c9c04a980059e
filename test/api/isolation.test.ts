import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RouteEntry, WeftApp } from "../../api/src/app.ts";
import {
  BACKENDS,
  backendDatabase,
  bearer,
  expectProblem,
  operator,
  skipBackend,
  startApi,
  routeTable,
  tenantWithToken,
  uniqueName,
} from "../support/api.ts";
import { requestFor } from "../support/routes.ts";

const SCOPE_RANK = { read: 1, write: 2, admin: 3 } as const;

const routes = await routeTable();
const v1 = routes.filter((r) => r.url.startsWith("/v1/"));
const tenantRoutes = v1.filter((r) => r.auth?.who === "tenant");
const operatorRoutes = v1.filter((r) => r.auth?.who === "operator");
const narrowerThanAdmin = tenantRoutes.filter((r) => r.auth?.who === "tenant" && SCOPE_RANK[r.auth.scope] > SCOPE_RANK.read);
const label = (r: RouteEntry) => `${r.method} ${r.url}`;

describe("the route table", () => {
  it("gives every /v1 route an access rule and has tenant and operator routes to test", () => {
    expect(v1.filter((r) => !r.auth).map(label)).toEqual([]);
    expect(tenantRoutes.length).toBeGreaterThanOrEqual(6);
    expect(operatorRoutes.length).toBeGreaterThanOrEqual(4);
  });
});

describe.each(BACKENDS)("tenant isolation on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let own: { tenant: string; token: string };
    let foreign: { tenant: string; token: string };
    let reader: string;
    let expired: string;
    beforeAll(async () => {
      app = await startApi(backend);
      own = await tenantWithToken(app, ["admin"]);
      foreign = await tenantWithToken(app, ["admin"]);
      reader = (
        await app.inject({
          method: "POST",
          url: `/v1/tenants/${own.tenant}/tokens`,
          headers: operator,
          payload: { name: "reader", scopes: ["read"] },
        })
      ).json().token;
      const tenantId = (await app.weft.directory.byName(own.tenant))!.id;
      expired = await app.weft.tokens.mint({
        tokenId: randomUUID(),
        tenantId,
        scopes: ["admin"],
        expiresAt: Math.floor(Date.now() / 1000) - 60,
      });
    });
    afterAll(async () => app?.close());

    /** What a caller sees for a tenant that does not exist, less what differs by request. */
    const shape = (body: { detail?: string; instance?: string; requestId?: string }, name: string) => ({
      ...body,
      detail: body.detail?.replaceAll(name, "<tenant>"),
      instance: undefined,
      requestId: undefined,
    });

    it.each(tenantRoutes.map((r) => [label(r), r] as const))(
      "%s: another tenant's admin token gets the 404 of a missing tenant",
      async (_label, route) => {
        const res = await app.inject(requestFor(route, foreign.tenant, bearer(own.token)));
        const body = expectProblem(res, 404);
        const missingName = uniqueName("missing");
        const missing = expectProblem(await app.inject(requestFor(route, missingName, bearer(own.token))), 404);
        expect(shape(body, foreign.tenant)).toEqual(shape(missing, missingName));
        expect(Object.keys(res.headers).sort()).toEqual(
          Object.keys((await app.inject(requestFor(route, missingName, bearer(own.token)))).headers).sort(),
        );
      },
    );

    // Each route's six 401s come from an address of its own: failed authentications
    // are limited per address (WEFT_AUTH_FAILURE_LIMIT, 30 a minute by default).
    let strangers = 0;
    it.each(tenantRoutes.map((r) => [label(r), r] as const))("%s: no token, a garbage or expired one: 401", async (_label, route) => {
      const from = { remoteAddress: `192.0.2.${++strangers}` };
      const none = await app.inject({ ...requestFor(route, own.tenant, {}), ...from });
      expect(expectProblem(none, 401).detail).toBe("a bearer token is required");
      expect(none.headers["www-authenticate"]).toBe('Bearer realm="weft"');
      for (const headers of [bearer("garbage"), bearer("a.b.c"), { authorization: "Basic Zm9vOmJhcg==" }, bearer(expired)]) {
        const res = await app.inject({ ...requestFor(route, own.tenant, headers), ...from });
        expectProblem(res, 401);
        expect(res.headers["www-authenticate"]).toMatch(/^Bearer realm="weft", error="invalid_token", error_description="[^"]+"$/);
      }
      expect(expectProblem(await app.inject({ ...requestFor(route, own.tenant, bearer(expired)), ...from }), 401).detail).toBe("token expired");
    });

    it.each(narrowerThanAdmin.map((r) => [label(r), r] as const))("%s: a read token gets 403", async (_label, route) => {
      const body = expectProblem(await app.inject(requestFor(route, own.tenant, bearer(reader))), 403);
      expect(body.detail).toMatch(/needs the (write|admin) scope/);
    });

    it.each(operatorRoutes.map((r) => [label(r), r] as const))("%s: a tenant token gets 403, none 401", async (_label, route) => {
      expectProblem(await app.inject(requestFor(route, own.tenant, bearer(own.token))), 403);
      const res = await app.inject(requestFor(route, own.tenant, {}));
      expectProblem(res, 401);
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="weft"');
    });

    it("left both tenants as they were", async () => {
      for (const t of [own, foreign]) {
        expect((await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: bearer(t.token) })).statusCode).toBe(200);
      }
    });
  });
});
