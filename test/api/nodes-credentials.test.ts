// Issue 5 item 2 and issue 6 item 5: what a node credential may do. Its own
// node, nothing of any other node (404 like a missing one), no tenant API,
// and X.509-SVIDs only for identities of workloads registered on its node.
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, type RouteEntry, type WeftApp } from "../../api/src/app.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, routeTable, skipBackend, startApi, tenantWithToken, testConfig, uniqueName } from "../support/api.ts";
import { registeredNode, uniqueAddress } from "../support/nodes.ts";
import { requestFor, routeLabel as label } from "../support/routes.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const routes = (await routeTable()).filter((r) => r.url.startsWith("/v1/"));
/**
 * Tenant routes a node may not use at all; those it may are checked per row:
 * x509-svids against its workloads below, workload writes against its own
 * node in nodes-workload-registration.test.ts.
 */
const tenantOnly = routes.filter((r) => r.auth?.who === "tenant" && !r.auth.nodes);
const nodeAllowed = routes.filter((r) => r.auth?.who === "tenant" && r.auth.nodes);
const operatorOnly = routes.filter((r) => r.auth?.who === "operator");
const nodeRoutes = routes.filter((r) => r.auth?.who === "node");

describe("the route table", () => {
  it("lets node credentials onto exactly six tenant routes: X.509- and JWT-SVID issuance, its proxy's SVID, workload writes and federated bundles", () => {
    expect(nodeAllowed.map(label).sort()).toEqual([
      "DELETE /v1/tenants/:tenant/workloads/:name",
      "GET /v1/tenants/:tenant/federated-bundles",
      "POST /v1/tenants/:tenant/identities/:name/jwt-svids",
      "POST /v1/tenants/:tenant/identities/:name/x509-svids",
      "POST /v1/tenants/:tenant/node-proxy-svids",
      "PUT /v1/tenants/:tenant/workloads/:name",
    ]);
    expect(tenantOnly.length).toBeGreaterThanOrEqual(6);
    // Reading a node, reporting its status, reading its datapath.
    expect(nodeRoutes.length).toBeGreaterThanOrEqual(3);
  });
});

