/**
 * Issue 18 through the API: the policy field transport and the tenant's
 * defaultTransport (refusals, nothing written), the node's transport
 * endpoint in its status report, and GET /v1/nodes/{node}/transport for a
 * two-node, two-tenant platform (what each node learns, and what it never
 * does: another tenant's names, any key), its ETag and who may read it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import type { TransportDocument } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut, putResource, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

type Node = { name: string; credential: string; podCidr: string };

describe.each(BACKENDS)("the node-to-node transport on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let b: { tenant: string; token: string };
    // n1: tenant a's client; n2: a's web and b's web; n3: b's client.
    let n1: Node, n2: Node, n3: Node;
    const addr: Record<string, string> = {};
    const td: Record<string, string> = {};
    const endpoint = { n1: "198.18.244.1:15008", n2: "198.18.244.2:15008", n3: "198.18.244.3:15008" };

    const report = (node: Node, transport: unknown, credential = node.credential) =>
      app.inject({
        method: "PUT",
        url: `/v1/nodes/${node.name}/status`,
        headers: bearer(credential),
        payload: { appliedRevision: 0, hash: "none", counters: {}, errors: [], transport },
      });
    const documentOf = async (node: Node, headers = bearer(node.credential)) => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}/transport`, headers });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^application\/json/);
      return { doc: res.json() as TransportDocument, etag: res.headers.etag as string, body: res.body };
    };
    const spiffe = (tenant: string, name: string) => `spiffe://${td[tenant]}/ns/test/sa/${name}`;

    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write"]);
      b = await tenantWithToken(app, ["write"]);
      for (const t of [a, b]) {
        const res = await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: operator });
        td[t.tenant] = res.json().trustDomain;
      }
      [n1, n2, n3] = [await registeredNode(app), await registeredNode(app), await registeredNode(app)];
      for (const [t, name] of [[a, "client"], [a, "web"], [b, "bclient"], [b, "bweb"]] as const) await identity(app, t.token, t.tenant, name, { app: name });
      const place = async (t: { tenant: string; token: string }, name: string, ident: string, node: Node) => {
        addr[name] = freshAddress(node.podCidr);
        await mustPut(app, t.token, t.tenant, `workloads/${name}`, { identity: ident, node: node.name, addresses: [addr[name]] });
      };
      await place(a, "client-1", "client", n1);
      await place(a, "web-1", "web", n2);
      await place(b, "bweb-1", "bweb", n2);
      await place(b, "bclient-1", "bclient", n3);
      await mustPut(app, a.token, a.tenant, "policies/web-in", {
        subject: { identity: "web" },
        ingress: [{ peers: [{ identity: "client" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", transport: "mtls" }],
      });
      await mustPut(app, b.token, b.tenant, "policies/bweb-in", {
        subject: { identity: "bweb" },
        ingress: [{ peers: [{ identity: "bclient" }], ports: [{ port: 9090 }], action: "allow", transport: "mtls" }],
      });
    });
    afterAll(async () => app?.close());

    describe("policy rules and the tenant setting", () => {
      const refused = [
        ["a deny rule", { peers: [{ identity: "client" }], action: "deny", transport: "mtls" }],
        ["a udp port", { peers: [{ identity: "client" }], ports: [{ port: 53, protocol: "udp" }], action: "allow", transport: "mtls" }],
        ["any protocol on a port", { peers: [{ identity: "client" }], ports: [{ port: 80, protocol: "any" }], action: "allow", transport: "mtls" }],
        ["a CIDR peer", { peers: [{ identity: "client" }, { cidr: "198.19.0.0/16" }], action: "allow", transport: "mtls" }],
      ] as const;
      it.each(refused)("refuses mtls on %s with 400 naming the field, and writes nothing", async (_what, rule) => {
        const before = await tenantChanges(app, a.tenant);
        for (const query of [undefined, { dryRun: "true" }]) {
          const res = await putResource(app, a.token, a.tenant, "policies/refused", { subject: { identity: "web" }, egress: [rule] }, query ? { query } : {});
          const problem = expectProblem(res, 400);
          expect(problem.errors).toEqual([expect.objectContaining({ field: "body.egress.0.transport" })]);
        }
        const got = await app.inject({ url: `/v1/tenants/${a.tenant}/policies/refused`, headers: bearer(a.token) });
        expect(got.statusCode).toBe(404);
        expect(await tenantChanges(app, a.tenant)).toBe(before);
      });

      it("refuses a transport that is not plaintext or mtls, on a rule and on the tenant", async () => {
        const rule = await putResource(app, a.token, a.tenant, "policies/odd", { subject: {}, ingress: [{ action: "allow", transport: "wireguard" }] });
        expect(JSON.stringify(expectProblem(rule, 400).errors)).toContain("transport");
        const tenant = await app.inject({ method: "PUT", url: `/v1/tenants/${a.tenant}`, headers: operator, payload: { defaultTransport: "tls" } });
        expect(JSON.stringify(expectProblem(tenant, 400).errors)).toContain("defaultTransport");
      });

      it("shows the rule's transport on read, and the tenant's defaultTransport (plaintext unless set)", async () => {
        const got = await app.inject({ url: `/v1/tenants/${a.tenant}/policies/web-in`, headers: bearer(a.token) });
        expect(got.json().ingress[0].transport).toBe("mtls");
        const tenant = await app.inject({ url: `/v1/tenants/${b.tenant}`, headers: operator });
        expect(tenant.json().defaultTransport).toBe("plaintext");
      });

      it("a tenant's default mtls reaches rules that name no transport; a dry run of the setting writes nothing", async () => {
        const t = await tenantWithToken(app, ["write"]);
        const n4 = await registeredNode(app);
        await identity(app, t.token, t.tenant, "x", {});
        await mustPut(app, t.token, t.tenant, "workloads/x-1", { identity: "x", node: n4.name, addresses: [freshAddress(n4.podCidr)] });
        await mustPut(app, t.token, t.tenant, "policies/x-in", { subject: { identity: "x" }, ingress: [{ peers: [{ identity: "x" }], ports: [{ port: 7000 }], action: "allow" }] });
        const steerOf = async () => {
          const res = await app.inject({ url: `/v1/nodes/${n4.name}/datapath`, headers: bearer(n4.credential) });
          const xId = (await app.inject({ url: `/v1/tenants/${t.tenant}/identities/x`, headers: bearer(t.token) })).json().securityIdentity;
          return (res.json().maps.steer as { key: { localIdentity: number } }[]).filter((e) => e.key.localIdentity === xId);
        };
        expect(await steerOf()).toEqual([]);
        const dry = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}?dryRun=true`, headers: operator, payload: { defaultTransport: "mtls" } });
        expect(dry.statusCode, dry.body).toBe(200);
        expect(await steerOf()).toEqual([]);
        const put = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}`, headers: operator, payload: { defaultTransport: "mtls" } });
        expect(put.statusCode, put.body).toBe(200);
        expect(put.json().defaultTransport).toBe("mtls");
        // x steers to itself both ways: its egress (opener) and its ingress, on port 7000.
        expect((await steerOf()).map((e) => JSON.stringify(e.key)).length).toBe(4);
      });
    });

    describe("the node's transport endpoint", () => {
      it("is stored from the status report and shown on the node", async () => {
        for (const [node, ep] of [[n1, endpoint.n1], [n2, endpoint.n2], [n3, endpoint.n3]] as const) {
          const res = await report(node, { endpoint: ep, state: "running" });
          expect(res.statusCode, res.body).toBe(200);
          expect(res.json().transport).toEqual({ endpoint: ep, state: "running" });
        }
        // A report without the field (an agent without a transport) leaves it as it was.
        const silent = await app.inject({
          method: "PUT",
          url: `/v1/nodes/${n1.name}/status`,
          headers: bearer(n1.credential),
          payload: { appliedRevision: 0, hash: "none", counters: { x: 1 }, errors: [] },
        });
        expect(silent.statusCode, silent.body).toBe(200);
        expect(silent.json()).toMatchObject({ counters: { x: 1 }, transport: { endpoint: endpoint.n1, state: "running" } });
      });

      it("another node's credential cannot report for it", async () => {
        expectProblem(await report(n2, { endpoint: "198.18.244.99:15008", state: "running" }, n1.credential), 404);
        const shown = await app.inject({ url: `/v1/nodes/${n2.name}`, headers: operator });
        expect(shown.json().transport.endpoint).toBe(endpoint.n2);
      });

      it.each([
        ["127.0.0.1:15008", "loopback"],
        ["0.0.0.0:15008", "unspecified"],
        ["224.0.0.1:15008", "multicast"],
        ["300.1.2.3:15008", "not an address"],
        ["198.18.244.1:0", "port 0"],
        ["198.18.244.1:70000", "port past 65535"],
        ["198.18.244.1", "no port"],
      ])("refuses %s (%s) naming body.transport.endpoint, and keeps the stored one", async (ep) => {
        const res = await report(n1, { endpoint: ep, state: "running" });
        expect(JSON.stringify(expectProblem(res, 400).errors)).toContain("body.transport");
        const shown = await app.inject({ url: `/v1/nodes/${n1.name}`, headers: operator });
        expect(shown.json().transport).toEqual({ endpoint: endpoint.n1, state: "running" });
      });
    });

    describe("GET /v1/nodes/{node}/transport", () => {
      it("node 1 (tenant a's client only): a's bundle, web-1 on node 2, nothing of tenant b, no key", async () => {
        const { doc, body } = await documentOf(n1);
        expect(doc.bundles.map((x) => x.trustDomain)).toEqual([td[a.tenant]]);
        expect(doc.remotes).toEqual([{ address: addr["web-1"], spiffeId: spiffe(a.tenant, "web"), node: endpoint.n2 }]);
        expect(doc.allow).toEqual([]);
        expect(body).not.toContain(td[b.tenant]!);
        expect(body).not.toContain(addr["bweb-1"]!);
        expect(body).not.toMatch(/PRIVATE KEY/);
      });

      it("node 2 (both webs): both bundles, the allowed pairs with their ports, the clients that may arrive as remotes", async () => {
        const { doc, body } = await documentOf(n2);
        expect(doc.bundles.map((x) => x.trustDomain).sort()).toEqual([td[a.tenant], td[b.tenant]].sort());
        // The receiving transport checks a stream's source address against these: each client, at its node's transport.
        expect(doc.remotes).toEqual(
          [
            { address: addr["client-1"], spiffeId: spiffe(a.tenant, "client"), node: endpoint.n1 },
            { address: addr["bclient-1"], spiffeId: spiffe(b.tenant, "bclient"), node: endpoint.n3 },
          ].sort((x, y) => (x.address! < y.address! ? -1 : 1)),
        );
        expect(doc.allow).toEqual(
          [
            { source: spiffe(a.tenant, "client"), destination: spiffe(a.tenant, "web"), ports: [8080] },
            { source: spiffe(b.tenant, "bclient"), destination: spiffe(b.tenant, "bweb"), ports: [9090] },
          ].sort((x, y) => (x.source < y.source ? -1 : 1)),
        );
        expect(body).not.toMatch(/PRIVATE KEY/);
      });

      it("node 3 (tenant b's client only): nothing of tenant a", async () => {
        const { doc, body } = await documentOf(n3);
        expect(doc.bundles.map((x) => x.trustDomain)).toEqual([td[b.tenant]]);
        expect(doc.remotes).toEqual([{ address: addr["bweb-1"], spiffeId: spiffe(b.tenant, "bweb"), node: endpoint.n2 }]);
        expect(body).not.toContain(td[a.tenant]!);
        expect(body).not.toContain(addr["web-1"]!);
      });

      it("a bundle is the tenant's CA certificates, the same as its bundle.pem, and openssl reads them as CA certificates", async () => {
        const { doc } = await documentOf(n1);
        const pem = await app.inject({ url: `/v1/tenants/${a.tenant}/bundle.pem` });
        expect(doc.bundles[0]!.caPem).toBe(pem.body);
        const dir = mkdtempSync(join(tmpdir(), "weft-transport-"));
        try {
          writeFileSync(join(dir, "ca.pem"), doc.bundles[0]!.caPem);
          const text = execFileSync("openssl", ["x509", "-in", join(dir, "ca.pem"), "-noout", "-text"], { encoding: "utf8" });
          expect(text).toMatch(/CA:TRUE/);
          expect(text).toContain(`URI:spiffe://${td[a.tenant]}`);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });

      it("answers an ETag, 304 while unchanged, and a new document when a peer's endpoint moves", async () => {
        const first = await documentOf(n1);
        const again = await app.inject({ url: `/v1/nodes/${n1.name}/transport`, headers: { ...bearer(n1.credential), "if-none-match": first.etag } });
        expect(again.statusCode).toBe(304);
        expect(again.body).toBe("");
        await report(n2, { endpoint: "198.18.244.22:15008", state: "running" });
        const moved = await app.inject({ url: `/v1/nodes/${n1.name}/transport`, headers: { ...bearer(n1.credential), "if-none-match": first.etag } });
        expect(moved.statusCode).toBe(200);
        expect(moved.json().remotes[0].node).toBe("198.18.244.22:15008");
        expect(moved.headers.etag).not.toBe(first.etag);
        // A node whose transport has no endpoint is nobody's remote.
        await report(n2, { endpoint: null, state: "off" });
        expect((await documentOf(n1)).doc.remotes).toEqual([]);
        await report(n2, { endpoint: endpoint.n2, state: "running" });
        expect((await documentOf(n1)).doc.remotes).toHaveLength(1);
      });

      it("removing the rule empties the documents of both ends", async () => {
        const t = b;
        const saved = await app.inject({ url: `/v1/tenants/${t.tenant}/policies/bweb-in`, headers: bearer(t.token) });
        const del = await app.inject({ method: "DELETE", url: `/v1/tenants/${t.tenant}/policies/bweb-in`, headers: bearer(t.token) });
        expect(del.statusCode, del.body).toBe(204);
        expect((await documentOf(n3)).doc).toEqual({ bundles: [], remotes: [], allow: [] });
        expect((await documentOf(n2)).doc.allow.map((p) => p.destination)).toEqual([spiffe(a.tenant, "web")]);
        const { subject, ingress } = saved.json();
        await mustPut(app, t.token, t.tenant, "policies/bweb-in", { subject, ingress });
        expect((await documentOf(n3)).doc.remotes).toHaveLength(1);
      });

      it("the operator may read any node's; another node's credential gets 404, as on the datapath route; a tenant token 403; none 401", async () => {
        expect((await documentOf(n2, operator)).doc.allow.length).toBe(2);
        for (const route of ["transport", "datapath"]) {
          const other = await app.inject({ url: `/v1/nodes/${n2.name}/${route}`, headers: bearer(n1.credential) });
          expectProblem(other, 404);
        }
        expectProblem(await app.inject({ url: `/v1/nodes/${n2.name}/transport`, headers: bearer(a.token) }), 403);
        expectProblem(await app.inject({ url: `/v1/nodes/${n2.name}/transport` }), 401);
        expectProblem(await app.inject({ url: `/v1/nodes/no-such-node/transport`, headers: operator }), 404);
      });
    });
  });
});

describe.each(BACKENDS)("weft_steer capacity on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let node: Node;
    beforeAll(async () => {
      app = await startApi(backend, { mapCapacity: { steer: 4 } });
      a = await tenantWithToken(app, ["write"]);
      node = await registeredNode(app);
      await identity(app, a.token, a.tenant, "web", { app: "web" });
      await mustPut(app, a.token, a.tenant, "workloads/web-1", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
    });
    afterAll(async () => app?.close());

    it("refuses an mtls rule whose steering overflows a node's weft_steer (422 naming map and node), a dry run too; plaintext fits", async () => {
      const ports = [1, 2, 3, 4].map((i) => ({ port: 8000 + i, protocol: "tcp" }));
      const spec = (transport: string) => ({ subject: { identity: "web" }, ingress: [{ peers: [{ identity: "web" }], ports, action: "allow", transport }] });
      for (const query of [{}, { dryRun: "true" }] as Record<string, string>[]) {
        const before = await tenantChanges(app, a.tenant);
        const body = expectProblem(await putResource(app, a.token, a.tenant, "policies/wide", spec("mtls"), { query }), 422);
        // web steers to itself both ways: 4 ports and a marker per direction.
        expect(body.errors).toEqual([{ field: "maps.steer", message: `node ${node.name}: needs 10 entries, has room for 4` }]);
        expect(await tenantChanges(app, a.tenant)).toBe(before);
      }
      expect((await putResource(app, a.token, a.tenant, "policies/wide", spec("plaintext"))).statusCode).toBe(201);
    });
  });
});
