import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, freshVip, identity, mustPut, putResource, refusedUnwritten, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

describe.each(BACKENDS)("workloads, services and policies on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let b: { tenant: string; token: string };
    let node: string;
    let podCidr: string;
    const vip = freshVip();
    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write"]);
      b = await tenantWithToken(app, ["write"]);
      ({ name: node, podCidr } = await registeredNode(app, { zone: "zone-a" }));
      await identity(app, a.token, a.tenant, "web", { app: "web" });
      await identity(app, a.token, a.tenant, "db", { app: "db" });
      await identity(app, b.token, b.tenant, "secret", { app: "secret" });
    });
    afterAll(async () => app?.close());

    /** A request that must be refused with this status, naming `field`, with nothing written in either tenant. */
    const refused = (res: Promise<LightMyRequestResponse>, status: number, field?: string) => refusedUnwritten(app, [a.tenant, b.tenant], res, status, field);

    it("creates, reads, replaces, lists and deletes a workload with the resource conventions", async () => {
      const address = freshAddress(podCidr);
      const url = `/v1/tenants/${a.tenant}/workloads/w1`;
      const created = await putResource(app, a.token, a.tenant, "workloads/w1", { identity: "web", node, addresses: [address] });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ name: "w1", identity: "web", node, addresses: [address], interface: null });
      const etag = created.headers.etag as string;
      expect(created.json().etag).toBe(etag);
      expect((await app.inject({ url, headers: { ...bearer(a.token), "if-none-match": etag } })).statusCode).toBe(304);
      // If-None-Match: * makes a PUT create-only; If-Match must name the current version.
      await refused(putResource(app, a.token, a.tenant, "workloads/w1", { identity: "web", node, addresses: [address] }, { headers: { "if-none-match": "*" } }), 412);
      await refused(putResource(app, a.token, a.tenant, "workloads/w1", { identity: "db", node, addresses: [address] }, { headers: { "if-match": '"1"' } }), 412);
      const replaced = await putResource(app, a.token, a.tenant, "workloads/w1", { identity: "db", node, addresses: [address], interface: "veth12" }, { headers: { "if-match": etag } });
      expect(replaced.statusCode, replaced.body).toBe(200);
      expect(replaced.json()).toMatchObject({ identity: "db", interface: "veth12" });
      const list = await app.inject({ url: `/v1/tenants/${a.tenant}/workloads`, headers: bearer(a.token) });
      expect(list.json()).toMatchObject({ items: [{ name: "w1" }], nextCursor: null });
      // Another tenant sees nothing of it.
      expect((await app.inject({ url, headers: bearer(b.token) })).statusCode).toBe(404);
      expect((await app.inject({ method: "DELETE", url, headers: bearer(a.token) })).statusCode).toBe(204);
      expect((await app.inject({ url, headers: bearer(a.token) })).statusCode).toBe(404);
    });

    it("allocates a VIP from the service range when none is given, and keeps it across replaces", async () => {
      const spec = { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { identity: "web" } } };
      const created = await putResource(app, a.token, a.tenant, "services/frontend", spec);
      expect(created.statusCode, created.body).toBe(201);
      const vip = created.json().vip as string;
      expect(vip).toMatch(/^198\.19\.\d+\.\d+$/);
      expect(created.json()).toMatchObject({ vipAllocated: true, loadBalancing: "random", topology: { preferSameZone: false } });
      const replaced = await putResource(app, a.token, a.tenant, "services/frontend", { ...spec, loadBalancing: "maglev", topology: { preferSameZone: true } });
      expect(replaced.json()).toMatchObject({ vip, loadBalancing: "maglev", topology: { preferSameZone: true } });
      // A second service gets another VIP.
      const other = await mustPut(app, a.token, a.tenant, "services/other", spec);
      expect(other.vip).not.toBe(vip);
    });

    it("creates a policy with identity and CIDR peers and lists it", async () => {
      const created = await putResource(app, a.token, a.tenant, "policies/p1", {
        subject: { identity: "db" },
        ingress: [{ peers: [{ identity: "web" }, { cidr: "192.0.2.0/24" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow" }],
      });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ name: "p1", subject: { identity: "db" }, egress: null });
      const got = await app.inject({ url: `/v1/tenants/${a.tenant}/policies/p1`, headers: bearer(a.token) });
      expect(got.json().ingress).toHaveLength(1);
    });

    it("sets the tenant's default action", async () => {
      const res = await app.inject({ method: "PUT", url: `/v1/tenants/${a.tenant}`, headers: operator, payload: { defaultAction: "deny" } });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().defaultAction).toBe("deny");
      expect((await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: bearer(a.token) })).json().defaultAction).toBe("deny");
    });

    describe("bad input is refused with a problem naming the field, and writes nothing", () => {
      it("overlapping VIPs (409 body.vip), also across tenants", async () => {
        const spec = { vip, ports: [{ port: 80, protocol: "tcp", targetPort: 80 }], backends: { explicit: [] } };
        await mustPut(app, a.token, a.tenant, "services/fixed", spec);
        await refused(putResource(app, a.token, a.tenant, "services/fixed2", spec), 409, "body.vip");
        await refused(putResource(app, b.token, b.tenant, "services/fixed", spec), 409, "body.vip");
      });

      it("weights out of range (400)", async () => {
        for (const weight of [-1, 1_000_001, 0.5]) {
          const spec = { ports: [{ port: 80, protocol: "tcp", targetPort: 80 }], backends: { explicit: [{ address: "192.0.2.1", weight }] } };
          const body = await refused(putResource(app, a.token, a.tenant, "services/weighted", spec), 400);
          expect(body.errors?.map((e) => e.field)).toContain("body.backends.explicit.0.weight");
        }
      });

      it("selectors naming another tenant's identity, or an unknown one (422)", async () => {
        const ports = [{ port: 80, protocol: "tcp", targetPort: 80 }];
        await refused(putResource(app, a.token, a.tenant, "services/s", { ports, backends: { selector: { identity: "secret" } } }), 422, "body.backends.selector.identity");
        await refused(putResource(app, a.token, a.tenant, "policies/p", { subject: { identity: "secret" } }), 422, "body.subject.identity");
        await refused(
          putResource(app, a.token, a.tenant, "policies/p", { subject: {}, egress: [{ peers: [{ cidr: "10.0.0.0/8" }, { identity: "secret" }], action: "allow" }] }),
          422,
          "body.egress.0.peers.1.identity",
        );
        await refused(putResource(app, a.token, a.tenant, "workloads/w", { identity: "secret", node, addresses: [freshAddress(podCidr)] }), 422, "body.identity");
        // The same answer for a name that exists nowhere: nothing tells the two apart.
        const unknown = await refused(putResource(app, a.token, a.tenant, "policies/p", { subject: { identity: "nowhere" } }), 422, "body.subject.identity");
        expect(unknown.detail).toBe('identity "nowhere" does not exist in this tenant');
      });

      it("explicit backends naming another tenant's workload (422)", async () => {
        await mustPut(app, b.token, b.tenant, "workloads/theirs", { identity: "secret", node, addresses: [freshAddress(podCidr)] });
        const spec = { ports: [{ port: 80, protocol: "tcp", targetPort: 80 }], backends: { explicit: [{ workload: "theirs", weight: 1 }] } };
        await refused(putResource(app, a.token, a.tenant, "services/s", spec), 422, "body.backends.explicit.0.workload");
      });

      it("an unknown node (422 body.node)", async () => {
        await refused(putResource(app, a.token, a.tenant, "workloads/w", { identity: "web", node: "no-such-node", addresses: [freshAddress(podCidr)] }), 422, "body.node");
      });

      it("a duplicate workload address across the platform (409), or a service's VIP", async () => {
        const taken = freshAddress(podCidr);
        await mustPut(app, b.token, b.tenant, "workloads/holder", { identity: "secret", node, addresses: [taken] });
        const res = await refused(putResource(app, a.token, a.tenant, "workloads/w", { identity: "web", node, addresses: [freshAddress(podCidr), taken] }), 409, "body.addresses.1");
        // The other tenant's workload is not named.
        expect(JSON.stringify(res)).not.toContain("holder");
        // A VIP lies in the service CIDR, never in a node's block: refused before anyone's holding is looked at.
        await refused(putResource(app, a.token, a.tenant, "workloads/w", { identity: "web", node, addresses: [vip] }), 422, "body.addresses.0");
      });

      it("malformed addresses, CIDRs with host bits, repeated ports, a backend with both workload and address (400)", async () => {
        await refused(putResource(app, a.token, a.tenant, "workloads/w", { identity: "web", node, addresses: ["10.0.0.256"] }), 400, "body.addresses.0");
        await refused(putResource(app, a.token, a.tenant, "policies/p", { subject: {}, ingress: [{ peers: [{ cidr: "10.1.2.3/16" }], action: "deny" }] }), 400, "body.ingress.0.peers.0.cidr");
        const port = { port: 80, protocol: "tcp", targetPort: 80 };
        await refused(putResource(app, a.token, a.tenant, "services/s", { ports: [port, port], backends: { explicit: [] } }), 400, "body.ports.1");
        await refused(
          putResource(app, a.token, a.tenant, "services/s", { ports: [port], backends: { explicit: [{ workload: "x", address: "192.0.2.1", weight: 1 }] } }),
          400,
          "body.backends.explicit.0",
        );
      });

      it("a dry run validates everything and writes nothing", async () => {
        const before = await tenantChanges(app, a.tenant);
        const res = await putResource(app, a.token, a.tenant, "workloads/dry", { identity: "web", node, addresses: [freshAddress(podCidr)] }, { query: { dryRun: "true" } });
        expect(res.statusCode, res.body).toBe(201);
        expect(await tenantChanges(app, a.tenant)).toBe(before);
        expect((await app.inject({ url: `/v1/tenants/${a.tenant}/workloads/dry`, headers: bearer(a.token) })).statusCode).toBe(404);
      });
    });
  });
});
