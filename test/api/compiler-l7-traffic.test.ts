/**
 * A service's trafficPolicy in the node's L7 document (compiler/l7.ts
 * trafficOf), pure: each frontend of the service carries it with its
 * defaults filled in and durations in ms; only the parts the policy has
 * appear; a frontend without one is byte for byte the document of before;
 * another tenant's policy never reaches a frontend; the memo follows puts
 * and deletes. Checked against the L7Document schema the route answers with.
 */
import { describe, expect, it } from "vitest";
import { createCompiler } from "../../api/src/compiler/compile.ts";
import type { HttpRouteRow, IdentityRow, NodeRow, ServiceRow, Snapshot, TenantRow, TrafficPolicyRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { L7Document } from "../../api/src/mesh/specs.ts";
import { snapshot } from "../datapath/support.ts";
import { accepts } from "../support/schema-values.ts";

const tenants: TenantRow[] = [
  { id: 1, name: "acme", defaultAction: "allow", trustDomain: "acme.test" },
  { id: 2, name: "zeta", defaultAction: "allow", trustDomain: "zeta.test" },
];
const identities: IdentityRow[] = [
  { tenantId: 1, name: "api", numericId: 256, labels: { app: "api" }, path: "/api" },
  { tenantId: 2, name: "z", numericId: 300, labels: { app: "api" }, path: "/z" },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "api-1", identity: "api", node: "n1", addresses: ["10.0.1.11"] },
  { tenantId: 1, name: "api-2", identity: "api", node: "n2", addresses: ["10.0.2.11"] },
  { tenantId: 2, name: "z-1", identity: "z", node: "n1", addresses: ["10.0.1.30"] },
];
const nodes: NodeRow[] = [
  { name: "n1", zone: "a", podCidr: "10.0.1.0/24" },
  { name: "n2", zone: "a", podCidr: "10.0.2.0/24" },
];
const service = (id: number, tenantId: number, name: string): ServiceRow => ({
  id,
  tenantId,
  name,
  vip: `198.19.0.${id}`,
  ports: [
    { port: 80, protocol: "tcp", targetPort: 8080 },
    { port: 8443, protocol: "tcp", targetPort: 8443 },
  ],
  backends: { selector: { labels: { app: "api" } } },
  loadBalancing: "random",
  preferSameZone: false,
});
const api = service(5, 1, "api");
const other = service(6, 1, "other");
const zetaApi = service(9, 2, "api");
const route = (id: number, tenantId: number, parent: string): HttpRouteRow => ({ id, tenantId, name: `r-${parent}`, parentRefs: [{ name: parent }], rules: [{ backendRefs: [{}] }] });
const routes = [route(1, 1, "api"), route(2, 1, "other"), route(3, 2, "api")];
const platform = (trafficPolicies: TrafficPolicyRow[] = []): Snapshot =>
  snapshot({ tenants, identities, workloads, nodes, services: [api, other, zetaApi], httpRoutes: routes, trafficPolicies });

const documentOf = (snap: Snapshot, node = "n1") => {
  const doc = createCompiler(snap).l7Document(node);
  expect(doc).not.toBeNull();
  expect(accepts(L7Document, doc)).toBe(true);
  return doc!;
};
const frontendsOf = (doc: ReturnType<typeof documentOf>, tenant: string, svc: string) => doc.frontends.filter((f) => f.tenant === tenant && f.service === svc);

const policy = (more: Partial<TrafficPolicyRow> = {}): TrafficPolicyRow => ({ tenantId: 1, name: "api-limits", service: "api", ...more });

