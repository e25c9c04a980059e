/** Random platforms and edits of them: the property tests of the compiler and of admission's counts share them. */
import fc from "fast-check";
import type { Change } from "../../api/src/compiler/compile.ts";
import type { HttpRouteRow, IdentityRow, PeerSelector, PolicyRow, PolicyRule, ServiceRow, Snapshot, TrafficPolicyRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { snapshot } from "./support.ts";

export const NODES = ["n1", "n2"];
export const LABELS = ["a", "b"];
export const CIDRS = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "0.0.0.0/0", "10.1.2.3/32"];
export const EXTERNAL = ["10.1.2.3", "10.2.0.1", "192.0.2.5", "8.8.8.8", "10.1.9.9"];
export const PORTS = [80, 443, 22];

export const selector = (tenantId: number): fc.Arbitrary<{ identity?: string; labels?: Record<string, string> }> =>
  fc.oneof(
    fc.constant({}),
    fc.integer({ min: 0, max: 2 }).map((i) => ({ identity: `t${tenantId}-i${i}` })),
    fc.constantFrom(...LABELS).map((l) => ({ labels: { role: l } })),
  );
const peer = (tenantId: number): fc.Arbitrary<PeerSelector> => fc.oneof(selector(tenantId), fc.constantFrom(...CIDRS).map((cidr) => ({ cidr })));
const ruleArb = (tenantId: number): fc.Arbitrary<PolicyRule> =>
  fc.record({
    peers: fc.array(peer(tenantId), { maxLength: 2 }),
    ports: fc.array(
      fc.record({ port: fc.constantFrom(0, 80, 443), protocol: fc.constantFrom("tcp" as const, "udp" as const, "any" as const) }),
      { maxLength: 2 },
    ),
    action: fc.constantFrom("allow" as const, "deny" as const),
    transport: fc.constantFrom("plaintext" as const, "mtls" as const),
    http: fc.constantFrom({ methods: ["GET" as const] }, { pathPrefixes: ["/api"] }),
  }, { requiredKeys: ["peers", "ports", "action"] });
export const rules = (tenantId: number) => fc.option(fc.array(ruleArb(tenantId), { maxLength: 3 }), { nil: undefined });

/** Two tenants, three identities each, a few workloads over two nodes, a few policies, one service each. */
export const platformArb: fc.Arbitrary<Snapshot> = fc
  .tuple(
    fc.constantFrom("allow" as const, "deny" as const),
    fc.constantFrom("allow" as const, "deny" as const),
    fc.array(fc.constantFrom(...LABELS), { minLength: 6, maxLength: 6 }),
    fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.constantFrom(...NODES)), { minLength: 2, maxLength: 7 }),
    fc.array(fc.tuple(fc.integer({ min: 1, max: 2 }), fc.boolean()), { maxLength: 4 }),
    fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 3, maxLength: 3 }),
    fc.boolean(),
    fc.option(fc.constantFrom(undefined, 80), { nil: null }),
  )
  .chain(([d1, d2, labels, placed, policyShapes, weights, useWorkloadCidr, routedPort]) =>
    fc.tuple(...policyShapes.map(([tenantId]) => fc.tuple(selector(tenantId), rules(tenantId), rules(tenantId)))).map((bodies) => {
      const identities: IdentityRow[] = labels.map((role, i) => ({
        tenantId: 1 + Math.floor(i / 3),
        name: `t${1 + Math.floor(i / 3)}-i${i % 3}`,
        numericId: 256 + i,
        labels: { role },
      }));
      const workloads: WorkloadRow[] = placed.map(([i, node], n) => ({
        tenantId: identities[i]!.tenantId,
        name: `w${n}`,
        identity: identities[i]!.name,
        node,
        // One workload may sit on 10.1.2.3, an address a CIDR peer names as a /32.
        addresses: [n === 0 && useWorkloadCidr ? "10.1.2.3" : `10.1.0.${n + 1}`],
      }));
      const policies: PolicyRow[] = bodies.map(([subject, ingress, egress], i) => ({
        id: i + 1,
        tenantId: policyShapes[i]![0],
        name: `p${i}`,
        subject,
        ...(ingress === undefined ? {} : { ingress }),
        ...(egress === undefined ? {} : { egress }),
      }));
      const services: ServiceRow[] = [1, 2].map((tenantId) => ({
        id: tenantId,
        tenantId,
        name: "svc",
        vip: `10.96.0.${tenantId}`,
        ports: [
          { port: 80, protocol: "tcp", targetPort: 8080 },
          { port: 53, protocol: "udp", targetPort: 5353 },
        ],
        backends:
          tenantId === 1
            ? { selector: { labels: { role: "a" } } }
            : { explicit: weights.map((weight, i) => ({ address: `10.3.0.${i + 1}`, weight, zone: i === 0 ? "za" : "zb" })) },
        loadBalancing: "random",
        preferSameZone: tenantId === 2,
      }));
      // Tenant 1's service is L7 on port 80 (or every tcp port) when a route names it.
      const httpRoutes: HttpRouteRow[] = routedPort === null ? [] : [routeOf(1, routedPort)];
      return snapshot({
        tenants: [
          { id: 1, name: "one", defaultAction: d1 },
          { id: 2, name: "two", defaultAction: d2 },
        ],
        identities,
        workloads,
        policies,
        services,
        httpRoutes,
        // n1's proxy address (10.1.0.1) is a workload's when one sits there: the workload keeps it.
        nodes: [
          { name: "n1", zone: "za", podCidr: "10.1.0.0/24" },
          { name: "n2", zone: "zb", podCidr: "10.9.2.0/24" },
        ],
      });
    }),
  );

