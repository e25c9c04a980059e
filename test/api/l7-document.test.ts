/**
 * Issue 21 through the API: GET /v1/nodes/{node}/l7 for a three-node,
 * two-tenant platform (what each node learns, and what it never does), its
 * ETag and who may read it; the node's datapath for an L7 service; the
 * proxy's reported state in the node's status; the proxy address no
 * workload may take. Routes are written as rows (the httpRoutes resource is
 * another part's), through one write with its change-log entry, as the
 * resource's store does.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { httpRoutes } from "../../api/src/db/schema.ts";
import { write } from "../../api/src/db/transactions.ts";
import type { HttpRouteSpec, L7Document } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, freshVip, identity, mustPut, putResource, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

type Node = { name: string; credential: string; podCidr: string };
type Tenant = { tenant: string; token: string };

const numeric = (address: string): number => address.split(".").reduce((n, o) => n * 256 + Number(o), 0);

/** The first address of a block: the node's proxy address. */
const proxyOf = (podCidr: string): string => {
  const [base] = podCidr.split("/") as [string];
  const o = base.split(".").map(Number);
  return `${o[0]}.${o[1]}.${o[2]}.${o[3]! + 1}`;
};

describe.each(BACKENDS)("the node's L7 proxy on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: Tenant;
    let b: Tenant;
    // n1: a's web (the caller) and api v1; n2: a's api v2; n3: b's only.
    let n1: Node, n2: Node, n3: Node;
    const addr: Record<string, string> = {};
    const vip: Record<string, string> = {};
    const td: Record<string, string> = {};

    /** Writes an httpRoute row as its store would: the row and its change-log entry, in one write. */
    const putRoute = async (t: Tenant, name: string, spec: HttpRouteSpec) => {
      const tenantId = (await app.weft.directory.byName(t.tenant))!.id;
      await write(app.weft.db, { actor: "test", requestId: "l7-document", dryRun: false }, tenantId, async (w) => {
        await w.tx
          .insert(httpRoutes)
          .values({ tenantId, name, parentRefs: spec.parentRefs, rules: spec.rules, revision: w.revision })
          .onConflictDoUpdate({ target: [httpRoutes.tenantId, httpRoutes.name], set: { parentRefs: spec.parentRefs, rules: spec.rules, revision: w.revision } });
        await w.record({ tenantId, kind: "httpRoute", name, op: "upsert" }, "httpRoute.upsert");
      });
    };
    const documentOf = async (node: Node, headers: Record<string, string> = bearer(node.credential)) => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers });
      expect(res.statusCode, res.body).toBe(200);
      return { doc: res.json() as L7Document, etag: res.headers.etag as string, body: res.body };
    };
    const report = (node: Node, more: Record<string, unknown>) =>
      app.inject({ method: "PUT", url: `/v1/nodes/${node.name}/status`, headers: bearer(node.credential), payload: { appliedRevision: 0, hash: "none", counters: {}, errors: [], ...more } });
    const spiffe = (tenant: string, name: string) => `spiffe://${td[tenant]}/ns/test/sa/${name}`;
    const canary = (v1: number, v2: number): HttpRouteSpec => ({
      parentRefs: [{ name: "api", port: 80 }],
      rules: [{ matches: [{ path: { value: "/api" } }], backendRefs: [{ labels: { version: "v1" }, weight: v1 }, { labels: { version: "v2" }, weight: v2 }] }],
    });

    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write"]);
      b = await tenantWithToken(app, ["write"]);
      for (const t of [a, b]) td[t.tenant] = (await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: operator })).json().trustDomain;
      [n1, n2, n3] = [await registeredNode(app), await registeredNode(app), await registeredNode(app)];
      await identity(app, a.token, a.tenant, "web", { app: "web" });
      await identity(app, a.token, a.tenant, "api-v1", { app: "api", version: "v1" });
      await identity(app, a.token, a.tenant, "api-v2", { app: "api", version: "v2" });
      await identity(app, b.token, b.tenant, "bapi", { app: "api", version: "v1" });
      const place = async (t: Tenant, name: string, ident: string, node: Node) => {
        addr[name] = freshAddress(node.podCidr);
        await mustPut(app, t.token, t.tenant, `workloads/${name}`, { identity: ident, node: node.name, addresses: [addr[name]] });
      };
      await place(a, "web-1", "web", n1);
      await place(a, "api-1", "api-v1", n1);
      await place(a, "api-2", "api-v2", n2);
      await place(b, "bapi-1", "bapi", n3);
      for (const t of [a, b]) {
        vip[t.tenant] = freshVip();
        await mustPut(app, t.token, t.tenant, "services/api", {
          vip: vip[t.tenant],
          ports: [
            { port: 80, protocol: "tcp", targetPort: 8080 },
            { port: 53, protocol: "udp", targetPort: 5353 },
          ],
          backends: { selector: { labels: { app: "api" } } },
        });
      }
      await mustPut(app, a.token, a.tenant, "policies/api-in", {
        subject: { labels: { app: "api" } },
        ingress: [{ peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["GET"], pathPrefixes: ["/api"] } }],
      });
      await putRoute(a, "canary", canary(90, 10));
      await putRoute(b, "bcanary", { parentRefs: [{ name: "api" }], rules: [{ backendRefs: [{}] }] });
    });
    afterAll(async () => app?.close());

    describe("GET /v1/nodes/{node}/l7", () => {
      it("answers the node its frontends, backends, authorization and callers", async () => {
        const { doc } = await documentOf(n1);
        expect(doc.proxyAddress).toBe(proxyOf(n1.podCidr));
        expect(doc.frontends).toHaveLength(1);
        const f = doc.frontends[0]!;
        expect([f.tenant, f.service, f.vip, f.port]).toEqual([a.tenant, "api", vip[a.tenant], 80]);
        expect(f.rules).toEqual([
          { route: "canary", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/api" } }], backends: [expect.objectContaining({ weight: 90 }), expect.objectContaining({ weight: 10 })] },
        ]);
        const serversOf = (name: string) => doc.backends.find((x) => x.name === name)!.servers.map((s) => [s.address, s.port, s.weight]);
        expect(serversOf(f.rules[0]!.backends[0]!.backend)).toEqual([[addr["api-1"], 8080, 9]]);
        expect(serversOf(f.rules[0]!.backends[1]!.backend)).toEqual([[addr["api-2"], 8080, 1]]);
        expect(serversOf(f.defaultBackend).map(([address]) => address).sort()).toEqual([addr["api-1"], addr["api-2"]].sort());
        expect(f.authorization).toEqual({
          governed: true,
          entries: [{ action: "allow", sources: [spiffe(a.tenant, "web")], methods: ["GET"], pathPrefixes: ["/api"], policy: "api-in", rule: 0, groups: [0] }],
          groups: [{ subjects: [spiffe(a.tenant, "api-v1"), spiffe(a.tenant, "api-v2")] }],
        });
        expect(doc.callers).toEqual(
          [
            { address: addr["web-1"], tenant: a.tenant, spiffeId: spiffe(a.tenant, "web") },
            { address: addr["api-1"], tenant: a.tenant, spiffeId: spiffe(a.tenant, "api-v1") },
          ].sort((x, y) => numeric(x.address!) - numeric(y.address!)),
        );
      });

      it("never tells a node of another tenant's services, workloads or names", async () => {
        const three = await documentOf(n3);
        expect(three.doc.frontends.map((f) => [f.tenant, f.vip])).toEqual([[b.tenant, vip[b.tenant]]]);
        expect(three.doc.callers).toEqual([{ address: addr["bapi-1"], tenant: b.tenant, spiffeId: spiffe(b.tenant, "bapi") }]);
        for (const secret of [a.tenant, td[a.tenant]!, vip[a.tenant]!, addr["api-1"]!, addr["web-1"]!]) expect(three.body).not.toContain(secret);
        const one = await documentOf(n1);
        for (const secret of [b.tenant, td[b.tenant]!, vip[b.tenant]!, addr["bapi-1"]!]) expect(one.body).not.toContain(secret);
        // n2 hosts a's api v2, not its caller: it knows the frontend, and only its own workload as caller.
        const two = await documentOf(n2);
        expect(two.doc.callers.map((c) => c.address)).toEqual([addr["api-2"]]);
      });

      it("is the node's own: another node's credential gets 404, no credential 401, the operator reads any", async () => {
        const other = await app.inject({ url: `/v1/nodes/${n1.name}/l7`, headers: bearer(n3.credential) });
        expectProblem(other, 404);
        expectProblem(await app.inject({ url: `/v1/nodes/${n1.name}/l7` }), 401);
        const tenantToken = await app.inject({ url: `/v1/nodes/${n1.name}/l7`, headers: bearer(a.token) });
        expect([403, 404]).toContain(tenantToken.statusCode);
        const byOperator = await documentOf(n1, operator);
        expect(byOperator.body).toBe((await documentOf(n1)).body);
        expectProblem(await app.inject({ url: `/v1/nodes/no-such-node/l7`, headers: operator }), 404);
      });

      it("answers If-None-Match with 304 while the document is the same, and a new ETag when a route changes", async () => {
        const first = await documentOf(n1);
        expect(first.etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
        const again = await app.inject({ url: `/v1/nodes/${n1.name}/l7`, headers: { ...bearer(n1.credential), "if-none-match": first.etag } });
        expect(again.statusCode).toBe(304);
        expect(again.body).toBe("");
        await putRoute(a, "canary", canary(50, 50));
        const changed = await documentOf(n1);
        expect(changed.etag).not.toBe(first.etag);
        expect(changed.doc.frontends[0]!.rules[0]!.backends.map((x) => x.weight)).toEqual([50, 50]);
        // An unrelated tenant's change moves nothing here.
        await putRoute(b, "bcanary", { parentRefs: [{ name: "api" }], rules: [{ backendRefs: [{ weight: 3 }] }] });
        expect((await documentOf(n1)).etag).toBe(changed.etag);
        await putRoute(a, "canary", canary(90, 10));
        expect((await documentOf(n1)).etag).toBe(first.etag);
      });
    });

    describe("the node's maps for an L7 service", () => {
      it("hold the frontend in l7, not svc; every node's proxy address in ipcache; the proxy allowed at the governed backend", async () => {
        const maps = (await app.inject({ url: `/v1/nodes/${n1.name}/datapath`, headers: bearer(n1.credential) })).json().maps;
        expect(maps.l7).toEqual([{ key: { vip: vip[a.tenant], port: 80, protocol: 6 }, value: { http: true } }]);
        expect(maps.svc.filter((e: { key: { vip: string } }) => e.key.vip === vip[a.tenant]).map((e: { key: { port: number } }) => e.key.port)).toEqual([53]);
        const proxies = maps.ipcache.filter((e: { value: { identity: number } }) => e.value.identity === 5);
        for (const n of [n1, n2, n3]) expect(proxies).toContainEqual({ key: { prefix: `${proxyOf(n.podCidr)}/32` }, value: { identity: 5, tenant: 0 } });
        const v1 = (await app.inject({ url: `/v1/tenants/${a.tenant}/identities/api-v1`, headers: bearer(a.token) })).json().securityIdentity;
        expect(maps.policy).toContainEqual({ key: { localIdentity: v1, remoteIdentity: 5, port: 8080, protocol: 6, direction: "ingress" }, value: { action: "allow", ruleId: 1 } });
      });
    });

    describe("the proxy's state in the node's status", () => {
      it("is null until reported; then shown with converged against the current document; kept when a report leaves it out", async () => {
        const before = await app.inject({ url: `/v1/nodes/${n2.name}`, headers: operator });
        expect(before.json().l7).toBeNull();
        const { etag } = await documentOf(n2);
        const reported = await report(n2, { l7: { state: "running", appliedEtag: etag } });
        expect(reported.statusCode, reported.body).toBe(200);
        expect(reported.json().l7).toEqual({ state: "running", appliedEtag: etag, converged: true });
        // A report without l7 (an agent without a proxy) leaves it, and the transport it reports is stored beside it.
        const transport = { state: "running", endpoint: "198.18.250.2:15008" };
        expect((await report(n2, { transport })).json()).toMatchObject({ l7: { state: "running", appliedEtag: etag, converged: true }, transport });
        // The document moves on: the node is no longer converged until it reports the new ETag.
        await putRoute(a, "canary", canary(70, 30));
        const stale = await app.inject({ url: `/v1/nodes/${n2.name}`, headers: bearer(n2.credential) });
        expect(stale.json().l7).toEqual({ state: "running", appliedEtag: etag, converged: false });
        const fresh = await documentOf(n2);
        const caughtUp = await report(n2, { l7: { state: "running", appliedEtag: fresh.etag } });
        expect(caughtUp.json()).toMatchObject({ l7: { converged: true }, transport });
        // Down, with why: not converged whatever ETag it names; listed the same way.
        const down = await report(n2, { l7: { state: "down", detail: "haproxy exited (status 1); restarting in 2s" } });
        expect(down.json().l7).toEqual({ state: "down", detail: "haproxy exited (status 1); restarting in 2s", converged: false });
        const listed = await app.inject({ url: `/v1/nodes?limit=1000`, headers: operator });
        expect(listed.json().items.find((n: { name: string }) => n.name === n2.name).l7).toMatchObject({ state: "down", converged: false });
        await putRoute(a, "canary", canary(90, 10));
      });

      it("keeps both the transport (its null endpoint too) and the proxy across reports that name neither", async () => {
        const { etag } = await documentOf(n3);
        await report(n3, { transport: { state: "off", endpoint: null }, l7: { state: "running", appliedEtag: etag } });
        const plain = await report(n3, {});
        expect(plain.statusCode, plain.body).toBe(200);
        expect(plain.json()).toMatchObject({ transport: { state: "off", endpoint: null }, l7: { state: "running", appliedEtag: etag, converged: true } });
        const read = await app.inject({ url: `/v1/nodes/${n3.name}`, headers: operator });
        expect(read.statusCode, read.body).toBe(200);
        expect(read.json().transport).toEqual({ state: "off", endpoint: null });
      });

      it("refuses a report whose l7 is not one the schema admits, and keeps the stored one", async () => {
        for (const l7 of [{ state: "exploded" }, { state: "running", appliedEtag: "x".repeat(200) }, { state: "running", extra: 1 }]) {
          expectProblem(await report(n1, { l7 }), 400);
        }
        expect((await app.inject({ url: `/v1/nodes/${n1.name}`, headers: operator })).json().l7).toBeNull();
      });
    });

    describe("the proxy address", () => {
      // 422, as every other address a workload may not hold (outside its block, special-use): the request is well formed.
      it("is no workload's: a workload naming it is refused with 422 naming the field, dry run or not, and nothing is written", async () => {
        const proxy = proxyOf(n1.podCidr);
        const before = await tenantChanges(app, a.tenant);
        for (const [addresses, field] of [
          [[proxy], "body.addresses.0"],
          [[freshAddress(n1.podCidr), proxy], "body.addresses.1"],
        ] as const) {
          for (const query of [undefined, { dryRun: "true" }]) {
            const res = await putResource(app, a.token, a.tenant, "workloads/squatter", { identity: "web", node: n1.name, addresses }, query ? { query } : {});
            const problem = expectProblem(res, 422);
            expect(problem.errors).toEqual([expect.objectContaining({ field, message: expect.stringContaining("L7 proxy address") })]);
          }
        }
        expect((await app.inject({ url: `/v1/tenants/${a.tenant}/workloads/squatter`, headers: bearer(a.token) })).statusCode).toBe(404);
        expect(await tenantChanges(app, a.tenant)).toBe(before);
        // The next address is an ordinary one.
        const ok = await putResource(app, a.token, a.tenant, "workloads/squatter", { identity: "web", node: n1.name, addresses: [freshAddress(n1.podCidr)] }, { query: { dryRun: "true" } });
        expect(ok.statusCode, ok.body).toBe(201);
      });
    });
  });
});