describe("a trafficPolicy in the L7 document", () => {
  it("every frontend (each tcp port) of the service carries every part given, as written", () => {
    const doc = documentOf(
      platform([
        policy({
          connectionPool: { maxConnections: 100, maxPendingRequests: 0 },
          outlierDetection: { consecutive5xx: 3, interval: "1m30s", baseEjectionTime: "500ms", maxEjectionPercent: 0 },
          rateLimit: { requestsPerSecond: 20, burst: 5 },
        }),
      ]),
    );
    const fronts = frontendsOf(doc, "acme", "api");
    expect(fronts.map((f) => f.port)).toEqual([80, 8443]);
    for (const f of fronts) {
      expect(f.traffic).toEqual({
        policy: "api-limits",
        maxConnections: 100,
        maxPendingRequests: 0,
        outlier: { consecutive5xx: 3, intervalMs: 90_000, baseEjectionMs: 500, maxEjectionPercent: 0 },
        rateLimit: { requestsPerSecond: 20, burst: 5 },
      });
    }
    // The service's other frontends of the tenant, and the other tenant's "api", are not the policy's.
    expect(frontendsOf(doc, "acme", "other").every((f) => !("traffic" in f))).toBe(true);
    expect(frontendsOf(doc, "zeta", "api").every((f) => !("traffic" in f))).toBe(true);
  });

  it("fills in the defaults: consecutive5xx 5, interval 10s, base ejection 30s, max ejection 10%, burst the rate", () => {
    const doc = documentOf(platform([policy({ outlierDetection: {}, rateLimit: { requestsPerSecond: 7 } })]));
    expect(frontendsOf(doc, "acme", "api")[0]!.traffic).toEqual({
      policy: "api-limits",
      outlier: { consecutive5xx: 5, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 10 },
      rateLimit: { requestsPerSecond: 7, burst: 7 },
    });
    // One field given, the others still filled in.
    const one = documentOf(platform([policy({ outlierDetection: { baseEjectionTime: "2m" } })]));
    expect(frontendsOf(one, "acme", "api")[0]!.traffic!.outlier).toEqual({ consecutive5xx: 5, intervalMs: 10_000, baseEjectionMs: 120_000, maxEjectionPercent: 10 });
  });

  it("only the parts the policy has appear: no outlier without outlierDetection, no limits not given", () => {
    const cases: [Partial<TrafficPolicyRow>, object][] = [
      [{}, { policy: "api-limits" }],
      [{ connectionPool: {} }, { policy: "api-limits" }],
      [{ connectionPool: { maxPendingRequests: 4 } }, { policy: "api-limits", maxPendingRequests: 4 }],
      [{ connectionPool: { maxConnections: 2 } }, { policy: "api-limits", maxConnections: 2 }],
      [{ rateLimit: { requestsPerSecond: 1 } }, { policy: "api-limits", rateLimit: { requestsPerSecond: 1, burst: 1 } }],
    ];
    for (const [more, traffic] of cases) {
      const f = frontendsOf(documentOf(platform([policy(more)])), "acme", "api")[0]!;
      expect(f.traffic, JSON.stringify(more)).toEqual(traffic);
    }
  });

  it("a frontend without a policy is byte for byte the document of before: no traffic key at all", () => {
    const without = documentOf(platform());
    expect(without.frontends.every((f) => !("traffic" in f))).toBe(true);
    // A policy on another service changes nothing of this one's frontends, byte for byte.
    const withOther = documentOf(platform([policy({ name: "other-limits", service: "other", rateLimit: { requestsPerSecond: 3 } })]));
    expect(JSON.stringify(frontendsOf(withOther, "acme", "api"))).toBe(JSON.stringify(frontendsOf(without, "acme", "api")));
    expect(JSON.stringify(withOther.backends)).toBe(JSON.stringify(without.backends));
    // Taking the policy away gives back the very same bytes.
    const compiler = createCompiler(platform([policy({ rateLimit: { requestsPerSecond: 3 } })]));
    expect(JSON.stringify(compiler.l7Document("n1"))).not.toBe(JSON.stringify(without));
    compiler.apply({ kind: "trafficPolicy", op: "delete", tenantId: 1, name: "api-limits" });
    expect(JSON.stringify(compiler.l7Document("n1"))).toBe(JSON.stringify(without));
  });

  it("a policy of a service no route names reaches no document (the service is not L7)", () => {
    const unrouted = snapshot({ tenants, identities, workloads, nodes, services: [api, other], httpRoutes: [route(1, 1, "api")], trafficPolicies: [policy({ service: "other", rateLimit: { requestsPerSecond: 1 } })] });
    const doc = documentOf(unrouted);
    expect(frontendsOf(doc, "acme", "other")).toEqual([]);
    expect(JSON.stringify(doc)).not.toContain("traffic");
  });

  it("another tenant's policy naming a service of the same name stays in its tenant", () => {
    const doc = documentOf(platform([policy({ tenantId: 2, name: "z-limits", rateLimit: { requestsPerSecond: 9 } })]));
    expect(frontendsOf(doc, "zeta", "api").map((f) => f.traffic?.policy)).toEqual(["z-limits", "z-limits"]);
    expect(frontendsOf(doc, "acme", "api").every((f) => !("traffic" in f))).toBe(true);
    // A node where the policy's tenant has no workload never sees it.
    expect(JSON.stringify(documentOf(platform([policy({ tenantId: 2, name: "z-limits", rateLimit: { requestsPerSecond: 9 } })]), "n2"))).not.toContain("z-limits");
  });

  it("the memo follows puts and deletes, and refuses a second policy for one service", () => {
    const compiler = createCompiler(platform());
    compiler.apply({ kind: "trafficPolicy", op: "put", row: policy({ rateLimit: { requestsPerSecond: 3 } }) });
    expect(frontendsOf(compiler.l7Document("n1")!, "acme", "api")[0]!.traffic).toEqual({ policy: "api-limits", rateLimit: { requestsPerSecond: 3, burst: 3 } });
    compiler.apply({ kind: "trafficPolicy", op: "put", row: policy({ rateLimit: { requestsPerSecond: 4, burst: 8 } }) });
    expect(frontendsOf(compiler.l7Document("n1")!, "acme", "api")[0]!.traffic!.rateLimit).toEqual({ requestsPerSecond: 4, burst: 8 });
    const before = JSON.stringify(compiler.l7Document("n1"));
    expect(() => compiler.apply({ kind: "trafficPolicy", op: "put", row: policy({ name: "second" }) })).toThrow(/already has trafficPolicy api-limits/);
    expect(JSON.stringify(compiler.l7Document("n1"))).toBe(before);
    // Moving the policy to another service is a put of the same name.
    compiler.apply({ kind: "trafficPolicy", op: "put", row: policy({ service: "other", rateLimit: { requestsPerSecond: 4 } }) });
    const moved = compiler.l7Document("n1")!;
    expect(frontendsOf(moved, "acme", "api").every((f) => !("traffic" in f))).toBe(true);
    expect(frontendsOf(moved, "acme", "other")[0]!.traffic!.policy).toBe("api-limits");
    // The node's maps never hold a policy: the datapath hash is the same with or without it.
    expect(compiler.compileNode("n1").hash).toBe(createCompiler(platform()).compileNode("n1").hash);
    // A tenant's deletion takes its policies along.
    compiler.apply({ kind: "tenant", op: "delete", id: 1 });
    expect(compiler.snapshot().trafficPolicies).toEqual([]);
  });
});