/** An httpRoute of the tenant's service "svc", on one port or (undefined) all. */
export const routeOf = (tenantId: number, port: number | undefined, id = 7): HttpRouteRow => ({
  id,
  tenantId,
  name: "canary",
  parentRefs: [port === undefined ? { name: "svc" } : { name: "svc", port }],
  rules: [{ backendRefs: [{ labels: { role: "a" }, weight: 9 }, { labels: { role: "b" }, weight: 1 }] }],
});

/** One random edit of a platform: the change to feed the memo, and the rows it leads to. */
export function edits(snap: Snapshot): fc.Arbitrary<{ change: Change; next: Snapshot }> {
  const w = fc.constantFrom(...snap.workloads);
  const replace = <T>(list: readonly T[], old: T, row: T | null): T[] => list.flatMap((x) => (x === old ? (row === null ? [] : [row]) : [x]));
  const options: Array<fc.Arbitrary<{ change: Change; next: Snapshot }>> = [
    fc.tuple(w, fc.constantFrom(...NODES), fc.integer({ min: 100, max: 120 })).map(([old, node, octet]) => {
      const taken = snap.workloads.some((x) => x !== old && x.addresses.includes(`10.1.0.${octet}`));
      const row = { ...old, node, addresses: taken ? old.addresses : [`10.1.0.${octet}`] };
      return { change: { kind: "workload", op: "put", row }, next: { ...snap, workloads: replace(snap.workloads, old, row) } };
    }),
    w.map((old) => ({ change: { kind: "workload", op: "delete", tenantId: old.tenantId, name: old.name }, next: { ...snap, workloads: replace(snap.workloads, old, null) } })),
    fc.constantFrom(...snap.tenants).map((old) => {
      const row = { ...old, defaultAction: old.defaultAction === "allow" ? ("deny" as const) : ("allow" as const) };
      return { change: { kind: "tenant", op: "put", row }, next: { ...snap, tenants: replace(snap.tenants, old, row) } };
    }),
    fc.constantFrom(...snap.tenants).map((old) => {
      const row = { ...old, defaultTransport: old.defaultTransport === "mtls" ? ("plaintext" as const) : ("mtls" as const) };
      return { change: { kind: "tenant", op: "put", row }, next: { ...snap, tenants: replace(snap.tenants, old, row) } };
    }),
    fc.tuple(fc.constantFrom(...snap.identities), fc.constantFrom(...LABELS)).map(([old, role]) => {
      const row = { ...old, labels: { role } };
      return { change: { kind: "identity", op: "put", row }, next: { ...snap, identities: replace(snap.identities, old, row) } };
    }),
    fc.tuple(fc.constantFrom(...snap.services), fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 1, maxLength: 3 })).map(([old, weights]) => {
      const row: ServiceRow = { ...old, backends: { explicit: weights.map((weight, i) => ({ address: `10.4.0.${i + 1}`, weight, zone: i === 0 ? "za" : "zb" })) } };
      return { change: { kind: "service", op: "put", row }, next: { ...snap, services: replace(snap.services, old, row) } };
    }),
    fc.tuple(fc.constantFrom(1, 2), selector(1), rules(1), fc.constantFrom(...CIDRS)).map(([tenantId, subject, ingress, cidr]) => {
      const row: PolicyRow = { id: 99, tenantId, name: "extra", subject, ingress: ingress ?? [], egress: [{ peers: [{ cidr }], ports: [], action: "allow" }] };
      return { change: { kind: "policy", op: "put", row }, next: { ...snap, policies: [...snap.policies, row] } };
    }),
    fc.constantFrom("za", "zb", "zc").map((zone) => {
      const old = snap.nodes[0]!;
      const row = { ...old, zone };
      return { change: { kind: "node", op: "put", row }, next: { ...snap, nodes: replace(snap.nodes, old, row) } };
    }),
    fc.constantFrom("10.1.0.0/24", "10.9.1.0/24", undefined).map((podCidr) => {
      const old = snap.nodes[1]!;
      const { podCidr: _was, ...rest } = old;
      const row = podCidr === undefined ? rest : { ...rest, podCidr };
      return { change: { kind: "node", op: "put", row }, next: { ...snap, nodes: replace(snap.nodes, old, row) } };
    }),
    fc.tuple(fc.constantFrom(1, 2), fc.constantFrom(undefined, 80, 53)).map(([tenantId, port]) => {
      const row = routeOf(tenantId, port, 10 + tenantId);
      const others = (snap.httpRoutes ?? []).filter((r) => r.tenantId !== tenantId || r.name !== row.name);
      return { change: { kind: "httpRoute", op: "put", row }, next: { ...snap, httpRoutes: [...others, row] } };
    }),
    fc.constantFrom(1, 2).map((tenantId) => ({
      change: { kind: "httpRoute", op: "delete", tenantId, name: "canary" },
      next: { ...snap, httpRoutes: (snap.httpRoutes ?? []).filter((r) => r.tenantId !== tenantId || r.name !== "canary") },
    })),
    // A traffic policy reaches no map, only the L7 document: the memo must keep every part and count.
    fc.tuple(fc.constantFrom(1, 2), fc.integer({ min: 1, max: 100 }), fc.boolean()).map(([tenantId, rate, outlier]) => {
      const row: TrafficPolicyRow = { tenantId, name: "limits", service: "svc", rateLimit: { requestsPerSecond: rate }, ...(outlier ? { outlierDetection: { interval: "2s" } } : {}) };
      const others = (snap.trafficPolicies ?? []).filter((p) => p.tenantId !== tenantId || p.name !== row.name);
      return { change: { kind: "trafficPolicy", op: "put", row }, next: { ...snap, trafficPolicies: [...others, row] } };
    }),
    fc.constantFrom(1, 2).map((tenantId) => ({
      change: { kind: "trafficPolicy", op: "delete", tenantId, name: "limits" },
      next: { ...snap, trafficPolicies: (snap.trafficPolicies ?? []).filter((p) => p.tenantId !== tenantId || p.name !== "limits") },
    })),
  ];
  if (snap.policies.length > 0) {
    options.push(
      fc.constantFrom(...snap.policies).map((old) => ({
        change: { kind: "policy", op: "delete", tenantId: old.tenantId, name: old.name },
        next: { ...snap, policies: replace(snap.policies, old, null) },
      })),
    );
  }
  return fc.oneof(...options);
}

/** The id allocations a change needs first, as the database would insert them in the same transaction. */
export function idChanges(before: Snapshot, after: Snapshot): Change[] {
  const out: Change[] = [];
  for (const [key, id] of after.backendIds) if (!before.backendIds.has(key)) out.push({ kind: "backendId", key, id });
  for (const [prefix, id] of after.cidrIdentities) if (!before.cidrIdentities.has(prefix)) out.push({ kind: "cidrIdentity", prefix, id });
  return out;
}

