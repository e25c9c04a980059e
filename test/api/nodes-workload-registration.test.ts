// Issue 5 item 1: workloads "registered by a tenant token or by the agent of
// that node". A node credential may create, replace and delete a tenant's
// workloads on its own node only: never place one on another node, never
// take over or delete one another node runs (that answers like a missing
// one), never read tenant APIs.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, expectProblem, operator, routeTable, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { registeredNode, uniqueAddress } from "../support/nodes.ts";
import { requestFor, routeLabel as label } from "../support/routes.ts";

const routes = (await routeTable()).filter((r) => r.url.startsWith("/v1/"));
const nodeWritable = routes.filter((r) => r.auth?.who === "tenant" && r.auth.nodes && r.url.includes("/workloads/"));

describe("the route table", () => {
  it("opens exactly the workload writes to node credentials, at the write scope", () => {
    expect(nodeWritable.map(label).sort()).toEqual(["DELETE /v1/tenants/:tenant/workloads/:name", "PUT /v1/tenants/:tenant/workloads/:name"]);
    for (const r of nodeWritable) expect(r.auth).toEqual({ who: "tenant", scope: "write", nodes: true });
    // Reading a tenant's workloads stays the tenant's.
    const reads = routes.filter((r) => r.method === "GET" && r.url.startsWith("/v1/tenants/:tenant/workloads"));
    expect(reads.map(label).sort()).toEqual([
      "GET /v1/tenants/:tenant/workloads",
      "GET /v1/tenants/:tenant/workloads/:name",
      "GET /v1/tenants/:tenant/workloads/:name/health",
    ]);
    for (const r of reads) expect(r.auth).toEqual({ who: "tenant", scope: "read" });
  });
});

