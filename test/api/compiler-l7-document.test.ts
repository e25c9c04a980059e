/**
 * A node's L7 document (compiler/l7.ts l7Document), pure: frontends, rules
 * and their backends' per-server weights, authorization, callers; what a
 * node's document never names; checked against the L7Document schema the
 * route answers with.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createCompiler } from "../../api/src/compiler/compile.ts";
import { durationMs, serverWeights } from "../../api/src/compiler/l7.ts";
import type { HttpRouteRow, IdentityRow, NodeRow, PolicyRow, ServiceRow, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { L7Document } from "../../api/src/mesh/specs.ts";
import { snapshot } from "../datapath/support.ts";
import { accepts } from "../support/schema-values.ts";

const tenants: TenantRow[] = [
  { id: 1, name: "acme", defaultAction: "allow", trustDomain: "acme.test" },
  { id: 2, name: "zeta", defaultAction: "allow", trustDomain: "zeta.test" },
];
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: 256, labels: { app: "web" }, path: "/web" },
  { tenantId: 1, name: "api-v1", numericId: 257, labels: { app: "api", version: "v1" }, path: "/api/v1" },
  { tenantId: 1, name: "api-v2", numericId: 258, labels: { app: "api", version: "v2" }, path: "/api/v2" },
  { tenantId: 1, name: "admin", numericId: 259, labels: { app: "admin" }, path: "/admin" },
  { tenantId: 2, name: "z", numericId: 300, labels: { app: "api", version: "v1" }, path: "/z" },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["10.0.1.10", "10.0.1.20"] },
  { tenantId: 1, name: "api-1a", identity: "api-v1", node: "n1", addresses: ["10.0.1.11"] },
  { tenantId: 1, name: "api-1b", identity: "api-v1", node: "n2", addresses: ["10.0.2.11"] },
  { tenantId: 1, name: "api-2", identity: "api-v2", node: "n2", addresses: ["10.0.2.12"] },
  { tenantId: 1, name: "admin-1", identity: "admin", node: "n2", addresses: ["10.0.2.13"] },
  { tenantId: 2, name: "z-1", identity: "z", node: "n3", addresses: ["10.0.3.10"] },
];
const nodes: NodeRow[] = [
  { name: "n1", zone: "a", podCidr: "10.0.1.0/24" },
  { name: "n2", zone: "a", podCidr: "10.0.2.0/24" },
  { name: "n3", zone: "a", podCidr: "10.0.3.0/24" },
];
const api: ServiceRow = {
  id: 5,
  tenantId: 1,
  name: "api",
  vip: "198.19.0.5",
  ports: [
    { port: 80, protocol: "tcp", targetPort: 8080 },
    { port: 53, protocol: "udp", targetPort: 5353 },
  ],
  backends: { selector: { labels: { app: "api" } } },
  loadBalancing: "random",
  preferSameZone: false,
};
const zetaApi: ServiceRow = { ...api, id: 9, tenantId: 2, vip: "198.19.0.9" };
const canary: HttpRouteRow = {
  id: 3,
  tenantId: 1,
  name: "canary",
  parentRefs: [{ name: "api", port: 80 }],
  rules: [
    {
      matches: [{ headers: [{ name: "x-canary", value: "1" }] }],
      backendRefs: [{ labels: { version: "v2" } }],
    },
    {
      matches: [{ path: { value: "/api" }, method: "GET" }, { path: { type: "Exact", value: "/health" } }],
      backendRefs: [
        { labels: { version: "v1" }, weight: 90 },
        { labels: { version: "v2" }, weight: 10 },
      ],
      timeouts: { request: "1m30s", backendRequest: "500ms" },
      retry: { attempts: 2 },
      filters: [
        { type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-env", value: "prod" }], remove: ["x-debug"] } },
        { type: "ResponseHeaderModifier", responseHeaderModifier: { add: [{ name: "x-served-by", value: "weft" }] } },
      ],
    },
  ],
};
const zetaRoute: HttpRouteRow = { id: 4, tenantId: 2, name: "z", parentRefs: [{ name: "api" }], rules: [{ backendRefs: [{}] }] };
const policy = (ingress: PolicyRow["ingress"], more: Partial<PolicyRow> = {}): PolicyRow => ({ id: 1, tenantId: 1, name: "api-in", subject: { labels: { app: "api" } }, ingress, ...more });
const platform = (more: Partial<Snapshot> = {}): Snapshot =>
  snapshot({ tenants, identities, workloads, nodes, services: [api, zetaApi], httpRoutes: [canary, zetaRoute], ...more });
const documentOf = (snap: Snapshot, node: string) => {
  const doc = createCompiler(snap).l7Document(node);
  expect(doc).not.toBeNull();
  // What the route answers with: the schema is the contract with the agent.
  expect(accepts(L7Document, doc)).toBe(true);
  return doc!;
};
const backend = (doc: ReturnType<typeof documentOf>, name: string) => doc.backends.find((b) => b.name === name)!;

describe("the L7 document", () => {
  it("names the node's proxy address and the frontends of the tenants with a workload here, rules by the Gateway API's precedence", () => {
    const doc = documentOf(platform(), "n1");
    expect(doc.proxyAddress).toBe("10.0.1.1");
    expect(doc.frontends.map((f) => [f.name, f.tenant, f.service, f.vip, f.port])).toEqual([["s5-p80", "acme", "api", "198.19.0.5", 80]]);
    const f = doc.frontends[0]!;
    expect(f.defaultBackend).toBe("s5-p80-default");
    const canaryRefs = [
      { backend: "s5-p80-r3-1-0", weight: 90 },
      { backend: "s5-p80-r3-1-1", weight: 10 },
    ];
    // Rule 1's two matches take part apart: the Exact path first, then the longer prefix with a method; rule 0's
    // header match has no path (the prefix "/") and comes last. Path types are filled in: PathPrefix by default.
    expect(f.rules).toEqual([
      { route: "canary", rule: 1, matches: [{ path: { type: "Exact", value: "/health" } }], backends: canaryRefs },
      { route: "canary", rule: 1, matches: [{ path: { type: "PathPrefix", value: "/api" }, method: "GET" }], backends: canaryRefs },
      { route: "canary", rule: 0, matches: [{ headers: [{ type: "Exact", name: "x-canary", value: "1" }] }], backends: [{ backend: "s5-p80-r3-0-0", weight: 1 }] },
    ]);
  });

  it("a canary's servers carry weights in the ratio of the refs' weights spread over their servers", () => {
    const doc = documentOf(platform(), "n1");
    const v1 = backend(doc, "s5-p80-r3-1-0").servers;
    const v2 = backend(doc, "s5-p80-r3-1-1").servers;
    expect(v1.map((s) => [s.address, s.port])).toEqual([["10.0.1.11", 8080], ["10.0.2.11", 8080]]);
    expect(v2.map((s) => [s.address, s.port])).toEqual([["10.0.2.12", 8080]]);
    // 90 over two servers, 10 over one: 45 : 45 : 10, reduced.
    expect([...v1, ...v2].map((s) => s.weight)).toEqual([9, 9, 2]);
    const sum = (list: typeof v1) => list.reduce((n, s) => n + s.weight, 0);
    expect(sum(v1) / (sum(v1) + sum(v2))).toBeCloseTo(0.9, 10);
    // The default backend is the whole service, equal weights; server names are backend ids, stable across renames.
    expect(backend(doc, "s5-p80-default").servers.map((s) => s.weight)).toEqual([1, 1, 1]);
    expect(new Set(backend(doc, "s5-p80-default").servers.map((s) => s.name)).size).toBe(3);
    expect(doc.backends.flatMap((b) => b.servers).every((s) => /^b\d+$/.test(s.name))).toBe(true);
  });

  it("carries the rule's timeouts in ms, retry with its defaults, and header filters", () => {
    const b = backend(documentOf(platform(), "n1"), "s5-p80-r3-1-0");
    expect(b.requestTimeoutMs).toBe(90_000);
    expect(b.backendRequestTimeoutMs).toBe(500);
    expect(b.retry).toEqual({ attempts: 2, on: ["connect-failure", "gateway-error"], nonIdempotent: false });
    expect(b.requestHeaders).toEqual({ set: [{ name: "x-env", value: "prod" }], remove: ["x-debug"] });
    expect(b.responseHeaders).toEqual({ add: [{ name: "x-served-by", value: "weft" }] });
    expect(backend(documentOf(platform(), "n1"), "s5-p80-default").retry).toBeUndefined();
  });

  it("lists the node's own workloads as callers, every address, with tenant and SPIFFE ID, and no one else's", () => {
    expect(documentOf(platform(), "n1").callers).toEqual([
      { address: "10.0.1.10", tenant: "acme", spiffeId: "spiffe://acme.test/web" },
      { address: "10.0.1.11", tenant: "acme", spiffeId: "spiffe://acme.test/api/v1" },
      { address: "10.0.1.20", tenant: "acme", spiffeId: "spiffe://acme.test/web" },
    ]);
    expect(documentOf(platform(), "n3").callers).toEqual([{ address: "10.0.3.10", tenant: "zeta", spiffeId: "spiffe://zeta.test/z" }]);
  });

  it("never names a frontend, backend or caller of a tenant without a workload on the node", () => {
    const n1 = documentOf(platform(), "n1");
    expect(n1.frontends.every((f) => f.tenant === "acme")).toBe(true);
    expect(n1.backends.flatMap((b) => b.servers).some((s) => s.address === "10.0.3.10")).toBe(false);
    const n3 = documentOf(platform(), "n3");
    expect(n3.frontends.map((f) => [f.tenant, f.name])).toEqual([["zeta", "s9-p80"]]);
    // zeta's service selects app=api in zeta only: acme's api workloads, same labels, are never its servers.
    expect(backend(n3, "s9-p80-default").servers.map((s) => s.address)).toEqual(["10.0.3.10"]);
    expect(JSON.stringify(n3)).not.toContain("acme");
    // A node with no workload gets an empty document.
    const empty = documentOf(platform({ nodes: [...nodes, { name: "n4", zone: "a", podCidr: "10.0.4.0/24" }] }), "n4");
    expect(empty).toEqual({ proxyAddress: "10.0.4.1", frontends: [], backends: [], callers: [] });
  });

  it("is null for an unknown node and for one without a pod block", () => {
    expect(createCompiler(platform()).l7Document("nope")).toBeNull();
    expect(createCompiler(platform({ nodes: [{ name: "n1", zone: "a" }] })).l7Document("n1")).toBeNull();
  });

  it("leaves withdrawn backends out as the LB tables do, and keeps them when every one is withdrawn", () => {
    const sick = workloads.map((w) => (w.name === "api-1b" ? { ...w, unhealthy: true } : w));
    const v1 = backend(documentOf(platform({ workloads: sick }), "n1"), "s5-p80-r3-1-0").servers.map((s) => s.address);
    expect(v1).toEqual(["10.0.1.11"]);
    const down = platform({ nodes: nodes.map((n) => (n.name === "n2" ? { ...n, unreachable: true } : n)) });
    // v2's only server is on the unreachable node: every one of that subset withdrawn, it fails open.
    expect(backend(documentOf(down, "n1"), "s5-p80-r3-1-1").servers.map((s) => s.address)).toEqual(["10.0.2.12"]);
    expect(backend(documentOf(down, "n1"), "s5-p80-default").servers.map((s) => s.address)).toEqual(["10.0.1.11"]);
  });

  it("a frontend of no route's port is no frontend: the udp port and other services stay with the socket LB", () => {
    const doc = documentOf(platform({ httpRoutes: [{ ...canary, parentRefs: [{ name: "api" }] }] }), "n1");
    expect(doc.frontends.map((f) => f.port)).toEqual([80]);
  });

  it("orders the rules of several routes of one service by match precedence, ties by route name then rule", () => {
    const first: HttpRouteRow = { ...canary, id: 8, name: "a-first", rules: [{ backendRefs: [{}] }, { matches: [{ path: { value: "/api/v2" } }], backendRefs: [{}] }] };
    const last: HttpRouteRow = { ...canary, id: 9, name: "z-last", rules: [{ matches: [{ headers: [{ name: "x-canary", value: "1" }] }], backendRefs: [{}] }] };
    const doc = documentOf(platform({ httpRoutes: [canary, first, last] }), "n1");
    expect(doc.frontends[0]!.rules.map((r) => [r.route, r.rule, r.matches[0]?.path?.value ?? null])).toEqual([
      ["canary", 1, "/health"], // Exact
      ["a-first", 1, "/api/v2"], // the longest prefix
      ["canary", 1, "/api"], // a shorter one (with a method)
      ["canary", 0, null], // "/" with one header: before "/" with none; a tie with z-last's goes to the name sorting first
      ["z-last", 0, null],
      ["a-first", 0, null], // "/" alone: last, though its route sorts first
    ]);
  });
});

describe("the L7 document's authorization", () => {
  const authorizationOf = (snap: Snapshot) => documentOf(snap, "n1").frontends[0]!.authorization;

  it("without a policy: not governed, no entries", () => {
    expect(authorizationOf(platform())).toEqual({ governed: false, entries: [], groups: [] });
  });

  it("carries each ingress rule covering the target port over tcp: sources as SPIFFE IDs, methods and path prefixes", () => {
    const p = policy([
      { peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["GET"], pathPrefixes: ["/api"] } },
      { peers: [{ labels: { app: "admin" } }], ports: [], action: "allow" },
      { peers: [], ports: [{ port: 8080 }], action: "deny", http: { pathPrefixes: ["/internal"] } },
      { peers: [{ identity: "web" }], ports: [{ port: 9999, protocol: "tcp" }], action: "allow" },
      { peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "udp" }], action: "allow" },
      { peers: [{ cidr: "192.0.2.0/24" }], ports: [], action: "allow" },
      { peers: [{ identity: "admin" }], ports: [], action: "deny", mode: "audit" },
    ]);
    expect(authorizationOf(platform({ policies: [p] }))).toEqual({
      governed: true,
      entries: [
        { action: "allow", sources: ["spiffe://acme.test/web"], methods: ["GET"], pathPrefixes: ["/api"], policy: "api-in", rule: 0, groups: [0] },
        { action: "allow", sources: ["spiffe://acme.test/admin"], policy: "api-in", rule: 1, groups: [0] },
        { action: "deny", pathPrefixes: ["/internal"], policy: "api-in", rule: 2 },
      ],
      groups: [{ subjects: ["spiffe://acme.test/api/v1", "spiffe://acme.test/api/v2"] }],
    });
  });

  it("an audit policy decides nothing; a tenant denying by default governs", () => {
    const p = policy([{ peers: [], ports: [], action: "allow" }], { mode: "audit" });
    expect(authorizationOf(platform({ policies: [p] }))).toEqual({ governed: false, entries: [], groups: [] });
    const denying = tenants.map((t) => (t.id === 1 ? { ...t, defaultAction: "deny" as const } : t));
    expect(authorizationOf(platform({ tenants: denying })).governed).toBe(true);
  });

  it("a policy of the tenant not selecting the backends is not the frontend's", () => {
    const other: PolicyRow = { id: 2, tenantId: 1, name: "web-in", subject: { identity: "web" }, ingress: [{ peers: [], ports: [], action: "deny" }] };
    expect(authorizationOf(platform({ policies: [other] }))).toEqual({ governed: false, entries: [], groups: [] });
  });
});

describe("backend refs naming another service (the Gateway API's canary between services)", () => {
  // api-v1 and api-v2 are services of their own, on other target ports; the parent "api" keeps its backends for the default.
  const v1: ServiceRow = { ...api, id: 6, name: "api-v1", vip: "198.19.0.6", ports: [{ port: 80, protocol: "tcp", targetPort: 9001 }], backends: { selector: { identity: "api-v1" } } };
  const v2: ServiceRow = {
    ...api,
    id: 7,
    name: "api-v2",
    vip: "198.19.0.7",
    ports: [
      { port: 80, protocol: "tcp", targetPort: 9002 },
      { port: 81, protocol: "tcp", targetPort: 9003 },
    ],
    backends: { selector: { labels: { app: "api", version: "v2" } } },
  };
  const byService: HttpRouteRow = {
    id: 8,
    tenantId: 1,
    name: "by-service",
    parentRefs: [{ name: "api", port: 80 }],
    rules: [{ backendRefs: [{ kind: "Service", name: "api-v1", weight: 90 }, { name: "api-v2", port: 81, weight: 10 }] }],
  };
  const named = (more: Partial<Snapshot> = {}) => platform({ services: [api, v1, v2, zetaApi], httpRoutes: [byService], ...more });
  const ruleBackends = (doc: ReturnType<typeof documentOf>) => doc.frontends[0]!.rules[0]!.backends.map((b) => backend(doc, b.backend));

  it("take the named service's backends on the named port's target port (its one tcp port when none is named), weighted 90/10", () => {
    const doc = documentOf(named(), "n1");
    expect(doc.frontends.map((f) => f.service)).toEqual(["api"]);
    const [toV1, toV2] = ruleBackends(doc);
    expect(toV1!.servers.map((s) => [s.address, s.port])).toEqual([["10.0.1.11", 9001], ["10.0.2.11", 9001]]);
    expect(toV2!.servers.map((s) => [s.address, s.port])).toEqual([["10.0.2.12", 9003]]);
    expect([...toV1!.servers, ...toV2!.servers].map((s) => s.weight)).toEqual([9, 9, 2]);
    // The parent's own backends, on its own target port, stay the default.
    expect(backend(doc, "s5-p80-default").servers.map((s) => s.port)).toEqual([8080, 8080, 8080]);
  });

  it("filter the named service's backends by labels", () => {
    const route = { ...byService, rules: [{ backendRefs: [{ name: "api-v2", port: 80, labels: { version: "v1" } }, { name: "api-v2", port: 80, labels: { version: "v2" } }] }] };
    const [none, v2Only] = ruleBackends(documentOf(named({ httpRoutes: [route] }), "n1"));
    // api-v2 selects only version v2 workloads: the v1 subset of it is empty.
    expect(none!.servers).toEqual([]);
    expect(v2Only!.servers.map((s) => [s.address, s.port])).toEqual([["10.0.2.12", 9002]]);
  });

  it("need not be L7 themselves: the named services keep the socket LB and get no frontend", () => {
    const doc = documentOf(named(), "n1");
    expect(doc.frontends.map((f) => f.service)).toEqual(["api"]);
  });

  it("reach only the route's own tenant: a name the tenant lacks gives no servers, never another tenant's service", () => {
    const zetaV1: ServiceRow = { ...v1, id: 10, tenantId: 2, vip: "198.19.0.10", backends: { selector: {} } };
    const route = { ...byService, rules: [{ backendRefs: [{ name: "zeta-only" }] }] };
    const doc = documentOf(named({ services: [api, zetaApi, { ...zetaV1, name: "zeta-only" }], httpRoutes: [route] }), "n1");
    expect(ruleBackends(doc)[0]!.servers).toEqual([]);
  });

  it("bring the named services' policies into the frontend's authorization, on their own target ports", () => {
    const v1In: PolicyRow = {
      id: 2,
      tenantId: 1,
      name: "v1-in",
      subject: { identity: "api-v1" },
      ingress: [
        { peers: [{ identity: "web" }], ports: [{ port: 9001, protocol: "tcp" }], action: "allow", http: { methods: ["GET"] } },
        { peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["POST"] } },
      ],
    };
    // Only api-v1's backends are named (not api-v2's), and the parent selects api-v1 too: both ports count for it.
    const route = { ...byService, rules: [{ backendRefs: [{ name: "api-v1" }] }] };
    const doc = documentOf(named({ httpRoutes: [route], policies: [v1In] }), "n1");
    expect(doc.frontends[0]!.authorization).toEqual({
      governed: true,
      entries: [
        { action: "allow", sources: ["spiffe://acme.test/web"], methods: ["GET"], policy: "v1-in", rule: 0, groups: [0] },
        { action: "allow", sources: ["spiffe://acme.test/web"], methods: ["POST"], policy: "v1-in", rule: 1, groups: [0] },
      ],
      groups: [{ subjects: ["spiffe://acme.test/api/v1"] }],
    });
    // A policy governing only a service the route sends to (not the parent's backends) governs the frontend.
    const adminSvc: ServiceRow = { ...v1, id: 11, name: "admin", vip: "198.19.0.11", backends: { selector: { identity: "admin" } } };
    const adminIn: PolicyRow = { id: 3, tenantId: 1, name: "admin-in", subject: { identity: "admin" }, ingress: [{ peers: [{ identity: "web" }], ports: [{ port: 9001 }], action: "allow", http: { pathPrefixes: ["/ops"] } }] };
    const toAdmin = { ...byService, rules: [{ backendRefs: [{ name: "admin" }] }] };
    const governed = documentOf(named({ services: [api, v1, v2, adminSvc, zetaApi], httpRoutes: [toAdmin], policies: [adminIn] }), "n1").frontends[0]!.authorization;
    expect(governed).toEqual({
      governed: true,
      entries: [{ action: "allow", sources: ["spiffe://acme.test/web"], pathPrefixes: ["/ops"], policy: "admin-in", rule: 0, groups: [0] }],
      groups: [{ subjects: ["spiffe://acme.test/admin"] }],
    });
  });

  it("make a request pass the policies of every backend it might reach: backends governed differently are separate groups", () => {
    const v1In: PolicyRow = { id: 2, tenantId: 1, name: "v1-in", subject: { identity: "api-v1" }, ingress: [{ peers: [{ identity: "web" }], ports: [], action: "allow", http: { methods: ["GET"] } }] };
    const v2In: PolicyRow = { id: 3, tenantId: 1, name: "v2-in", subject: { identity: "api-v2" }, ingress: [{ peers: [{ identity: "web" }], ports: [], action: "allow", http: { methods: ["POST"] } }] };
    const route = { ...byService, rules: [{ backendRefs: [{ name: "api-v1", weight: 90 }, { name: "api-v2", weight: 10 }] }] };
    const a = documentOf(named({ httpRoutes: [route], policies: [v1In, v2In] }), "n1").frontends[0]!.authorization;
    // A GET admitted by v1's policy alone must not reach v2, whose policy admits only POST: each entry admits for its own group.
    expect(a.groups).toEqual([{ subjects: ["spiffe://acme.test/api/v1"] }, { subjects: ["spiffe://acme.test/api/v2"] }]);
    expect(a.entries.map((e) => [e.policy, e.groups])).toEqual([
      ["v1-in", [0]],
      ["v2-in", [1]],
    ]);
    // With one policy over both, one group.
    const both: PolicyRow = { id: 4, tenantId: 1, name: "both-in", subject: { labels: { app: "api" } }, ingress: [{ peers: [{ identity: "web" }], ports: [], action: "allow" }] };
    expect(documentOf(named({ httpRoutes: [route], policies: [both] }), "n1").frontends[0]!.authorization.groups).toHaveLength(1);
  });
});

describe("server weights", () => {
  it("are exact when the reduced ratio fits 0..256, else scaled with no non-zero share at 0", () => {
    expect(serverWeights([90, 10])).toEqual([9, 1]);
    expect(serverWeights([1, 1, 1])).toEqual([1, 1, 1]);
    expect(serverWeights([0, 5])).toEqual([0, 1]);
    expect(serverWeights([0, 0])).toEqual([0, 0]);
    expect(serverWeights([1000, 1])).toEqual([256, 1]);
    expect(serverWeights([999, 998, 1])).toEqual([256, 256, 1]);
  });

  it("keep each ref's share of a rule within what 0..256 can express, whatever the weights and subset sizes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 6 })), { minLength: 1, maxLength: 5 }),
        (refs) => {
          // Each ref's weight spread over its n servers, as the document does.
          const num = refs.flatMap(([w, n]) => Array.from({ length: n }, () => w));
          const den = refs.flatMap(([, n]) => Array.from({ length: n }, () => n));
          const weights = serverWeights(num, den);
          expect(weights.every((w) => Number.isInteger(w) && w >= 0 && w <= 256)).toBe(true);
          let at = 0;
          const totals = refs.map(([, n]) => weights.slice(at, (at += n)).reduce((a, b) => a + b, 0));
          const sum = totals.reduce((a, b) => a + b, 0);
          const wanted = refs.reduce((a, [w]) => a + w, 0);
          refs.forEach(([w], i) => {
            expect(totals[i]! > 0).toBe(w > 0);
            // Rounding to 1/256 of the largest server weight, per server.
            if (wanted > 0) expect(Math.abs(totals[i]! / sum - w / wanted)).toBeLessThan(0.05 + (w > 0 ? 6 / 256 : 0));
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("durations", () => {
  it("turn Gateway API durations into milliseconds", () => {
    expect(durationMs("500ms")).toBe(500);
    expect(durationMs("2s")).toBe(2000);
    expect(durationMs("1m30s")).toBe(90_000);
    expect(durationMs("1h")).toBe(3_600_000);
    expect(durationMs("0s")).toBeUndefined();
    expect(durationMs(undefined)).toBeUndefined();
  });
});
