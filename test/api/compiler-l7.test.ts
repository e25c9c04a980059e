/**
 * The compiler's L7 output (issue 21), entry by entry: an L7 frontend's
 * weft_l7 entry in place of its svc entry and table, every node's proxy
 * address in every ipcache, the proxy's allows at governed backends, and
 * deny rules with http left out at L4.
 */
import { constants } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { capacities, checkCapacity } from "../../api/src/compiler/capacity.ts";
import { compileNode, createCompiler } from "../../api/src/compiler/compile.ts";
import { decodeRuleId } from "../../api/src/compiler/ids.ts";
import { L7_PROXY_RULE_ID, proxyAddressOf } from "../../api/src/compiler/l7.ts";
import { tryChanges } from "../../api/src/follower/admission.ts";
import { Rows } from "../../api/src/follower/rows.ts";
import { resolveSide } from "../../api/src/mesh/flows/views.ts";
import type { HttpRouteRow, IdentityRow, NodeRow, PolicyRow, ServiceRow, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { createEvaluator } from "../datapath/evaluate.ts";
import { snapshot, throughCodec } from "../datapath/support.ts";

const PROXY = constants.IDENTITY_PROXY!;
const tenants: TenantRow[] = [
  { id: 1, name: "acme", defaultAction: "allow", trustDomain: "acme.test" },
  { id: 2, name: "zeta", defaultAction: "allow", trustDomain: "zeta.test" },
];
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: 256, labels: { app: "web" }, path: "/web" },
  { tenantId: 1, name: "api-v1", numericId: 257, labels: { app: "api", version: "v1" }, path: "/api/v1" },
  { tenantId: 1, name: "api-v2", numericId: 258, labels: { app: "api", version: "v2" }, path: "/api/v2" },
  { tenantId: 2, name: "z", numericId: 300, labels: {}, path: "/z" },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["10.0.1.10"] },
  { tenantId: 1, name: "api-1", identity: "api-v1", node: "n1", addresses: ["10.0.1.11"] },
  { tenantId: 1, name: "api-2", identity: "api-v2", node: "n2", addresses: ["10.0.2.11"] },
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
    { port: 9090, protocol: "tcp", targetPort: 9090 },
    { port: 53, protocol: "udp", targetPort: 5353 },
  ],
  backends: { selector: { labels: { app: "api" } } },
  loadBalancing: "random",
  preferSameZone: false,
};
const web: ServiceRow = { ...api, id: 6, name: "web", vip: "198.19.0.6", ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { identity: "web" } } };
const route = (parentRefs: HttpRouteRow["parentRefs"]): HttpRouteRow => ({ id: 3, tenantId: 1, name: "canary", parentRefs, rules: [{ backendRefs: [{ labels: { version: "v1" }, weight: 90 }, { labels: { version: "v2" }, weight: 10 }] }] });
const platform = (more: Partial<Snapshot>): Snapshot => snapshot({ tenants, identities, workloads, nodes, services: [api, web], ...more });
const apiPolicy = (ingress: PolicyRow["ingress"]): PolicyRow => ({ id: 1, tenantId: 1, name: "api-in", subject: { labels: { app: "api" } }, ingress });

