import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { eq } from "drizzle-orm";
import { httpRoutes } from "../../api/src/db/schema.ts";
import { read } from "../../api/src/db/transactions.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { expectAuditedAndLogged, expectResourceConventions, expectTenantWalls, identity, mustPut, putResource, readToken, refusedUnwritten, tenantChanges } from "../support/mesh.ts";

const WEB_PORTS = [
  { port: 80, protocol: "tcp", targetPort: 8080 },
  { port: 8443, protocol: "tcp", targetPort: 8443 },
  { port: 53, protocol: "udp", targetPort: 53 },
];

/** A 90/10 canary with a header match, a retry, timeouts and filters: every part of a rule. */
const canary = (parent: string) => ({
  parentRefs: [{ name: parent, port: 80 }],
  rules: [
    {
      matches: [{ headers: [{ name: "x-canary", value: "1" }] }],
      backendRefs: [{ labels: { version: "v2" } }],
    },
    {
      matches: [{ path: { type: "PathPrefix", value: "/api" }, method: "GET" }],
      backendRefs: [
        { labels: { version: "v1" }, weight: 90 },
        { labels: { version: "v2" }, weight: 10 },
      ],
      filters: [
        { type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-env", value: "prod" }], remove: ["x-debug"] } },
        { type: "ResponseHeaderModifier", responseHeaderModifier: { add: [{ name: "cache-control", value: "no-store" }] } },
      ],
      timeouts: { request: "2s", backendRequest: "500ms" },
      retry: { attempts: 2, on: ["connect-failure", "gateway-error"] },
    },
  ],
});

describe.each(BACKENDS)("httpRoutes on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let reader: { token: string };
    let b: { tenant: string; token: string };
    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["admin"]);
      reader = { token: await readToken(app, a) };
      b = await tenantWithToken(app, ["admin"]);
      for (const t of [a, b]) {
        await identity(app, t.token, t.tenant, "web", { app: "web" });
        await mustPut(app, t.token, t.tenant, "services/web", { ports: WEB_PORTS, backends: { selector: { identity: "web" } } });
      }
      await mustPut(app, a.token, a.tenant, "services/dns", { ports: [{ port: 53, protocol: "udp", targetPort: 53 }], backends: { selector: { identity: "web" } } });
    });
    afterAll(async () => app?.close());

    const url = (t: { tenant: string }, name: string) => `/v1/tenants/${t.tenant}/httpRoutes/${name}`;

    /** A request that must be refused with this status, naming `field`, with nothing written in either tenant. */
    const refused = (res: Promise<LightMyRequestResponse>, status: number, field?: string) => refusedUnwritten(app, [a.tenant, b.tenant], res, status, field);

    it("creates, reads, replaces, lists and deletes a route with the resource conventions", async () => {
      await expectResourceConventions(app, { ...a, readToken: reader.token }, "httpRoutes", [
        { name: "shop", spec: canary("web"), replacement: { parentRefs: [{ name: "web" }], rules: [{ backendRefs: [{ labels: { version: "v1" } }] }] } },
        { name: "admin", spec: { parentRefs: [{ name: "web", port: 8443 }], rules: [{ backendRefs: [{}] }] } },
      ]);
    });

    it("audits each write and logs it as a change, so the compiler and agents follow it", async () => {
      await expectAuditedAndLogged(app, a, "httpRoutes", "httpRoute", "logged", canary("web"));
    });

    it("a dry run checks everything and writes nothing", async () => {
      const before = await tenantChanges(app, a.tenant);
      const dry = await putResource(app, a.token, a.tenant, "httpRoutes/dry", canary("web"), { query: { dryRun: "true" } });
      expect(dry.statusCode, dry.body).toBe(201);
      expect(dry.json()).toMatchObject({ name: "dry", parentRefs: [{ name: "web", port: 80 }] });
      expect(await tenantChanges(app, a.tenant)).toBe(before);
      expectProblem(await app.inject({ url: url(a, "dry"), headers: bearer(a.token) }), 404);
      // Refusals are the same as the real write's.
      await refused(putResource(app, a.token, a.tenant, "httpRoutes/dry", canary("nowhere"), { query: { dryRun: "true" } }), 422, "body.parentRefs.0.name");
      // A dry-run delete leaves the route, and the service it names.
      await mustPut(app, a.token, a.tenant, "httpRoutes/kept", canary("web"));
      const deleted = await app.inject({ method: "DELETE", url: `${url(a, "kept")}?dryRun=true`, headers: bearer(a.token) });
      expect(deleted.statusCode).toBe(204);
      expect((await app.inject({ url: url(a, "kept"), headers: bearer(a.token) })).statusCode).toBe(200);
      expect((await app.inject({ method: "DELETE", url: url(a, "kept"), headers: bearer(a.token) })).statusCode).toBe(204);
    });

    describe("access", () => {
      it("a read token reads but cannot write; another tenant can neither read, list, replace nor delete them: 404, as if they did not exist", async () => {
        await expectTenantWalls(app, { ...a, readToken: reader.token }, b, "httpRoutes", "private", canary("web"));
      });

      it("row-level security is the second wall: a transaction bound to A reads none of B's routes, and cannot write one for B", async () => {
        await mustPut(app, b.token, b.tenant, "httpRoutes/b-only", canary("web"));
        const [aId, bId] = [(await app.weft.directory.byName(a.tenant))!.id, (await app.weft.directory.byName(b.tenant))!.id];
        const seen = await read(app.weft.db, aId, (tx) => tx.select({ tenantId: httpRoutes.tenantId }).from(httpRoutes));
        expect(seen.length).toBeGreaterThan(0);
        expect(seen.every((r) => r.tenantId === aId)).toBe(true);
        const forged = read(app.weft.db, aId, (tx) => tx.insert(httpRoutes).values({ tenantId: bId, name: "forged", parentRefs: [{ name: "web" }], rules: [], revision: 1 }));
        await expect(forged).rejects.toThrow();
        expect((await app.inject({ method: "DELETE", url: url(b, "b-only"), headers: bearer(b.token) })).statusCode).toBe(204);
      });

      it("a route names services of its own tenant only: another tenant's reads exactly like one that does not exist", async () => {
        await mustPut(app, b.token, b.tenant, "services/only-b", { ports: [{ port: 80, protocol: "tcp", targetPort: 80 }], backends: { selector: {} } });
        const theirs = await refused(putResource(app, a.token, a.tenant, "httpRoutes/steal", canary("only-b")), 422, "body.parentRefs.0.name");
        const nowhere = await refused(putResource(app, a.token, a.tenant, "httpRoutes/steal", canary("no-such")), 422, "body.parentRefs.0.name");
        expect(theirs.detail).toBe('service "only-b" does not exist in this tenant');
        expect(nowhere.detail).toBe('service "no-such" does not exist in this tenant');
        expect(theirs.errors).toEqual([{ field: "body.parentRefs.0.name", message: 'no service "only-b" in this tenant' }]);
      });
    });

    it("go with their tenant", async () => {
      const c = await tenantWithToken(app, ["admin"]);
      await identity(app, c.token, c.tenant, "web");
      await mustPut(app, c.token, c.tenant, "services/web", { ports: WEB_PORTS, backends: { selector: { identity: "web" } } });
      await mustPut(app, c.token, c.tenant, "httpRoutes/doomed", canary("web"));
      const id = (await app.weft.directory.byName(c.tenant))!.id;
      expect(await app.weft.db.select({ name: httpRoutes.name }).from(httpRoutes).where(eq(httpRoutes.tenantId, id))).toEqual([{ name: "doomed" }]);
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${c.tenant}`, headers: operator })).statusCode).toBe(204);
      expect(await app.weft.db.select({ name: httpRoutes.name }).from(httpRoutes).where(eq(httpRoutes.tenantId, id))).toEqual([]);
    });

    describe("bad input is refused with a problem naming the field, and writes nothing", () => {
      /** A one-rule route on web:80 with the rule's fields replaced. */
      const withRule = (rule: Record<string, unknown>) => ({ parentRefs: [{ name: "web", port: 80 }], rules: [{ backendRefs: [{}], ...rule }] });
      const put = (spec: unknown) => putResource(app, a.token, a.tenant, "httpRoutes/bad", spec);

      it("parents that are no tcp port of a service of the tenant (422)", async () => {
        await refused(put({ ...withRule({}), parentRefs: [{ name: "web", port: 53 }] }), 422, "body.parentRefs.0.port");
        await refused(put({ ...withRule({}), parentRefs: [{ name: "web", port: 81 }] }), 422, "body.parentRefs.0.port");
        await refused(put({ ...withRule({}), parentRefs: [{ name: "dns" }] }), 422, "body.parentRefs.0.name");
        await refused(put({ ...withRule({}), parentRefs: [{ name: "web" }, { name: "dns", port: 53 }] }), 422, "body.parentRefs.1.name");
      });

      it("a service or port named twice in one route (400)", async () => {
        await refused(put({ ...withRule({}), parentRefs: [{ name: "web", port: 80 }, { name: "web", port: 80 }] }), 400, "body.parentRefs.1");
        await refused(put({ ...withRule({}), parentRefs: [{ name: "web", port: 80 }, { name: "web" }] }), 400, "body.parentRefs.1");
        // Two ports of one service are two parents.
        const two = await put({ ...withRule({}), parentRefs: [{ name: "web", port: 80 }, { name: "web", port: 8443 }] });
        expect(two.statusCode, two.body).toBe(201);
        expect((await app.inject({ method: "DELETE", url: url(a, "bad"), headers: bearer(a.token) })).statusCode).toBe(204);
      });

      it("timeouts: a backend request longer than the request, or over an hour (400); 0s is none, as in the Gateway API", async () => {
        await refused(put(withRule({ timeouts: { request: "1s", backendRequest: "1500ms" } })), 400, "body.rules.0.timeouts.backendRequest");
        await refused(put(withRule({ timeouts: { request: "1m", backendRequest: "1m1s" } })), 400, "body.rules.0.timeouts.backendRequest");
        await refused(put(withRule({ timeouts: { request: "1h1ms" } })), 400, "body.rules.0.timeouts.request");
        await refused(put(withRule({ timeouts: { backendRequest: "61m" } })), 400, "body.rules.0.timeouts.backendRequest");
        await refused(put(withRule({ timeouts: { request: "soon" } })), 400, "body.rules.0.timeouts.request");
        // Equal is allowed, an hour is the most, and a request with no timeout of its own bounds no attempt.
        for (const timeouts of [{ request: "1h", backendRequest: "60m" }, { request: "0s", backendRequest: "5s" }, { request: "2s", backendRequest: "0ms" }]) {
          const taken = await put(withRule({ timeouts }));
          expect(taken.statusCode, taken.body).toBe(201);
          expect((await app.inject({ method: "DELETE", url: url(a, "bad"), headers: bearer(a.token) })).statusCode).toBe(204);
        }
      });

      it("a retry without attempts, or with an unknown condition (400)", async () => {
        await refused(put(withRule({ retry: { nonIdempotent: true } })), 400, "body.rules.0.retry.attempts");
        await refused(put(withRule({ retry: { attempts: 6 } })), 400, "body.rules.0.retry.attempts");
        await refused(put(withRule({ retry: { attempts: 1, on: ["always"] } })), 400);
      });

      it("a header named twice in one modifier, across set, add and remove and in any case (400)", async () => {
        const modifier = (m: Record<string, unknown>) => withRule({ filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: m }] });
        const at = "body.rules.0.filters.0.requestHeaderModifier";
        await refused(put(modifier({ set: [{ name: "x-a", value: "1" }, { name: "X-A", value: "2" }] })), 400, `${at}.set.1.name`);
        await refused(put(modifier({ set: [{ name: "x-a", value: "1" }], add: [{ name: "x-a", value: "2" }] })), 400, `${at}.add.0.name`);
        await refused(put(modifier({ add: [{ name: "x-a", value: "1" }], remove: ["X-a"] })), 400, `${at}.remove.0`);
        await refused(put(modifier({ remove: ["x-a", "x-a"] })), 400, `${at}.remove.1`);
        // Two modifiers of one kind in a rule would be merged by guesswork: refused too.
        const twice = withRule({
          filters: [
            { type: "ResponseHeaderModifier", responseHeaderModifier: { set: [{ name: "x-a", value: "1" }] } },
            { type: "ResponseHeaderModifier", responseHeaderModifier: { set: [{ name: "x-b", value: "1" }] } },
          ],
        });
        await refused(put(twice), 400, "body.rules.0.filters.1.type");
      });

      it("a filter touching the proxy's x-weft-* headers or those that frame the message (400)", async () => {
        for (const name of ["x-weft-source-identity", "X-Weft-Anything", "Connection", "host", "Content-Length", "Transfer-Encoding", "upgrade", "TE", "keep-alive"]) {
          await refused(put(withRule({ filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name, value: "x" }] } }] })), 400, "body.rules.0.filters.0.requestHeaderModifier.set.0.name");
          await refused(put(withRule({ filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { remove: [name] } }] })), 400, "body.rules.0.filters.0.requestHeaderModifier.remove.0");
          await refused(put(withRule({ filters: [{ type: "ResponseHeaderModifier", responseHeaderModifier: { add: [{ name, value: "x" }] } }] })), 400, "body.rules.0.filters.0.responseHeaderModifier.add.0.name");
        }
        // A name that merely contains one is fine.
        const fine = await put(withRule({ filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-host-weft", value: "x" }] } }] }));
        expect(fine.statusCode, fine.body).toBe(201);
        expect((await app.inject({ method: "DELETE", url: url(a, "bad"), headers: bearer(a.token) })).statusCode).toBe(204);
      });

      it("a match on an x-weft-* header, a header twice in one match, or a path that is not plain (400)", async () => {
        await refused(put(withRule({ matches: [{ headers: [{ name: "X-Weft-Source-Identity", value: "spiffe://a/b" }] }] })), 400, "body.rules.0.matches.0.headers.0.name");
        await refused(put(withRule({ matches: [{ headers: [{ name: "x-a", value: "1" }, { name: "X-A", value: "2" }] }] })), 400, "body.rules.0.matches.0.headers.1.name");
        for (const value of ["/api/../admin", "/api/./x", "/api/..", "//api", "/api%2Fx", "/api?x=1", "/api#top", '/a"b', "/a\\b"]) {
          await refused(put(withRule({ matches: [{ path: { value } }] })), 400, "body.rules.0.matches.0.path.value");
        }
        const fine = await put(withRule({ matches: [{ path: { type: "Exact", value: "/a/b.c/~d%20e" } }] }));
        expect(fine.statusCode, fine.body).toBe(201);
        expect((await app.inject({ method: "DELETE", url: url(a, "bad"), headers: bearer(a.token) })).statusCode).toBe(204);
      });

      it("shapes the schema refuses: no rules, no backends, an unknown field, a bad method (400)", async () => {
        await refused(put({ parentRefs: [{ name: "web" }], rules: [] }), 400, "body.rules");
        await refused(put({ parentRefs: [], rules: [{ backendRefs: [{}] }] }), 400, "body.parentRefs");
        await refused(put(withRule({ backendRefs: [] })), 400, "body.rules.0.backendRefs");
        await refused(put(withRule({ backendRefs: [{ weight: -1 }] })), 400, "body.rules.0.backendRefs.0.weight");
        await refused(put(withRule({ matches: [{ method: "BREW" }] })), 400);
        await refused(put({ ...withRule({}), hostnames: ["a.example"] }), 400, "body.hostnames");
        await refused(put({ ...withRule({}), parentRefs: [{ kind: "Gateway", name: "web" }] }), 400);
      });

      it("backend refs that all weigh 0 are taken (the route answers 503)", async () => {
        const res = await put(withRule({ backendRefs: [{ weight: 0 }, { labels: { version: "v2" }, weight: 0 }] }));
        expect(res.statusCode, res.body).toBe(201);
        expect((await app.inject({ method: "DELETE", url: url(a, "bad"), headers: bearer(a.token) })).statusCode).toBe(204);
      });
    });

    describe("backend refs naming another service of the tenant (the Gateway API's canary between services)", () => {
      const one = (targetPort: number) => ({ ports: [{ port: 80, protocol: "tcp", targetPort }], backends: { selector: { identity: "web" } } });
      const byName = (backendRefs: unknown[]) => ({ parentRefs: [{ name: "web", port: 80 }], rules: [{ backendRefs }] });
      const put = (spec: unknown) => putResource(app, a.token, a.tenant, "httpRoutes/split", spec);
      beforeAll(async () => {
        await mustPut(app, a.token, a.tenant, "services/web-v1", one(9001));
        await mustPut(app, a.token, a.tenant, "services/web-v2", one(9002));
        await mustPut(app, b.token, b.tenant, "services/b-v3", one(9003));
      });

      it("are taken with kind Service, a name, and a port (or none when the service has one tcp port), and read back as written", async () => {
        const spec = byName([{ kind: "Service", name: "web-v1", weight: 90 }, { name: "web-v2", port: 80, weight: 10, labels: { app: "web" } }, { name: "web", port: 8443 }]);
        const res = await put(spec);
        expect(res.statusCode, res.body).toBe(201);
        expect(res.json().rules).toEqual(spec.rules);
        expect((await app.inject({ method: "DELETE", url: url(a, "split"), headers: bearer(a.token) })).statusCode).toBe(204);
      });

      it("refuse an unknown service, another tenant's, one without tcp ports, a port it lacks, or no port where it has several (422)", async () => {
        const unknown = await refused(put(byName([{ name: "web-v1" }, { name: "no-such" }])), 422, "body.rules.0.backendRefs.1.name");
        expect(unknown.detail).toBe('service "no-such" does not exist in this tenant');
        const theirs = await refused(put(byName([{ name: "b-v3" }])), 422, "body.rules.0.backendRefs.0.name");
        expect(theirs.detail).toBe('service "b-v3" does not exist in this tenant');
        await refused(put(byName([{ name: "dns" }])), 422, "body.rules.0.backendRefs.0.name");
        await refused(put(byName([{ name: "web-v1", port: 81 }])), 422, "body.rules.0.backendRefs.0.port");
        const several = await refused(put(byName([{ name: "web" }])), 422, "body.rules.0.backendRefs.0.port");
        expect(several.errors).toEqual([{ field: "body.rules.0.backendRefs.0.port", message: "name one of the service's tcp ports: 80, 8443" }]);
        await refused(put(byName([{ name: "web", port: 53 }])), 422, "body.rules.0.backendRefs.0.port");
      });

      it("refuse a port without a name, a kind other than Service, and a bad name (400)", async () => {
        await refused(put(byName([{ port: 80 }])), 400, "body.rules.0.backendRefs.0.port");
        await refused(put(byName([{ kind: "Pod", name: "web-v1" }])), 400, "body.rules.0.backendRefs.0.kind");
        await refused(put(byName([{ name: "Web V1" }])), 400, "body.rules.0.backendRefs.0.name");
      });

      it("keep the service they name: deleting it, dropping the port, or adding a second tcp port to a ref naming none (409)", async () => {
        await mustPut(app, a.token, a.tenant, "httpRoutes/split", byName([{ name: "web-v1", weight: 90 }, { name: "web-v2", port: 80, weight: 10 }]));
        const gone = await refused(app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/web-v2`, headers: bearer(a.token) }), 409);
        expect(gone.detail).toBe('service "web-v2" is named by httpRoute "split": change or delete the route first');
        expect(gone.errors).toEqual([{ field: "httpRoutes.split.rules.0.backendRefs.1", message: "names this service" }]);
        await refused(app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/web-v2?dryRun=true`, headers: bearer(a.token) }), 409);
        const renumbered = await refused(putResource(app, a.token, a.tenant, "services/web-v2", { ...one(9002), ports: [{ port: 81, protocol: "tcp", targetPort: 9002 }] }), 409);
        expect(renumbered.errors).toEqual([{ field: "httpRoutes.split.rules.0.backendRefs.1", message: "names tcp port 80" }]);
        const second = await refused(putResource(app, a.token, a.tenant, "services/web-v1", { ...one(9001), ports: [...one(9001).ports, { port: 81, protocol: "tcp", targetPort: 9001 }] }), 409);
        expect(second.errors).toEqual([{ field: "httpRoutes.split.rules.0.backendRefs.0", message: "names the one tcp port of this service" }]);
        // Its one port renumbered is still its one port; target ports and backends change freely.
        const moved = await putResource(app, a.token, a.tenant, "services/web-v1", { ...one(9011), ports: [{ port: 82, protocol: "tcp", targetPort: 9011 }] });
        expect(moved.statusCode, moved.body).toBe(200);
        // Once the route lets go, the service goes.
        expect((await app.inject({ method: "DELETE", url: url(a, "split"), headers: bearer(a.token) })).statusCode).toBe(204);
        expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/web-v2`, headers: bearer(a.token) })).statusCode).toBe(204);
        await mustPut(app, a.token, a.tenant, "services/web-v2", one(9002));
      });
    });

    describe("a service a route names keeps what the route names (409, naming the routes)", () => {
      const svc = { ports: WEB_PORTS, backends: { selector: { identity: "web" } } };
      beforeAll(async () => {
        await mustPut(app, a.token, a.tenant, "services/shop", svc);
        await mustPut(app, a.token, a.tenant, "httpRoutes/shop-a", { parentRefs: [{ name: "shop", port: 80 }], rules: [{ backendRefs: [{}] }] });
        await mustPut(app, a.token, a.tenant, "httpRoutes/shop-b", { parentRefs: [{ name: "web", port: 8443 }, { name: "shop" }], rules: [{ backendRefs: [{}] }] });
      });

      it("deleting the service", async () => {
        const body = await refused(app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/shop`, headers: bearer(a.token) }), 409);
        expect(body.detail).toContain('"shop-a", "shop-b"');
        expect(body.errors).toEqual([
          { field: "httpRoutes.shop-a.parentRefs.0", message: "names this service" },
          { field: "httpRoutes.shop-b.parentRefs.1", message: "names this service" },
        ]);
        // A dry run is refused the same way.
        await refused(app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/shop?dryRun=true`, headers: bearer(a.token) }), 409);
        expect((await app.inject({ url: `/v1/tenants/${a.tenant}/services/shop`, headers: bearer(a.token) })).statusCode).toBe(200);
      });

      it("dropping or renumbering a tcp port a route names, or the last tcp port of a route that names none", async () => {
        const put = (ports: unknown) => putResource(app, a.token, a.tenant, "services/shop", { ...svc, ports });
        const drop80 = await refused(put([WEB_PORTS[1], WEB_PORTS[2]]), 409, "httpRoutes.shop-a.parentRefs.0");
        expect(drop80.errors).toEqual([{ field: "httpRoutes.shop-a.parentRefs.0", message: "names tcp port 80" }]);
        await refused(put([{ port: 81, protocol: "tcp", targetPort: 8080 }, WEB_PORTS[1]]), 409, "httpRoutes.shop-a.parentRefs.0");
        await refused(put([{ port: 80, protocol: "udp", targetPort: 8080 }, WEB_PORTS[1]]), 409, "httpRoutes.shop-a.parentRefs.0");
        // Keeping port 80 but no other tcp port still leaves shop-b (every tcp port) something.
        const kept = await put([WEB_PORTS[0], WEB_PORTS[2]]);
        expect(kept.statusCode, kept.body).toBe(200);
        // Another service's routes are not this one's: web's own 8443 named by shop-b stays checked on web only.
        const otherTenant = await putResource(app, b.token, b.tenant, "services/web", { ports: [WEB_PORTS[2]], backends: { selector: {} } });
        expect(otherTenant.statusCode, otherTenant.body).toBe(200);
        await refused(putResource(app, a.token, a.tenant, "services/web", { ports: [WEB_PORTS[0]], backends: { selector: {} } }), 409, "httpRoutes.shop-b.parentRefs.0");
        // Target ports and backends may change freely.
        const retargeted = await put([{ port: 80, protocol: "tcp", targetPort: 9090 }]);
        expect(retargeted.statusCode, retargeted.body).toBe(200);
        const noTcp = await refused(put([WEB_PORTS[2]]), 409);
        expect(noTcp.errors).toEqual([
          { field: "httpRoutes.shop-a.parentRefs.0", message: "names tcp port 80" },
          { field: "httpRoutes.shop-b.parentRefs.1", message: "names every tcp port of this service" },
        ]);
      });

      it("a route and the deletion of its service racing: never a route naming a service that is gone", async () => {
        for (let round = 0; round < 5; round++) {
          await mustPut(app, a.token, a.tenant, "services/racy", svc);
          const [route, deletion] = await Promise.all([
            putResource(app, a.token, a.tenant, "httpRoutes/racy", { parentRefs: [{ name: "racy", port: 80 }], rules: [{ backendRefs: [{}] }] }),
            app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/racy`, headers: bearer(a.token) }),
          ]);
          // One of them wins; whichever it is, what is stored holds together.
          expect([route.statusCode, deletion.statusCode].sort(), `${route.body} ${deletion.body}`).toSatisfy(
            (s: number[]) => (s[0] === 201 && s[1] === 409) || (s[0] === 204 && s[1] === 422),
          );
          const stored = await app.inject({ url: url(a, "racy"), headers: bearer(a.token) });
          const service = await app.inject({ url: `/v1/tenants/${a.tenant}/services/racy`, headers: bearer(a.token) });
          if (stored.statusCode === 200) expect(service.statusCode).toBe(200);
          if (stored.statusCode === 200) expect((await app.inject({ method: "DELETE", url: url(a, "racy"), headers: bearer(a.token) })).statusCode).toBe(204);
        }
      });

      it("once the routes let go, the service can change and go", async () => {
        expect((await app.inject({ method: "DELETE", url: url(a, "shop-a"), headers: bearer(a.token) })).statusCode).toBe(204);
        await mustPut(app, a.token, a.tenant, "httpRoutes/shop-b", { parentRefs: [{ name: "web", port: 8443 }], rules: [{ backendRefs: [{}] }] });
        expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/shop`, headers: bearer(a.token) })).statusCode).toBe(204);
      });
    });
  });
});