describe.each(BACKENDS)("workloads registered by node agents on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let n1: { name: string; credential: string };
    let n2: { name: string; credential: string };
    let acme: { tenant: string; token: string };
    let other: { tenant: string; token: string };
    beforeAll(async () => {
      app = await startApi(backend);
      n1 = await registeredNode(app);
      n2 = await registeredNode(app);
      acme = await tenantWithToken(app, ["admin"]);
      other = await tenantWithToken(app, ["admin"]);
      for (const t of [acme, other]) {
        const res = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/web`, headers: bearer(t.token), payload: { path: "/web", allowNodeRegistration: true } });
        expect(res.statusCode, res.body).toBe(201);
      }
    });
    afterAll(async () => app?.close());

    const url = (tenant: string, name: string) => `/v1/tenants/${tenant}/workloads/${name}`;
    const put = (headers: Record<string, string>, tenant: string, name: string, payload: Record<string, unknown>, query = "") =>
      app.inject({ method: "PUT", url: `${url(tenant, name)}${query}`, headers, payload });
    const del = (headers: Record<string, string>, tenant: string, name: string, query = "") =>
      app.inject({ method: "DELETE", url: `${url(tenant, name)}${query}`, headers });
    const read = (tenant: { tenant: string; token: string }, name: string) => app.inject({ url: url(tenant.tenant, name), headers: bearer(tenant.token) });
    const spec = (node: string, address = uniqueAddress(node)) => ({ identity: "web", node, addresses: [address] });

    it("creates and replaces a workload on itself, audited as the node, and finds it in its datapath", async () => {
      const name = uniqueName("w");
      const address = uniqueAddress(n1.name);
      const created = await put(bearer(n1.credential), acme.tenant, name, { ...spec(n1.name, address), interface: "veth1" });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ name, identity: "web", node: n1.name, addresses: [address], interface: "veth1" });
      expect(created.headers.etag).toBe(created.json().etag);
      // The tenant sees what the node declared.
      expect((await read(acme, name)).json()).toMatchObject({ node: n1.name, addresses: [address] });

      const moved = uniqueAddress(n1.name);
      const replaced = await put(bearer(n1.credential), acme.tenant, name, spec(n1.name, moved));
      expect(replaced.statusCode, replaced.body).toBe(200);
      expect(replaced.json().addresses).toEqual([moved]);

      const audit = await app.inject({ url: `/v1/tenants/${acme.tenant}/audit`, headers: bearer(acme.token) });
      const entries = (audit.json().items as { actor: string; action: string; resource: string }[]).filter((e) => e.resource === `workload/${name}`);
      expect(entries.map((e) => [e.actor, e.action]).sort()).toEqual([
        [`node:${n1.name}`, "workload.create"],
        [`node:${n1.name}`, "workload.replace"],
      ]);

      const dp = await app.inject({ url: `/v1/nodes/${n1.name}/datapath`, headers: bearer(n1.credential) });
      expect(dp.statusCode).toBe(200);
      const endpoints = (dp.json().maps.endpoint as { key: { address: string } }[]).map((e) => e.key.address);
      expect(endpoints).toContain(moved);
      expect(endpoints).not.toContain(address);
      const listed = await app.inject({ url: `/v1/nodes/${n1.name}/workloads`, headers: bearer(n1.credential) });
      expect((listed.json().items as { tenant: string; name: string }[]).some((w) => w.tenant === acme.tenant && w.name === name)).toBe(true);
    });

    it("may not place a workload on another node: 403 on body.node, nothing written", async () => {
      const name = uniqueName("w");
      const before = await currentRevision(app);
      const res = await put(bearer(n1.credential), acme.tenant, name, spec(n2.name));
      const body = expectProblem(res, 403);
      expect(body.errors).toEqual([{ field: "body.node", message: expect.stringContaining(n1.name) }]);
      expect(await currentRevision(app)).toBe(before);
      expectProblem(await read(acme, name), 404);
    });

    it("may not take over, move or replace a workload another node runs: 403, the row unchanged", async () => {
      const name = uniqueName("w");
      const address = uniqueAddress(n2.name);
      expect((await put(bearer(acme.token), acme.tenant, name, spec(n2.name, address))).statusCode).toBe(201);
      const before = await currentRevision(app);
      expectProblem(await put(bearer(n1.credential), acme.tenant, name, spec(n1.name)), 403);
      // Even naming the node it runs on: a node changes only its own workloads.
      expectProblem(await put(bearer(n1.credential), acme.tenant, name, spec(n2.name)), 403);
      expect(await currentRevision(app)).toBe(before);
      expect((await read(acme, name)).json()).toMatchObject({ node: n2.name, addresses: [address] });
      // And it cannot move its own workload away to another node either.
      const own = uniqueName("w");
      expect((await put(bearer(n1.credential), acme.tenant, own, spec(n1.name))).statusCode).toBe(201);
      expectProblem(await put(bearer(n1.credential), acme.tenant, own, spec(n2.name)), 403);
      expect((await read(acme, own)).json().node).toBe(n1.name);
    });

    it("deletes a workload on itself; another node's answers exactly like a missing one and stays", async () => {
      const mine = uniqueName("w");
      const theirs = uniqueName("w");
      expect((await put(bearer(n1.credential), acme.tenant, mine, spec(n1.name))).statusCode).toBe(201);
      expect((await put(bearer(acme.token), acme.tenant, theirs, spec(n2.name))).statusCode).toBe(201);

      const before = await currentRevision(app);
      const refused = expectProblem(await del(bearer(n1.credential), acme.tenant, theirs), 404);
      const ghost = uniqueName("w");
      const missing = expectProblem(await del(bearer(n1.credential), acme.tenant, ghost), 404);
      expect(refused.detail?.replace(theirs, "<w>")).toBe(missing.detail?.replace(ghost, "<w>"));
      expect(await currentRevision(app)).toBe(before);
      expect((await read(acme, theirs)).statusCode).toBe(200);

      expect((await del(bearer(n1.credential), acme.tenant, mine)).statusCode).toBe(204);
      expectProblem(await read(acme, mine), 404);
      // The node that runs it may delete it.
      expect((await del(bearer(n2.credential), acme.tenant, theirs)).statusCode).toBe(204);
      expectProblem(await read(acme, theirs), 404);
    });

    it("honours dry runs and If-Match like a tenant token", async () => {
      const name = uniqueName("w");
      const before = await currentRevision(app);
      const dry = await put(bearer(n1.credential), acme.tenant, name, spec(n1.name), "?dryRun=true");
      expect(dry.statusCode, dry.body).toBe(201);
      expect(await currentRevision(app)).toBe(before);
      expectProblem(await read(acme, name), 404);
      // A dry run refuses what the write would.
      expectProblem(await put(bearer(n1.credential), acme.tenant, name, spec(n2.name), "?dryRun=true"), 403);

      const created = await put(bearer(n1.credential), acme.tenant, name, spec(n1.name));
      expect(created.statusCode).toBe(201);
      const stale = await app.inject({
        method: "PUT",
        url: url(acme.tenant, name),
        headers: { ...bearer(n1.credential), "if-match": '"0"' },
        payload: spec(n1.name),
      });
      expectProblem(stale, 412);
      expect((await del(bearer(n1.credential), acme.tenant, name, "?dryRun=true")).statusCode).toBe(204);
      expect((await read(acme, name)).statusCode).toBe(200);
    });

    it("writes into any tenant as that tenant's workload, with that tenant's identities only", async () => {
      const name = uniqueName("w");
      // "web" exists in both tenants; "acme-only" only in acme: in the other tenant a node gets the
      // 403 of an identity that does not let it register (test/security/node-identities.test.ts).
      const r = await app.inject({ method: "PUT", url: `/v1/tenants/${acme.tenant}/identities/acme-only`, headers: bearer(acme.token), payload: { path: "/acme-only", allowNodeRegistration: true } });
      expect(r.statusCode).toBe(201);
      const refused = expectProblem(await put(bearer(n1.credential), other.tenant, name, { ...spec(n1.name), identity: "acme-only" }), 403);
      expect(refused.errors?.[0]?.field).toBe("body.identity");
      expect((await put(bearer(n1.credential), other.tenant, name, spec(n1.name))).statusCode).toBe(201);
      expect((await read(other, name)).json().node).toBe(n1.name);
      expectProblem(await read(acme, name), 404);
    });

    it("a missing tenant answers 404; tenant reads stay closed (403); a deleted node's credential is refused (401)", async () => {
      const ghost = uniqueName("t");
      const missing = expectProblem(await put(bearer(n1.credential), ghost, "w", spec(n1.name)), 404);
      expect(missing.detail).toContain(ghost);
      expectProblem(await del(bearer(n1.credential), ghost, "w"), 404);
      expectProblem(await app.inject({ url: `/v1/tenants/${acme.tenant}/workloads`, headers: bearer(n1.credential) }), 403);
      expectProblem(await app.inject({ url: url(acme.tenant, "w"), headers: bearer(n1.credential) }), 403);
      // Other kinds stay closed to nodes.
      expectProblem(
        await app.inject({ method: "PUT", url: `/v1/tenants/${acme.tenant}/identities/x`, headers: bearer(n1.credential), payload: { path: "/x" } }),
        403,
      );

      const gone = await registeredNode(app);
      const name = uniqueName("w");
      expect((await put(bearer(gone.credential), acme.tenant, name, spec(gone.name))).statusCode).toBe(201);
      expect((await del(bearer(acme.token), acme.tenant, name)).statusCode).toBe(204);
      expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${gone.name}`, headers: operator })).statusCode).toBe(204);
      expectProblem(await put(bearer(gone.credential), acme.tenant, uniqueName("w"), spec(gone.name)), 401);
    });

    it.each(nodeWritable.map((r) => [label(r), r] as const))("%s: a node gets for a missing tenant exactly what a tenant token gets", async (_l, route) => {
      const ghost = uniqueName("t");
      const asNode = expectProblem(await app.inject(requestFor(route, ghost, bearer(n1.credential), { node: n1.name })), 404);
      const asTenant = expectProblem(await app.inject(requestFor(route, ghost, bearer(acme.token))), 404);
      expect({ ...asNode, instance: undefined, requestId: undefined }).toEqual({ ...asTenant, instance: undefined, requestId: undefined });
      // In an existing tenant, a generated request names no workload of this node: refused, nothing written.
      const before = await currentRevision(app);
      const res = await app.inject(requestFor(route, acme.tenant, bearer(n1.credential)));
      expectProblem(res, route.method === "PUT" ? 403 : 404);
      expect(await currentRevision(app)).toBe(before);
    });
  });
});
