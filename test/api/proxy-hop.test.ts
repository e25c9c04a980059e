/**
 * The L7 proxy's hop to a backend on another node through the transport
 * (issue 21), through the API: the node proxy's SVID (for which SPIFFE ID,
 * verified by openssl; who may not obtain it: test/security/node-proxy-svids), and what
 * the caller's and the backend's nodes learn (the L7 document's transport
 * servers, the transport documents' proxy part) once an mtls rule governs
 * the backend, and not before.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { proxyAddressOf } from "../../api/src/compiler/l7.ts";
import type { TransportDocument } from "../../api/src/mesh/specs.ts";
import { buildCsr, newWorkloadKey } from "../../nodeagent/src/agent/csr.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

type Node = { name: string; credential: string; podCidr: string };

describe.each(BACKENDS)("the proxy's hop through the transport on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let b: { tenant: string; token: string };
    // n1: a's client; n2: a's web; n3: b's only.
    let n1: Node, n2: Node, n3: Node;
    let td: string;
    const addr: Record<string, string> = {};
    const proxySvid = (node: Node, tenant: string, csr = buildCsr(newWorkloadKey().privateKey, { commonName: "proxy" }), headers = bearer(node.credential)) =>
      app.inject({ method: "POST", url: `/v1/tenants/${tenant}/node-proxy-svids`, headers, payload: { csr } });
    const get = async <T>(url: string, node: Node): Promise<T> => {
      const res = await app.inject({ url, headers: bearer(node.credential) });
      expect(res.statusCode, res.body).toBe(200);
      return res.json() as T;
    };
    const l7Servers = async (node: Node) => (await get<{ backends: { servers: { address: string; port: number; transport?: true }[] }[] }>(`/v1/nodes/${node.name}/l7`, node)).backends.flatMap((x) => x.servers);
    const rule = (transport?: "mtls") => ({ subject: { identity: "web" }, ingress: [{ peers: [{ identity: "client" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", ...(transport ? { transport } : {}) }] });

    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write"]);
      b = await tenantWithToken(app, ["write"]);
      td = (await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: operator })).json().trustDomain;
      [n1, n2, n3] = [await registeredNode(app), await registeredNode(app), await registeredNode(app)];
      await identity(app, a.token, a.tenant, "client", { app: "client" });
      await identity(app, a.token, a.tenant, "web", { app: "web" });
      await identity(app, b.token, b.tenant, "other", { app: "other" });
      addr.client = freshAddress(n1.podCidr);
      addr.web = freshAddress(n2.podCidr);
      await mustPut(app, a.token, a.tenant, "workloads/client-1", { identity: "client", node: n1.name, addresses: [addr.client] });
      await mustPut(app, a.token, a.tenant, "workloads/web-1", { identity: "web", node: n2.name, addresses: [addr.web] });
      await mustPut(app, b.token, b.tenant, "workloads/other-1", { identity: "other", node: n3.name, addresses: [freshAddress(n3.podCidr)] });
      await mustPut(app, a.token, a.tenant, "services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { identity: "web" } } });
      await mustPut(app, a.token, a.tenant, "httpRoutes/web", { parentRefs: [{ name: "web" }], rules: [{ backendRefs: [{}] }] });
      await mustPut(app, a.token, a.tenant, "policies/web-in", rule());
      for (const [n, endpoint] of [[n1, "198.18.245.1:15008"], [n2, "198.18.245.2:15008"]] as const) {
        const res = await app.inject({
          method: "PUT",
          url: `/v1/nodes/${n.name}/status`,
          headers: bearer(n.credential),
          payload: { appliedRevision: 0, hash: "none", counters: {}, errors: [], transport: { endpoint, state: "running" } },
        });
        expect(res.statusCode, res.body).toBe(200);
      }
    });
    afterAll(async () => app?.close());

    it("issues a node its own proxy's SVID in a tenant it runs a workload of, which openssl verifies against the tenant's bundle", async () => {
      const key = newWorkloadKey();
      const res = await proxySvid(n1, a.tenant, buildCsr(key.privateKey, { commonName: "proxy" }));
      expect(res.statusCode, res.body).toBe(201);
      const body = res.json();
      const id = `spiffe://${td}/weft/node/${n1.name}/proxy`;
      expect(body.spiffeId).toBe(id);
      const leaf = new X509Certificate(body.certificate);
      expect(leaf.subjectAltName).toBe(`URI:${id}`);
      expect(leaf.checkPrivateKey(key.privateKey)).toBe(true);
      const bundle = await app.inject({ url: `/v1/tenants/${a.tenant}/bundle.pem`, headers: bearer(a.token) });
      const dir = mkdtempSync(join(tmpdir(), "weft-proxy-svid-"));
      try {
        writeFileSync(join(dir, "bundle.pem"), bundle.body);
        writeFileSync(join(dir, "leaf.pem"), body.certificate);
        expect(execFileSync("openssl", ["verify", "-CAfile", join(dir, "bundle.pem"), join(dir, "leaf.pem")], { encoding: "utf8" })).toMatch(/OK/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("plaintext rule: the proxy reaches the remote backend directly and no transport document names it", async () => {
      expect((await l7Servers(n1)).find((s) => s.address === addr.web)).toEqual(expect.not.objectContaining({ transport: true }));
      expect((await get<TransportDocument>(`/v1/nodes/${n1.name}/transport`, n1)).proxy).toBeUndefined();
      expect((await get<TransportDocument>(`/v1/nodes/${n2.name}/transport`, n2)).proxy).toBeUndefined();
    });

    it("mtls rule: the caller's node sends its proxy's hop through the transport and the backend's node lets node proxies in to web on 8080", async () => {
      await mustPut(app, a.token, a.tenant, "policies/web-in", rule("mtls"));
      expect((await l7Servers(n1)).find((s) => s.address === addr.web)).toMatchObject({ port: 8080, transport: true });
      const out = await get<TransportDocument>(`/v1/nodes/${n1.name}/transport`, n1);
      expect(out.proxy).toEqual({ address: proxyAddressOf(n1.podCidr), targets: [`${addr.web}:8080`], allow: [] });
      const webId = (await app.inject({ url: `/v1/tenants/${a.tenant}/identities/web`, headers: bearer(a.token) })).json().spiffeId;
      expect(out.remotes).toContainEqual({ address: addr.web, spiffeId: webId, node: "198.18.245.2:15008" });
      expect(out.bundles.map((x) => x.trustDomain)).toEqual([td]);
      const inbound = await get<TransportDocument>(`/v1/nodes/${n2.name}/transport`, n2);
      expect(inbound.proxy?.address).toBe(proxyAddressOf(n2.podCidr));
      expect(inbound.proxy?.targets).toEqual([]);
      expect(inbound.proxy?.allow).toEqual([{ destination: webId, ports: [8080] }]);
      // Tenant b's node learns nothing of it.
      const n3doc = await get<TransportDocument>(`/v1/nodes/${n3.name}/transport`, n3);
      expect(JSON.stringify(n3doc)).not.toContain(td);
    });
  });
});
