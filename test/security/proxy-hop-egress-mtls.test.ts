// Review of the proxy hop (issue 21), the compiler's side: which rules make
// the L7 proxy's hop to a backend on another node go through the transport.
// proxyHopMtls reads only the ingress rules of the backend's policies. A
// caller's own egress rule with transport mtls steers that caller's direct
// connections to the backend through the transport (steer.ts), so its bytes
// never cross the fabric in plaintext; the same caller's requests through
// the backend's L7 service do cross it in plaintext (the proxy's server is
// direct). Failed on main at 7700781 (written ahead of the fix).
import { describe, expect, it } from "vitest";
import { compileNode, createCompiler } from "../../api/src/compiler/compile.ts";
import type { HttpRouteRow, IdentityRow, NodeRow, PolicyRow, ServiceRow, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { snapshot } from "../datapath/support.ts";

const tenants: TenantRow[] = [{ id: 1, name: "acme", defaultAction: "allow", trustDomain: "acme.test" }];
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: 256, labels: { app: "web" }, path: "/web" },
  { tenantId: 1, name: "api", numericId: 257, labels: { app: "api" }, path: "/api" },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["10.0.1.10"] },
  { tenantId: 1, name: "api-2", identity: "api", node: "n2", addresses: ["10.0.2.11"] },
];
const nodes: NodeRow[] = [
  { name: "n1", zone: "a", podCidr: "10.0.1.0/24" },
  { name: "n2", zone: "a", podCidr: "10.0.2.0/24" },
];
const api: ServiceRow = {
  id: 5,
  tenantId: 1,
  name: "api",
  vip: "198.19.0.5",
  ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
  backends: { selector: { labels: { app: "api" } } },
  loadBalancing: "random",
  preferSameZone: false,
};
const route: HttpRouteRow = { id: 3, tenantId: 1, name: "r", parentRefs: [{ name: "api", port: 80 }], rules: [{ backendRefs: [{ labels: { app: "api" }, weight: 1 }] }] };
/** web's egress: to api on 8080, only through the transport. The backend's ingress is not governed. */
const webOut: PolicyRow = {
  id: 1,
  tenantId: 1,
  name: "web-out",
  subject: { identity: "web" },
  egress: [{ peers: [{ identity: "api" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", transport: "mtls" }],
};
const snap: Snapshot = snapshot({ tenants, identities, workloads, nodes, services: [api], httpRoutes: [route], policies: [webOut] });

describe("the proxy's hop and a caller's egress mtls rule", () => {
  it("web's direct connections to api on 8080 are steered through the transport (the rule is in force)", () => {
    const steer = compileNode(snap, "n1").maps.steer;
    expect(steer).toContainEqual(expect.objectContaining({ key: expect.objectContaining({ localIdentity: 256, remoteIdentity: 257, port: 8080, direction: "egress" }) }));
  });

  it("web's requests through api's L7 service reach api on n2 through the transport too, never in plaintext", () => {
    const servers = createCompiler(snap).l7Document("n1")!.backends.flatMap((b) => b.servers);
    const remote = servers.find((s) => s.address === "10.0.2.11");
    expect(remote).toBeDefined();
    // On main: { address: "10.0.2.11", port: 8080, ... } with no `transport`: HAProxy connects to it directly,
    // and web's request crosses the fabric in plaintext although web's own policy says mtls for that hop.
    expect(remote).toMatchObject({ transport: true });
    // And api's node lets node proxies in to api on 8080 through its transport (its ingress is not governed: no
    // datapath entry to flag, so the transport document says it): the hop is carried end to end, not refused.
    expect(createCompiler(snap).proxyInboundHops("n2")).toEqual([{ localIdentity: 257, ports: [8080] }]);
    expect(createCompiler(snap).proxyInboundHops("n1")).toEqual([]);
  });
});