describe.each(BACKENDS)("node credentials on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let n1: { name: string; credential: string };
    let n2: { name: string; credential: string };
    let acme: { tenant: string; token: string };
    beforeAll(async () => {
      app = await startApi(backend);
      n1 = await registeredNode(app);
      n2 = await registeredNode(app);
      acme = await tenantWithToken(app, ["admin"]);
    });
    afterAll(async () => app?.close());

    it("reads its own node; another node answers exactly like a missing one", async () => {
      const own = await app.inject({ url: `/v1/nodes/${n1.name}`, headers: bearer(n1.credential) });
      expect(own.statusCode).toBe(200);
      expect(own.json().name).toBe(n1.name);
      const other = expectProblem(await app.inject({ url: `/v1/nodes/${n2.name}`, headers: bearer(n1.credential) }), 404);
      const missingName = uniqueName("ghost");
      const missing = expectProblem(await app.inject({ url: `/v1/nodes/${missingName}`, headers: bearer(n1.credential) }), 404);
      expect(other.detail?.replace(n2.name, "<n>")).toBe(missing.detail?.replace(missingName, "<n>"));
      const status = { appliedRevision: 1, hash: "h", counters: {}, errors: [] };
      expectProblem(await app.inject({ method: "PUT", url: `/v1/nodes/${n2.name}/status`, headers: bearer(n1.credential), payload: status }), 404);
      // And the other node's status was not touched.
      expect((await app.inject({ url: `/v1/nodes/${n2.name}`, headers: operator })).json().applied).toBeNull();
    });

    it("many credentials checked at once (looked up together) each answer for their own node only", async () => {
      const fresh = await Promise.all(Array.from({ length: 6 }, () => registeredNode(app)));
      const forged = Array.from({ length: 3 }, (_, i) => `weft_node_${String(i).repeat(43)}`);
      const asks = [
        ...fresh.flatMap((n, i) => [
          { headers: bearer(n.credential), path: n.name, want: 200, name: n.name },
          // Another node's path with this credential: the 404 of a missing node.
          { headers: bearer(n.credential), path: fresh[(i + 1) % fresh.length]!.name, want: 404, name: undefined },
        ]),
        ...forged.map((c) => ({ headers: bearer(c), path: fresh[0]!.name, want: 401, name: undefined })),
      ];
      const answers = await Promise.all(asks.map((a) => app.inject({ url: `/v1/nodes/${a.path}`, headers: a.headers })));
      answers.forEach((res, i) => {
        expect(res.statusCode, `${asks[i]!.path}: ${res.body}`).toBe(asks[i]!.want);
        if (asks[i]!.name !== undefined) expect(res.json().name).toBe(asks[i]!.name);
      });
    });

    it("a tenant token gets 403 on node routes; no token or a garbage credential 401", async () => {
      expectProblem(await app.inject({ url: `/v1/nodes/${n1.name}`, headers: bearer(acme.token) }), 403);
      expectProblem(await app.inject({ url: `/v1/nodes/${n1.name}` }), 401);
      const forged = expectProblem(await app.inject({ url: `/v1/nodes/${n1.name}`, headers: bearer(`weft_node_${"A".repeat(43)}`) }), 401);
      expect(forged.detail).toBe("token invalid");
    });

    it.each(nodeRoutes.map((r) => [label(r), r] as const))(
      "%s: another node's credential gets the 404 of a missing node, a tenant token 403, none 401",
      async (_l, route) => {
        const ghost = uniqueName("ghost");
        const other = expectProblem(await app.inject(requestFor(route, acme.tenant, bearer(n1.credential), { node: n2.name })), 404);
        const missing = expectProblem(await app.inject(requestFor(route, acme.tenant, bearer(n1.credential), { node: ghost })), 404);
        expect(other.detail?.replace(n2.name, "<n>")).toBe(missing.detail?.replace(ghost, "<n>"));
        expectProblem(await app.inject(requestFor(route, acme.tenant, bearer(acme.token), { node: n1.name })), 403);
        expectProblem(await app.inject(requestFor(route, acme.tenant, {}, { node: n1.name })), 401);
        // Its own node: anything but an authorization refusal.
        const own = await app.inject(requestFor(route, acme.tenant, bearer(n1.credential), { node: n1.name }));
        expect([401, 403, 404], own.body).not.toContain(own.statusCode);
      },
    );

    it.each(tenantOnly.map((r) => [label(r), r] as const))("%s: a node credential gets 403, for its tenant or any", async (_l, route) => {
      for (const tenant of [acme.tenant, uniqueName("missing")]) {
        const body = expectProblem(await app.inject(requestFor(route, tenant, bearer(n1.credential))), 403);
        expect(body.detail).toBe("a node credential cannot use tenant routes");
      }
    });

    it.each(operatorOnly.map((r) => [label(r), r] as const))("%s: a node credential gets 403", async (_l, route) => {
      expectProblem(await app.inject(requestFor(route, acme.tenant, bearer(n1.credential))), 403);
    });

    it("the node list is the operator's only", async () => {
      expectProblem(await app.inject({ url: "/v1/nodes", headers: bearer(n1.credential) }), 403);
    });

    describe("X.509-SVIDs for the workloads of its node", () => {
      let trustDomain: string;
      const svid = (node: { credential: string }, identity: string, tenant = acme.tenant) =>
        app.inject({
          method: "POST",
          url: `/v1/tenants/${tenant}/identities/${identity}/x509-svids`,
          headers: bearer(node.credential),
          payload: { csr: makeCsr(tmp.dir).csrPem },
        });
      const placeWorkload = async (name: string, identity: string, node: string, tenant = acme.tenant) => {
        const res = await app.inject({
          method: "PUT",
          url: `/v1/tenants/${tenant}/workloads/${name}`,
          headers: operator,
          payload: { identity, node, addresses: [uniqueAddress(node)] },
        });
        expect(res.statusCode, res.body).toBe(201);
      };

      beforeAll(async () => {
        trustDomain = (await app.weft.directory.byName(acme.tenant))!.trustDomain;
        for (const [name, path] of [["web", "/ns/prod/sa/web"], ["db", "/ns/prod/sa/db"]] as const) {
          const res = await app.inject({ method: "PUT", url: `/v1/tenants/${acme.tenant}/identities/${name}`, headers: bearer(acme.token), payload: { path } });
          expect(res.statusCode, res.body).toBe(201);
        }
        await placeWorkload("web-1", "web", n1.name);
        await placeWorkload("db-1", "db", n2.name);
      });

      it("issues for an identity with a workload on the node", async () => {
        const res = await svid(n1, "web");
        expect(res.statusCode, res.body).toBe(201);
        const cert = new X509Certificate(res.json().certificate);
        expect(cert.subjectAltName).toBe(`URI:spiffe://${trustDomain}/ns/prod/sa/web`);
      });

      it("refuses, as a missing identity, one whose workloads run on another node, a missing one and another tenant's", async () => {
        const onOther = expectProblem(await svid(n1, "db"), 404);
        const missing = expectProblem(await svid(n1, "nope"), 404);
        expect(onOther.detail?.replace("db", "<i>")).toBe(missing.detail?.replace("nope", "<i>"));
        // Another tenant with the same identity name on n1's node is no licence for acme's "web" elsewhere...
        const evil = await tenantWithToken(app, ["admin"]);
        await app.inject({ method: "PUT", url: `/v1/tenants/${evil.tenant}/identities/db`, headers: bearer(evil.token), payload: { path: "/db" } });
        await placeWorkload("db-x", "db", n1.name, evil.tenant);
        expectProblem(await svid(n1, "db"), 404);
        // ...while that tenant's own identity on n1 is issued.
        expect((await svid(n1, "db", evil.tenant)).statusCode).toBe(201);
        expectProblem(await svid(n1, "web", uniqueName("missing")), 404);
      });

      it("follows the workloads: moved away, the node can no longer obtain it", async () => {
        await placeWorkload("web-2", "web", n2.name);
        expect((await svid(n2, "web")).statusCode).toBe(201);
        const removed = await app.inject({ method: "DELETE", url: `/v1/tenants/${acme.tenant}/workloads/web-2`, headers: operator });
        expect(removed.statusCode).toBe(204);
        expectProblem(await svid(n2, "web"), 404);
      });

      it("JWT-SVIDs follow the same rule: for web on n1, not for db (on n2), nor for a missing identity", async () => {
        const jwt = (node: { credential: string }, identity: string) =>
          app.inject({ method: "POST", url: `/v1/tenants/${acme.tenant}/identities/${identity}/jwt-svids`, headers: bearer(node.credential), payload: { audience: ["x"] } });
        const res = await jwt(n1, "web");
        expect(res.statusCode, res.body).toBe(201);
        expect(JSON.parse(Buffer.from(String(res.json().token).split(".")[1]!, "base64url").toString()).sub).toBe(`spiffe://${trustDomain}/ns/prod/sa/web`);
        expectProblem(await jwt(n1, "db"), 404);
        expectProblem(await jwt(n1, uniqueName("missing")), 404);
      });
    });

    it("a deleted node's credential stops working at once, here and on another replica", async () => {
      const node = await registeredNode(app);
      // A second replica on the same database; it learns of the deletion only through NOTIFY.
      const other = await buildApp(testConfig(backend), backend === "pglite" ? { database: app.weft.database } : {});
      try {
        const read = (on: WeftApp) => on.inject({ url: `/v1/nodes/${node.name}`, headers: bearer(node.credential) });
        // Both replicas have the credential cached now.
        expect((await read(app)).statusCode).toBe(200);
        expect((await read(other)).statusCode).toBe(200);
        expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${node.name}`, headers: operator })).statusCode).toBe(204);
        expectProblem(await read(app), 401);
        const deadline = Date.now() + 1000;
        let status = (await read(other)).statusCode;
        while (status !== 401 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
          status = (await read(other)).statusCode;
        }
        // The caches keep a credential for 10 minutes: the notification did it.
        expect(status).toBe(401);
        // Re-registering the name issues a new credential; the old one stays dead.
        const again = await registeredNode(app, { name: node.name });
        expectProblem(await read(app), 401);
        expect((await app.inject({ url: `/v1/nodes/${node.name}`, headers: bearer(again.credential) })).statusCode).toBe(200);
      } finally {
        await other.close();
      }
    });
  });
});
