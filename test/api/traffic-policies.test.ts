/**
 * trafficPolicies through the API (issue 21): the resource conventions, every
 * refusal naming its field with nothing written, one policy per service,
 * the service a policy names kept, tenant isolation (API and row-level
 * security), and a write reaching the L7 document of the nodes that serve
 * the service, with a new ETag.
 */
import type { LightMyRequestResponse } from "fastify";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { trafficPolicies } from "../../api/src/db/schema.ts";
import { read } from "../../api/src/db/transactions.ts";
import type { L7Document } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { expectAuditedAndLogged, expectResourceConventions, expectTenantWalls, freshAddress, identity, mustPut, putResource, readToken, refusedUnwritten, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

const WEB = { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { identity: "web" } } };

/** Every part of a policy, each field given. */
const full = (service: string) => ({
  targetRef: { kind: "Service", name: service },
  connectionPool: { maxConnections: 100, maxPendingRequests: 10 },
  outlierDetection: { consecutive5xx: 3, interval: "5s", baseEjectionTime: "1m", maxEjectionPercent: 50 },
  rateLimit: { requestsPerSecond: 20, burst: 40 },
});

describe.each(BACKENDS)("trafficPolicies on %s", (backend) => {
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
        await mustPut(app, t.token, t.tenant, "services/web", WEB);
      }
      await mustPut(app, a.token, a.tenant, "services/shop", WEB);
    });
    afterAll(async () => app?.close());

    const url = (t: { tenant: string }, name: string) => `/v1/tenants/${t.tenant}/trafficPolicies/${name}`;
    const del = (t: { tenant: string; token: string }, name: string) => app.inject({ method: "DELETE", url: url(t, name), headers: bearer(t.token) });
    /** A request that must be refused with this status, naming `field`, with nothing written in either tenant. */
    const refused = (res: Promise<LightMyRequestResponse>, status: number, field?: string) => refusedUnwritten(app, [a.tenant, b.tenant], res, status, field);

    it("creates, reads, replaces, lists and deletes a policy with the resource conventions", async () => {
      // A replace with fewer parts drops the rest: absent stays absent.
      await expectResourceConventions(app, { ...a, readToken: reader.token }, "trafficPolicies", [
        { name: "web-limits", spec: full("web"), replacement: { targetRef: { name: "web" }, rateLimit: { requestsPerSecond: 5 } } },
        { name: "shop-limits", spec: { targetRef: { name: "shop" }, connectionPool: { maxConnections: 1 } } },
      ]);
    });

    it("audits each write and logs it as a change, so the compiler and agents follow it", async () => {
      await expectAuditedAndLogged(app, a, "trafficPolicies", "trafficPolicy", "logged", full("web"));
    });

    it("a dry run checks everything and writes nothing", async () => {
      const before = await tenantChanges(app, a.tenant);
      const dry = await putResource(app, a.token, a.tenant, "trafficPolicies/dry", full("web"), { query: { dryRun: "true" } });
      expect(dry.statusCode, dry.body).toBe(201);
      expect(dry.json()).toMatchObject({ name: "dry", targetRef: { name: "web" } });
      expect(await tenantChanges(app, a.tenant)).toBe(before);
      expectProblem(await app.inject({ url: url(a, "dry"), headers: bearer(a.token) }), 404);
      // Refusals are the same as the real write's.
      await refused(putResource(app, a.token, a.tenant, "trafficPolicies/dry", full("nowhere"), { query: { dryRun: "true" } }), 422, "body.targetRef.name");
      await mustPut(app, a.token, a.tenant, "trafficPolicies/kept", full("web"));
      await refused(putResource(app, a.token, a.tenant, "trafficPolicies/dry", full("web"), { query: { dryRun: "true" } }), 409, "body.targetRef.name");
      // A dry-run delete leaves the policy.
      expect((await app.inject({ method: "DELETE", url: `${url(a, "kept")}?dryRun=true`, headers: bearer(a.token) })).statusCode).toBe(204);
      expect((await app.inject({ url: url(a, "kept"), headers: bearer(a.token) })).statusCode).toBe(200);
      expect((await del(a, "kept")).statusCode).toBe(204);
    });

    describe("one policy per service (409, naming the policy there)", () => {
      it("a second policy for a service is refused; the first may be replaced, and once it is gone the second is taken", async () => {
        await mustPut(app, a.token, a.tenant, "trafficPolicies/first", full("web"));
        const second = await refused(putResource(app, a.token, a.tenant, "trafficPolicies/second", { targetRef: { name: "web" }, rateLimit: { requestsPerSecond: 1 } }), 409, "body.targetRef.name");
        expect(second.detail).toBe('service "web" already has trafficPolicy "first"');
        expect(second.errors).toEqual([{ field: "body.targetRef.name", message: 'trafficPolicy "first" names it (one per service): change that one, or delete it first' }]);
        // Moving an existing policy onto a taken service is the same refusal.
        await mustPut(app, a.token, a.tenant, "trafficPolicies/second", full("shop"));
        await refused(putResource(app, a.token, a.tenant, "trafficPolicies/second", full("web")), 409, "body.targetRef.name");
        // Replacing the one there is fine.
        const again = await putResource(app, a.token, a.tenant, "trafficPolicies/first", { targetRef: { name: "web" }, connectionPool: { maxConnections: 7 } });
        expect(again.statusCode, again.body).toBe(200);
        expect((await del(a, "first")).statusCode).toBe(204);
        const moved = await putResource(app, a.token, a.tenant, "trafficPolicies/second", full("web"));
        expect(moved.statusCode, moved.body).toBe(200);
        // Another tenant's policy on its own "web" is no clash.
        await mustPut(app, b.token, b.tenant, "trafficPolicies/first", full("web"));
        expect((await del(a, "second")).statusCode).toBe(204);
        expect((await del(b, "first")).statusCode).toBe(204);
      });
    });

    describe("the service a policy names stays while it does (409, naming the policy)", () => {
      it("deleting the service is refused, a dry run too; once the policy is gone it goes", async () => {
        await mustPut(app, a.token, a.tenant, "services/doomed", WEB);
        await mustPut(app, a.token, a.tenant, "trafficPolicies/doomed-limits", full("doomed"));
        const svc = `/v1/tenants/${a.tenant}/services/doomed`;
        const body = await refused(app.inject({ method: "DELETE", url: svc, headers: bearer(a.token) }), 409, "trafficPolicies.doomed-limits.targetRef.name");
        expect(body.detail).toBe('service "doomed" is named by trafficPolicy "doomed-limits": change or delete the policy first');
        expect(body.errors).toEqual([{ field: "trafficPolicies.doomed-limits.targetRef.name", message: "names this service" }]);
        await refused(app.inject({ method: "DELETE", url: `${svc}?dryRun=true`, headers: bearer(a.token) }), 409);
        expect((await app.inject({ url: svc, headers: bearer(a.token) })).statusCode).toBe(200);
        // Replacing the service is no loss of it.
        expect((await putResource(app, a.token, a.tenant, "services/doomed", { ...WEB, ports: [{ port: 81, protocol: "tcp", targetPort: 8081 }] })).statusCode).toBe(200);
        expect((await del(a, "doomed-limits")).statusCode).toBe(204);
        expect((await app.inject({ method: "DELETE", url: svc, headers: bearer(a.token) })).statusCode).toBe(204);
      });
    });

    describe("racing writes never leave what the refusals forbid", () => {
      it("two policies for one service at once: one is taken, the other refused with 409", async () => {
        for (let round = 0; round < 5; round++) {
          const [one, two] = await Promise.all(["race-1", "race-2"].map((name) => putResource(app, a.token, a.tenant, `trafficPolicies/${name}`, full("shop"))));
          expect([one!.statusCode, two!.statusCode].sort(), `${one!.body} ${two!.body}`).toEqual([201, 409]);
          const stored = (await app.inject({ url: `/v1/tenants/${a.tenant}/trafficPolicies`, headers: bearer(a.token) })).json().items as { name: string }[];
          const winners = stored.filter((p) => p.name.startsWith("race-"));
          expect(winners).toHaveLength(1);
          expect((await del(a, winners[0]!.name)).statusCode).toBe(204);
        }
      });

      it("a policy and the deletion of its service: never a policy naming a service that is gone", async () => {
        for (let round = 0; round < 5; round++) {
          await mustPut(app, a.token, a.tenant, "services/racy", WEB);
          const [policy, deletion] = await Promise.all([
            putResource(app, a.token, a.tenant, "trafficPolicies/racy", full("racy")),
            app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/services/racy`, headers: bearer(a.token) }),
          ]);
          expect([policy.statusCode, deletion.statusCode].sort(), `${policy.body} ${deletion.body}`).toSatisfy(
            (s: number[]) => (s[0] === 201 && s[1] === 409) || (s[0] === 204 && s[1] === 422),
          );
          const stored = await app.inject({ url: url(a, "racy"), headers: bearer(a.token) });
          const service = await app.inject({ url: `/v1/tenants/${a.tenant}/services/racy`, headers: bearer(a.token) });
          if (stored.statusCode === 200) {
            expect(service.statusCode).toBe(200);
            expect((await del(a, "racy")).statusCode).toBe(204);
          }
        }
      });
    });

    describe("access", () => {
      it("a read token reads but cannot write; another tenant can neither read, list, replace nor delete them: 404, as if they did not exist", async () => {
        await expectTenantWalls(app, { ...a, readToken: reader.token }, b, "trafficPolicies", "private", full("web"));
        expect((await del(a, "private")).statusCode).toBe(204);
      });

      it("a policy targets services of its own tenant only: another tenant's reads exactly like one that does not exist", async () => {
        await mustPut(app, b.token, b.tenant, "services/only-b", WEB);
        const theirs = await refused(putResource(app, a.token, a.tenant, "trafficPolicies/steal", full("only-b")), 422, "body.targetRef.name");
        const nowhere = await refused(putResource(app, a.token, a.tenant, "trafficPolicies/steal", full("no-such")), 422, "body.targetRef.name");
        expect(theirs.detail).toBe('service "only-b" does not exist in this tenant');
        expect(nowhere.detail).toBe('service "no-such" does not exist in this tenant');
        expect(theirs.errors).toEqual([{ field: "body.targetRef.name", message: 'no service "only-b" in this tenant' }]);
        // B's policy on its service does not make A's write see it, nor block a delete A cannot make anyway.
        await mustPut(app, b.token, b.tenant, "trafficPolicies/b-limits", full("only-b"));
        await refused(putResource(app, a.token, a.tenant, "trafficPolicies/steal", full("only-b")), 422, "body.targetRef.name");
        expect((await del(b, "b-limits")).statusCode).toBe(204);
      });

      it("row-level security is the second wall: a transaction bound to A reads none of B's policies, and cannot write one for B", async () => {
        await mustPut(app, b.token, b.tenant, "trafficPolicies/b-only", full("web"));
        await mustPut(app, a.token, a.tenant, "trafficPolicies/a-only", full("web"));
        const [aId, bId] = [(await app.weft.directory.byName(a.tenant))!.id, (await app.weft.directory.byName(b.tenant))!.id];
        const seen = await read(app.weft.db, aId, (tx) => tx.select({ tenantId: trafficPolicies.tenantId }).from(trafficPolicies));
        expect(seen.length).toBeGreaterThan(0);
        expect(seen.every((r) => r.tenantId === aId)).toBe(true);
        const forged = read(app.weft.db, aId, (tx) =>
          tx.insert(trafficPolicies).values({ tenantId: bId, name: "forged", targetRef: { name: "only-b" }, service: "only-b", revision: 1 }),
        );
        await expect(forged).rejects.toThrow();
        expect((await del(b, "b-only")).statusCode).toBe(204);
        expect((await del(a, "a-only")).statusCode).toBe(204);
      });
    });

    it("go with their tenant", async () => {
      const c = await tenantWithToken(app, ["admin"]);
      await identity(app, c.token, c.tenant, "web");
      await mustPut(app, c.token, c.tenant, "services/web", WEB);
      await mustPut(app, c.token, c.tenant, "trafficPolicies/doomed", full("web"));
      const id = (await app.weft.directory.byName(c.tenant))!.id;
      expect(await app.weft.db.select({ name: trafficPolicies.name }).from(trafficPolicies).where(eq(trafficPolicies.tenantId, id))).toEqual([{ name: "doomed" }]);
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${c.tenant}`, headers: operator })).statusCode).toBe(204);
      expect(await app.weft.db.select({ name: trafficPolicies.name }).from(trafficPolicies).where(eq(trafficPolicies.tenantId, id))).toEqual([]);
    });

    describe("bad input is refused with a problem naming the field, and writes nothing", () => {
      const put = (spec: unknown) => putResource(app, a.token, a.tenant, "trafficPolicies/bad", spec);
      const outlier = (o: Record<string, unknown>) => ({ targetRef: { name: "web" }, outlierDetection: o });

      it("an interval or base ejection time of 0, or over 300s (400)", async () => {
        for (const key of ["interval", "baseEjectionTime"]) {
          for (const value of ["0s", "0ms", "0h0m", "301s", "5m1ms", "1h"]) {
            const body = await refused(put(outlier({ [key]: value })), 400, `body.outlierDetection.${key}`);
            expect(body.errors).toHaveLength(1);
          }
          await refused(put(outlier({ [key]: "soon" })), 400, `body.outlierDetection.${key}`);
        }
        // 300s is the most, 1ms the least.
        for (const o of [{ interval: "300s", baseEjectionTime: "5m" }, { interval: "1ms", baseEjectionTime: "4m59s1000ms" }]) {
          const taken = await put(outlier(o));
          expect(taken.statusCode, taken.body).toBe(201);
          expect((await del(a, "bad")).statusCode).toBe(204);
        }
      });

      it("numbers out of range, unknown fields, a missing target or rate (400)", async () => {
        const base = { targetRef: { name: "web" } };
        await refused(put({}), 400, "body.targetRef");
        await refused(put({ targetRef: {} }), 400, "body.targetRef.name");
        await refused(put({ targetRef: { kind: "Gateway", name: "web" } }), 400, "body.targetRef.kind");
        await refused(put({ targetRef: { name: "Web!" } }), 400, "body.targetRef.name");
        await refused(put({ ...base, connectionPool: { maxConnections: 0 } }), 400, "body.connectionPool.maxConnections");
        await refused(put({ ...base, connectionPool: { maxPendingRequests: -1 } }), 400, "body.connectionPool.maxPendingRequests");
        await refused(put({ ...base, connectionPool: { maxConnections: 1.5 } }), 400, "body.connectionPool.maxConnections");
        await refused(put(outlier({ consecutive5xx: 0 })), 400, "body.outlierDetection.consecutive5xx");
        await refused(put(outlier({ maxEjectionPercent: 101 })), 400, "body.outlierDetection.maxEjectionPercent");
        await refused(put({ ...base, rateLimit: {} }), 400, "body.rateLimit.requestsPerSecond");
        await refused(put({ ...base, rateLimit: { requestsPerSecond: 0 } }), 400, "body.rateLimit.requestsPerSecond");
        await refused(put({ ...base, rateLimit: { requestsPerSecond: 1, burst: 0 } }), 400, "body.rateLimit.burst");
        await refused(put({ ...base, retry: { attempts: 2 } }), 400, "body.retry");
        await refused(put({ ...base, connectionPool: { maxRequests: 2 } }), 400, "body.connectionPool.maxRequests");
      });
    });

    describe("a write reaches the L7 document of every node serving the service, with a new ETag", () => {
      it("the frontend gets traffic, filled in; a replace changes it; a delete takes it away", async () => {
        const node = await registeredNode(app);
        await mustPut(app, a.token, a.tenant, "workloads/web-1", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
        await mustPut(app, a.token, a.tenant, "services/routed", WEB);
        await mustPut(app, a.token, a.tenant, "httpRoutes/routed", { parentRefs: [{ name: "routed" }], rules: [{ backendRefs: [{}] }] });
        const documentOf = async () => {
          const res = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
          expect(res.statusCode, res.body).toBe(200);
          const doc = res.json() as L7Document;
          return { frontend: doc.frontends.find((f) => f.tenant === a.tenant && f.service === "routed")!, etag: res.headers.etag as string };
        };
        const before = await documentOf();
        expect(before.frontend).toBeDefined();
        expect(before.frontend).not.toHaveProperty("traffic");

        await mustPut(app, a.token, a.tenant, "trafficPolicies/routed", { targetRef: { name: "routed" }, outlierDetection: {}, rateLimit: { requestsPerSecond: 50 } });
        const limited = await documentOf();
        expect(limited.etag).not.toBe(before.etag);
        expect(limited.frontend.traffic).toEqual({
          policy: "routed",
          outlier: { consecutive5xx: 5, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 10 },
          rateLimit: { requestsPerSecond: 50, burst: 50 },
        });
        // Unchanged: the agent's If-None-Match holds.
        const held = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: { ...bearer(node.credential), "if-none-match": limited.etag } });
        expect(held.statusCode).toBe(304);

        await mustPut(app, a.token, a.tenant, "trafficPolicies/routed", full("routed"));
        const replaced = await documentOf();
        expect(replaced.etag).not.toBe(limited.etag);
        expect(replaced.frontend.traffic).toEqual({
          policy: "routed",
          maxConnections: 100,
          maxPendingRequests: 10,
          outlier: { consecutive5xx: 3, intervalMs: 5000, baseEjectionMs: 60_000, maxEjectionPercent: 50 },
          rateLimit: { requestsPerSecond: 20, burst: 40 },
        });

        // A dry run changes nothing an agent sees.
        await putResource(app, a.token, a.tenant, "trafficPolicies/routed", { targetRef: { name: "routed" } }, { query: { dryRun: "true" } });
        expect((await documentOf()).etag).toBe(replaced.etag);

        expect((await del(a, "routed")).statusCode).toBe(204);
        const after = await documentOf();
        expect(after.frontend).toEqual(before.frontend);
        expect(after.etag).toBe(before.etag);
      });
    });
  });
});