describe("L7 frontends", () => {
  it("an httpRoute's port gets a weft_l7 entry and neither svc entry nor table; the others keep theirs", () => {
    const out = compileNode(platform({ httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1");
    expect(out.maps.l7).toEqual([{ key: { vip: "198.19.0.5", port: 80, protocol: 6 }, value: { http: true } }]);
    const svcKeys = out.maps.svc.map((e) => `${e.key.vip}:${e.key.port}/${e.key.protocol}`);
    expect(svcKeys).toEqual(["198.19.0.5:9090/6", "198.19.0.5:53/17", "198.19.0.6:80/6"]);
    // Table ids count every port, in (protocol, port) order: port 80 was index 0, its table is gone, 9090 keeps index 1.
    const tables = new Set(out.maps.lb_slot.map((e) => e.key.tableId));
    expect(tables.has(5 * 16 + 0)).toBe(false);
    expect(tables.has(5 * 16 + 1)).toBe(true);
  });

  it("a parentRef without a port takes every tcp port, never udp", () => {
    const out = compileNode(platform({ httpRoutes: [route([{ name: "api" }])] }), "n1");
    expect(out.maps.l7.map((e) => e.key.port)).toEqual([80, 9090]);
    expect(out.maps.svc.filter((e) => e.key.vip === "198.19.0.5").map((e) => `${e.key.port}/${e.key.protocol}`)).toEqual(["53/17"]);
  });

  it("exactly the nodes that would hold the svc entry hold the l7 entry", () => {
    const before = platform({});
    const after = platform({ httpRoutes: [route([{ name: "api", port: 80 }])] });
    for (const node of ["n1", "n2", "n3"]) {
      const had = compileNode(before, node).maps.svc.some((e) => e.key.vip === "198.19.0.5" && e.key.port === 80);
      expect(compileNode(after, node).maps.l7.length > 0).toBe(had);
    }
    // n3 runs only the other tenant: it gets nothing of acme's.
    expect(compileNode(after, "n3").maps.l7).toEqual([]);
  });

  it("a service no route names compiles byte for byte as before", () => {
    const withRoute = compileNode(platform({ httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1");
    const without = compileNode(platform({}), "n1");
    const owner = "s:6";
    expect(withRoute.parts.get(owner)!.digest).toBe(without.parts.get(owner)!.digest);
    // And a platform without any route compiles as it did before routes existed (no l7 in any part).
    const legacy = compileNode({ ...platform({}), httpRoutes: undefined } as Snapshot, "n1");
    expect(legacy.hash).toBe(without.hash);
    expect([...without.parts.values()].every((p) => p.entries.l7 === undefined)).toBe(true);
  });

  it("a route written and deleted through the live compiler turns the frontend L7 and back, as a fresh compile would", () => {
    const base = platform({ policies: [apiPolicy([{ peers: [], ports: [], action: "allow" }])] });
    const compiler = createCompiler(base);
    const before = compiler.compileNode("n1").hash;
    const r = route([{ name: "api", port: 80 }]);
    compiler.apply({ kind: "httpRoute", op: "put", row: r });
    const routed = compiler.compileNode("n1");
    expect(routed.hash).toBe(compileNode({ ...base, httpRoutes: [r] }, "n1").hash);
    expect(routed.maps.l7).toHaveLength(1);
    expect(routed.maps.policy.some((e) => e.key.remoteIdentity === PROXY)).toBe(true);
    compiler.apply({ kind: "httpRoute", op: "delete", tenantId: 1, name: "canary" });
    expect(compiler.compileNode("n1").hash).toBe(before);
  });

  it("admission refuses a route whose l7 entries overflow a node's map, and changes nothing", () => {
    const base = platform({});
    const compiler = createCompiler(base);
    const rows = new Rows();
    for (const row of base.tenants) rows.apply({ kind: "tenant", op: "put", row });
    for (const row of base.nodes) rows.apply({ kind: "node", op: "put", row });
    for (const row of base.identities) rows.apply({ kind: "identity", op: "put", row });
    for (const row of base.workloads) rows.apply({ kind: "workload", op: "put", row });
    for (const row of base.services) rows.apply({ kind: "service", op: "put", row });
    const before = compiler.compileNode("n1").hash;
    const limits = { ...capacities(), l7: 1 };
    const put = { kind: "httpRoute" as const, op: "put" as const, row: route([{ name: "api" }]) };
    expect(tryChanges(compiler, rows, limits, [put], (err) => { throw err; })).toEqual([
      { map: "l7", node: "n1", needed: 2, available: 1 },
      { map: "l7", node: "n2", needed: 2, available: 1 },
    ]);
    expect(compiler.compileNode("n1").hash).toBe(before);
    expect(tryChanges(compiler, rows, limits, [{ ...put, row: route([{ name: "api", port: 80 }]) }], (err) => { throw err; })).toEqual([]);
  });

  it("weft_l7 entries count against the l7 map's capacity (WEFT_SVC_MAX each map)", () => {
    const out = compileNode(platform({ httpRoutes: [route([{ name: "api" }])] }), "n1");
    expect(out.counts.l7).toBe(2);
    expect(capacities().l7).toBe(capacities().svc);
    expect(checkCapacity({ n1: out.counts }, { ...capacities(), l7: 1 })).toEqual([{ map: "l7", node: "n1", needed: 2, available: 1 }]);
  });
});

describe("the proxy address", () => {
  it("is the first address of the node's pod block", () => {
    expect(proxyAddressOf("10.0.3.0/24")).toBe("10.0.3.1");
    expect(proxyAddressOf("10.1.16.0/20")).toBe("10.1.16.1");
    expect(proxyAddressOf(undefined)).toBeNull();
  });

  it("a node hosting a tenant with routes holds every node's proxy address as identity proxy without a tenant", () => {
    const routed = platform({ httpRoutes: [route([{ name: "api", port: 80 }])] });
    for (const node of ["n1", "n2"]) {
      const ipcache = compileNode(routed, node).maps.ipcache.filter((e) => e.value.identity === PROXY);
      expect(ipcache).toEqual(["10.0.1.1", "10.0.2.1", "10.0.3.1"].map((a) => ({ key: { prefix: `${a}/32` }, value: { identity: PROXY, tenant: 0 } })));
    }
  });

  it("a node hosting no tenant with routes holds no proxy address: a node joining does not change it", () => {
    const routed = platform({ httpRoutes: [route([{ name: "api", port: 80 }])] });
    // n3 hosts only tenant 2, which has no route; n4 hosts nothing.
    const withN4 = platform({ nodes: [...nodes, { name: "n4", zone: "a", podCidr: "10.0.4.0/24" }], httpRoutes: [route([{ name: "api", port: 80 }])] });
    expect(compileNode(routed, "n3").maps.ipcache.filter((e) => e.value.identity === PROXY)).toEqual([]);
    expect(compileNode(withN4, "n4").maps.ipcache).toEqual([]);
    expect(compileNode(withN4, "n3").maps).toEqual(compileNode(routed, "n3").maps);
    expect(compileNode(platform({}), "n1").maps.ipcache.filter((e) => e.value.identity === PROXY)).toEqual([]);
  });

  it("a workload placed on the address before it was reserved keeps it: one key, one owner", () => {
    const squatter: WorkloadRow = { tenantId: 1, name: "old", identity: "web", node: "n2", addresses: ["10.0.2.1"] };
    const out = compileNode(platform({ workloads: [...workloads, squatter] }), "n1");
    expect(out.maps.ipcache.filter((e) => e.key.prefix === "10.0.2.1/32")).toEqual([{ key: { prefix: "10.0.2.1/32" }, value: { identity: 256, tenant: 1 } }]);
  });

  it("a CIDR peer naming the proxy address as a /32 does not take its key", () => {
    const p: PolicyRow = { id: 2, tenantId: 1, name: "odd", subject: { identity: "web" }, egress: [{ peers: [{ cidr: "10.0.2.1/32" }], ports: [], action: "allow" }] };
    const out = compileNode(platform({ policies: [p], httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1");
    expect(out.maps.ipcache.filter((e) => e.key.prefix === "10.0.2.1/32")).toEqual([{ key: { prefix: "10.0.2.1/32" }, value: { identity: PROXY, tenant: 0 } }]);
    // Without routes the node holds no proxy address, and the peer is the CIDR it names.
    const plain = compileNode(platform({ policies: [p] }), "n1");
    expect(plain.maps.ipcache.filter((e) => e.key.prefix === "10.0.2.1/32").map((e) => e.value.identity)).not.toContain(PROXY);
  });
});

describe("the proxy's allows at L7 backends", () => {
  const governed = apiPolicy([{ peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["GET"] } }]);
  const proxied = (snap: Snapshot, node: string) => compileNode(snap, node).maps.policy.filter((e) => e.key.remoteIdentity === PROXY);

  it("a governed backend of an L7 frontend lets the proxy in on its target port, tcp, under the reserved rule id", () => {
    const snap = platform({ policies: [governed], httpRoutes: [route([{ name: "api", port: 80 }])] });
    expect(proxied(snap, "n1")).toEqual([
      { key: { localIdentity: 257, remoteIdentity: PROXY, port: 8080, protocol: 6, direction: "ingress" }, value: { action: "allow", ruleId: L7_PROXY_RULE_ID } },
    ]);
    expect(proxied(snap, "n2").map((e) => e.key.localIdentity)).toEqual([258]);
    // Through the codec and the tc program's lookup: the proxy of another node reaches 8080, nothing else.
    const decide = createEvaluator(throughCodec(compileNode(snap, "n1").maps));
    expect(decide({ local: "10.0.1.11", remote: "10.0.2.1", port: 8080, protocol: 6, direction: "ingress" })).toMatchObject({ verdict: "pass", ruleId: L7_PROXY_RULE_ID });
    expect(decide({ local: "10.0.1.11", remote: "10.0.2.1", port: 9090, protocol: 6, direction: "ingress" }).verdict).toBe("drop");
    expect(decide({ local: "10.0.1.11", remote: "10.0.2.1", port: 8080, protocol: 17, direction: "ingress" }).verdict).toBe("drop");
    // web (the caller, no L7 backend) gets no such entry.
    expect(proxied(snap, "n1").some((e) => e.key.localIdentity === 256)).toBe(false);
  });

  it("no entry where the datapath does not decide ingress by policy, nor for services no route names", () => {
    expect(proxied(platform({ httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1")).toEqual([]);
    expect(proxied(platform({ policies: [governed] }), "n1")).toEqual([]);
    // An audit policy does not govern; a tenant denying by default does.
    const audit = { ...governed, mode: "audit" as const };
    expect(proxied(platform({ policies: [audit], httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1")).toEqual([]);
    const denying = tenants.map((t) => (t.id === 1 ? { ...t, defaultAction: "deny" as const } : t));
    expect(proxied(platform({ tenants: denying, httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1")).toHaveLength(1);
  });

  it("a backend ref naming another service lets the proxy into that service's governed backends on its target port, kept current as it changes", () => {
    // web:80 is the L7 frontend; its rule sends everything to service api's port 9090 (target 9090), which a policy governs.
    const toApi: HttpRouteRow = { id: 4, tenantId: 1, name: "to-api", parentRefs: [{ name: "web", port: 80 }], rules: [{ backendRefs: [{ kind: "Service", name: "api", port: 9090 }] }] };
    const snap = platform({ policies: [governed], httpRoutes: [toApi] });
    expect(proxied(snap, "n1")).toEqual([
      { key: { localIdentity: 257, remoteIdentity: PROXY, port: 9090, protocol: 6, direction: "ingress" }, value: { action: "allow", ruleId: L7_PROXY_RULE_ID } },
    ]);
    // api itself stays on the socket LB: no route names it as a parent.
    expect(compileNode(snap, "n1").maps.l7.map((e) => e.key.vip)).toEqual(["198.19.0.6"]);
    // The named service's backends changing moves the allows, in the live compiler as in a fresh compile.
    const compiler = createCompiler(snap);
    const onlyV2: ServiceRow = { ...api, backends: { selector: { identity: "api-v2" } } };
    compiler.apply({ kind: "service", op: "put", row: onlyV2 });
    const fresh = { ...snap, services: [onlyV2, web] };
    for (const node of ["n1", "n2"]) expect(compiler.compileNode(node).hash).toBe(compileNode(fresh, node).hash);
    expect(proxied(fresh, "n1")).toEqual([]);
    expect(proxied(fresh, "n2").map((e) => [e.key.localIdentity, e.key.port])).toEqual([[258, 9090]]);
  });

  it("under an audit policy the proxy's allow is staged in weft_audit, so the audit probe does not report proxied connections as drops", () => {
    const audit = { ...governed, mode: "audit" as const };
    const out = compileNode(platform({ policies: [audit], httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1");
    const proxyKey = { localIdentity: 257, remoteIdentity: PROXY, port: 8080, protocol: 6, direction: "ingress" };
    expect(out.maps.audit.filter((e) => e.key.remoteIdentity === PROXY)).toEqual([{ key: proxyKey, value: { action: "allow", ruleId: L7_PROXY_RULE_ID } }]);
    // The staged policy's own default-deny is there beside it, and nothing is enforced.
    expect(out.maps.audit.some((e) => e.key.localIdentity === 257 && e.value.action === "default-deny")).toBe(true);
    expect(out.maps.policy.filter((e) => e.key.localIdentity === 257)).toEqual([]);
    // An enforced policy: the allow is enforced, and no audit map is written.
    const enforced = compileNode(platform({ policies: [governed], httpRoutes: [route([{ name: "api", port: 80 }])] }), "n1");
    expect(enforced.maps.audit).toEqual([]);
  });

  it("a proxy address is never a tenant's peer: its entry has no tenant and other tenants' nodes know it the same way", () => {
    const out = compileNode(platform({ policies: [governed], httpRoutes: [route([{ name: "api" }])] }), "n3");
    expect(out.maps.policy.some((e) => e.key.remoteIdentity === PROXY)).toBe(false);
    expect(out.maps.ipcache.filter((e) => e.value.identity === PROXY).every((e) => e.value.tenant === 0)).toBe(true);
  });
});

describe("policy rules with http at L4", () => {
  const web2api = { peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" as const }] };
  const decideFor = (ingress: PolicyRow["ingress"]) =>
    createEvaluator(throughCodec(compileNode(platform({ policies: [apiPolicy(ingress)] }), "n1").maps))({ local: "10.0.1.11", remote: "10.0.1.10", port: 8080, protocol: 6, direction: "ingress" });

  it("an allow with http allows at L4 as if http were absent", () => {
    expect(decideFor([{ ...web2api, action: "allow", http: { methods: ["GET"], pathPrefixes: ["/api"] } }]).verdict).toBe("pass");
  });

  it("a deny with http is not written at L4; without http it is", () => {
    const allow = { ...web2api, action: "allow" as const };
    expect(decideFor([allow, { ...web2api, action: "deny", http: { methods: ["POST"] } }]).verdict).toBe("pass");
    expect(decideFor([allow, { ...web2api, action: "deny" }]).verdict).toBe("drop");
    const entries = compileNode(platform({ policies: [apiPolicy([allow, { peers: [], ports: [], action: "deny", http: { pathPrefixes: ["/admin"] } }])] }), "n1").maps.policy;
    expect(entries.filter((e) => e.value.action === "deny")).toEqual([]);
  });
});

describe("flows of the proxy's connections", () => {
  it("name the proxy as a reserved peer and no tenant's policy (rule id 1 decodes to none)", () => {
    const names = { tenants: new Map(), identities: new Map(), cidrs: new Map(), workloads: new Map(), policies: new Map(), services: new Map(), presentOnNode: new Set<number>() };
    expect(resolveSide(names, PROXY, 0, "10.0.2.1").peer).toEqual({ identity: null, tenant: null, reserved: "proxy" });
    expect(decodeRuleId(L7_PROXY_RULE_ID)).toEqual({ policyId: 0, ruleIndex: 1 });
  });
});

describe("the proxy's hop to a backend on another node (mtls)", () => {
  const mtlsPolicy = apiPolicy([{ peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", transport: "mtls" }]);
  const plainPolicy = apiPolicy([{ peers: [{ identity: "web" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow" }]);
  const routed = (policy: PolicyRow) => platform({ httpRoutes: [route([{ name: "api", port: 80 }])], policies: [policy] });
  const proxyAllows = (snap: Snapshot, node: string) => compileNode(snap, node).maps.policy.filter((e) => e.key.remoteIdentity === PROXY);
  const servers = (snap: Snapshot, node: string) => createCompiler(snap).l7Document(node)!.backends.flatMap((b) => b.servers);

  it("an mtls ingress rule flags the proxy's allow at the port it covers; a plaintext one does not", () => {
    expect(proxyAllows(routed(mtlsPolicy), "n2")).toEqual([
      { key: { localIdentity: 258, remoteIdentity: PROXY, port: 8080, protocol: 6, direction: "ingress" }, value: { action: "allow", ruleId: L7_PROXY_RULE_ID, mtls: true } },
    ]);
    expect(proxyAllows(routed(plainPolicy), "n2").map((e) => e.value)).toEqual([{ action: "allow", ruleId: L7_PROXY_RULE_ID }]);
    // A rule on another port leaves the proxy's hop on 8080 plaintext.
    const otherPort = apiPolicy([{ peers: [{ identity: "web" }], ports: [{ port: 9090, protocol: "tcp" }], action: "allow", transport: "mtls" }]);
    expect(proxyAllows(routed(otherPort), "n2").find((e) => e.key.port === 8080)?.value.mtls).toBeUndefined();
  });

  it("a caller's node reaches a remote backend through the transport, a local one directly", () => {
    const got = servers(routed(mtlsPolicy), "n1");
    expect(got.find((s) => s.address === "10.0.2.11")).toMatchObject({ port: 8080, transport: true });
    expect(got.find((s) => s.address === "10.0.1.11")).not.toHaveProperty("transport");
    // From n2 the roles swap.
    const fromN2 = servers(routed(mtlsPolicy), "n2");
    expect(fromN2.find((s) => s.address === "10.0.1.11")).toMatchObject({ transport: true });
    expect(fromN2.find((s) => s.address === "10.0.2.11")).not.toHaveProperty("transport");
    expect(servers(routed(plainPolicy), "n1").some((s) => s.transport)).toBe(false);
  });

  it("the live compiler flags and unflags them as the policy changes, as a fresh compile would", () => {
    const compiler = createCompiler(routed(plainPolicy));
    compiler.apply({ kind: "policy", op: "put", row: mtlsPolicy });
    expect(compiler.compileNode("n2").hash).toBe(compileNode(routed(mtlsPolicy), "n2").hash);
    expect(compiler.l7Document("n1")!.backends.flatMap((b) => b.servers).some((s) => s.transport)).toBe(true);
    compiler.apply({ kind: "policy", op: "put", row: plainPolicy });
    expect(compiler.compileNode("n2").hash).toBe(compileNode(routed(plainPolicy), "n2").hash);
  });
});

describe("callers held to their own egress policy at the proxy", () => {
  // The kernel hands a caller's connection to an L7 service to the proxy without an egress decision ([R17]):
  // the document names the callers whose egress would refuse some backend the frontend may send to.
  const egressOf = (egress: PolicyRow["egress"]): PolicyRow => ({ id: 7, tenantId: 1, name: "web-out", subject: { identity: "web" }, egress });
  const frontendOn = (snap: Snapshot, node: string) => createCompiler(snap).l7Document(node)!.frontends.find((f) => f.service === "api")!;
  const withRoute = (policies: PolicyRow[]) => platform({ httpRoutes: [route([{ name: "api", port: 80 }])], policies });

  it("names a caller whose egress allows only some of the backends (v1, not v2): the proxy refuses it, as the kernel would some of its connections", () => {
    const onlyV1 = egressOf([{ peers: [{ identity: "api-v1" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow" }]);
    expect(frontendOn(withRoute([onlyV1]), "n1").egressDenied).toEqual(["spiffe://acme.test/web"]);
  });

  it("names none when the caller's egress allows every backend, or no policy decides its egress", () => {
    const both = egressOf([{ peers: [{ labels: { app: "api" } }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow" }]);
    expect(frontendOn(withRoute([both]), "n1").egressDenied).toBeUndefined();
    expect(frontendOn(withRoute([]), "n1").egressDenied).toBeUndefined();
  });

  it("a deny wins as at L4, and the tenant's default deny governs egress too", () => {
    const denyV2 = egressOf([
      { peers: [{ labels: { app: "api" } }], ports: [], action: "allow" },
      { peers: [{ identity: "api-v2" }], ports: [{ port: 8080, protocol: "tcp" }], action: "deny" },
    ]);
    expect(frontendOn(withRoute([denyV2]), "n1").egressDenied).toEqual(["spiffe://acme.test/web"]);
    const denyAll = { ...withRoute([]), tenants: [{ ...tenants[0]!, defaultAction: "deny" as const }, tenants[1]!] };
    // api-1 is on n1 with web: every caller of the tenant there is held to the default.
    expect(frontendOn(denyAll, "n1").egressDenied).toEqual(["spiffe://acme.test/api/v1", "spiffe://acme.test/web"]);
  });
});
