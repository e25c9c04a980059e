// The node proxy's SVID (issue 21) from the attacker's side. A node's
// transport presents spiffe://<td>/weft/node/<node>/proxy when it carries
// its L7 proxy's connections, and other nodes let that ID reach the L7
// backends an mtls rule governs. So: a node credential gets only its own
// node's, only in tenants it runs a workload of (now, not once), learns
// nothing of other tenants by asking (404, as for none), and no tenant can mint a workload
// SVID that passes for a proxy by naming an identity's path /weft/...
import { X509Certificate } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { buildCsr, newWorkloadKey } from "../../nodeagent/src/agent/csr.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut, putResource, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

type Node = { name: string; credential: string; podCidr: string };

/** What a refusal tells its caller, without what differs per request. */
const learned = (res: LightMyRequestResponse) => {
  const body = res.json() as Record<string, unknown>;
  delete body.requestId;
  delete body.instance;
  delete body.detail;
  return { status: res.statusCode, body };
};

describe.each(BACKENDS)("node proxy SVIDs on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let b: { tenant: string; token: string };
    let mine: Node;
    let theirs: Node;
    let td: string;
    const csr = (spiffeId?: string) => buildCsr(newWorkloadKey().privateKey, { commonName: "proxy", ...(spiffeId ? { spiffeId } : {}) });
    const ask = (tenant: string, headers: Record<string, string>, body = csr()) =>
      app.inject({ method: "POST", url: `/v1/tenants/${tenant}/node-proxy-svids`, headers, payload: { csr: body } });

    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["admin"]);
      b = await tenantWithToken(app, ["admin"]);
      td = (await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: operator })).json().trustDomain;
      [mine, theirs] = [await registeredNode(app), await registeredNode(app)];
      await identity(app, a.token, a.tenant, "web");
      await identity(app, b.token, b.tenant, "web");
      await mustPut(app, a.token, a.tenant, "workloads/w-mine", { identity: "web", node: mine.name, addresses: [freshAddress(mine.podCidr)] });
      await mustPut(app, b.token, b.tenant, "workloads/w-theirs", { identity: "web", node: theirs.name, addresses: [freshAddress(theirs.podCidr)] });
    });
    afterAll(async () => app?.close());

    it("a node gets its own proxy's SVID, never another node's: a CSR naming another node's proxy is 400", async () => {
      const own = await ask(a.tenant, bearer(mine.credential));
      expect(own.statusCode, own.body).toBe(201);
      expect(new X509Certificate(own.json().certificate).subjectAltName).toBe(`URI:spiffe://${td}/weft/node/${mine.name}/proxy`);
      expectProblem(await ask(a.tenant, bearer(mine.credential), csr(`spiffe://${td}/weft/node/${theirs.name}/proxy`)), 400);
    });

    it("a node asking in a tenant it runs nothing of learns what it learns of one that does not exist: 404", async () => {
      const hosted = learned(await ask(b.tenant, bearer(mine.credential)));
      const missing = learned(await ask("no-such-tenant-x1", bearer(mine.credential)));
      expect(hosted.status).toBe(404);
      expect(missing.status).toBe(404);
      expect(hosted.body).toEqual(missing.body);
    });

    it("tenant tokens, even admin, and the operator cannot mint a node's proxy SVID", async () => {
      expectProblem(await ask(a.tenant, bearer(a.token)), 403);
      expectProblem(await ask(a.tenant, operator), 403);
    });

    it("stops at once when the node's last workload of the tenant goes", async () => {
      await mustPut(app, b.token, b.tenant, "workloads/w-mine-b", { identity: "web", node: mine.name, addresses: [freshAddress(mine.podCidr)] });
      expect((await ask(b.tenant, bearer(mine.credential))).statusCode).toBe(201);
      const del = await app.inject({ method: "DELETE", url: `/v1/tenants/${b.tenant}/workloads/w-mine-b`, headers: bearer(b.token) });
      expect(del.statusCode).toBe(204);
      expectProblem(await ask(b.tenant, bearer(mine.credential)), 404);
    });

    it("no tenant identity may take a /weft/ path, dry run or not, so no workload SVID passes for a proxy; nothing is written", async () => {
      const before = await tenantChanges(app, a.tenant);
      for (const path of [`/weft/node/${mine.name}/proxy`, "/weft", "/weft/x"]) {
        for (const query of [{}, { query: { dryRun: "true" } }]) {
          const problem = expectProblem(await putResource(app, a.token, a.tenant, "identities/sneaky", { path }, query), 400);
          expect(problem.errors).toEqual([expect.objectContaining({ field: "body.path", message: expect.stringMatching(/reserved/) })]);
        }
      }
      expect(await tenantChanges(app, a.tenant)).toBe(before);
      // Replacing an existing identity's path with one is refused too.
      expectProblem(await putResource(app, a.token, a.tenant, "identities/web", { path: `/weft/node/${mine.name}/proxy` }), 400);
      expect((await putResource(app, a.token, a.tenant, "identities/weftish", { path: "/weftish/x" })).statusCode).toBe(201);
    });
  });
});
