/**
 * The follower's rows: database rows converted to the compiler's plain rows,
 * and the mirror of those rows kept beside the live compiler.
 */
import type { httpRoutes, identities, nodes, policies, services, tenants, trafficPolicies, workloads } from "../db/schema.ts";
import type { Change, HttpRouteRow, IdentityRow, NodeRow, PolicyRow, PolicyRule, ServiceRow, Snapshot, TenantRow, TrafficPolicyRow, TrustDomainJwtKeys, WorkloadRow } from "../compiler/index.ts";

/** The tenant rows the compiler holds, by the kind the change log names them with. */
export const ROW_KINDS = ["identity", "workload", "service", "policy", "httpRoute", "trafficPolicy"] as const;
export type RowKind = (typeof ROW_KINDS)[number];

// Row conversions: database rows to the compiler's plain rows.
type TenantDb = typeof tenants.$inferSelect;
type IdentityDb = typeof identities.$inferSelect;
type WorkloadDb = typeof workloads.$inferSelect;
type ServiceDb = typeof services.$inferSelect;
type PolicyDb = typeof policies.$inferSelect;
type HttpRouteDb = typeof httpRoutes.$inferSelect;
type TrafficPolicyDb = typeof trafficPolicies.$inferSelect;

/**
 * `jwtKeys`: the tenant's JWT-SVID keys by trust domain (jwt-keys.ts); a tenant written with none has none yet.
 * `trustBundlePem`: its CA certificates (ca-roots.ts); absent before its CA exists.
 */
export const tenantRowOf = (r: TenantDb, jwtKeys: readonly TrustDomainJwtKeys[] = [], trustBundlePem?: string): TenantRow => ({
  id: r.id,
  name: r.name,
  defaultAction: r.defaultAction,
  ...(r.defaultTransport === "mtls" ? { defaultTransport: "mtls" as const } : {}),
  trustDomain: r.trustDomain,
  ...(jwtKeys.length === 0 ? {} : { jwtKeys }),
  ...(trustBundlePem === undefined ? {} : { trustBundlePem }),
});
export const identityRowOf = (r: IdentityDb): IdentityRow => ({
  tenantId: r.tenantId,
  name: r.name,
  numericId: r.securityIdentity,
  labels: r.selectors,
  path: r.path,
});
/** `healthy`: workload_health's verdict, null when none is stored (not probed, or not yet reported). */
export const workloadRowOf = (r: WorkloadDb, healthy: boolean | null = null): WorkloadRow => ({
  tenantId: r.tenantId,
  name: r.name,
  identity: r.identity,
  node: r.node,
  addresses: r.addresses,
  ...(r.interface === null ? {} : { interface: r.interface }),
  ...(healthy === false ? { unhealthy: true } : {}),
});
/** The node columns the compiler reads (nodeRowOf). */
export type NodeColumns = Pick<typeof nodes.$inferSelect, "name" | "zone" | "unreachableSince" | "podCidr">;
export const nodeRowOf = (r: NodeColumns): NodeRow => ({
  name: r.name,
  zone: r.zone,
  ...(r.unreachableSince === null ? {} : { unreachable: true }),
  ...(r.podCidr === null ? {} : { podCidr: r.podCidr }),
});
export const serviceRowOf = (r: ServiceDb): ServiceRow => ({
  id: r.id,
  tenantId: r.tenantId,
  name: r.name,
  vip: r.vip,
  ports: r.ports as ServiceRow["ports"],
  backends: r.backends as ServiceRow["backends"],
  loadBalancing: r.loadBalancing,
  preferSameZone: r.preferSameZone,
});
/** The API lets a rule leave out peers or ports (meaning any); the compiler wants them as empty lists. */
const rulesOf = (rules: unknown): PolicyRule[] =>
  (rules as Partial<PolicyRule>[]).map((r) => ({
    peers: r.peers ?? [],
    ports: r.ports ?? [],
    action: r.action!,
    ...(r.mode ? { mode: r.mode } : {}),
    ...(r.transport ? { transport: r.transport } : {}),
    ...(r.http ? { http: r.http } : {}),
  }));

export const policyRowOf = (r: PolicyDb): PolicyRow => ({
  id: r.id,
  tenantId: r.tenantId,
  name: r.name,
  subject: r.subject as PolicyRow["subject"],
  mode: r.mode,
  ...(r.ingress === null ? {} : { ingress: rulesOf(r.ingress) }),
  ...(r.egress === null ? {} : { egress: rulesOf(r.egress) }),
});

/** parentRefs and rules are stored as the API wrote them (HttpRouteSpec, checked by its schema). */
export const httpRouteRowOf = (r: HttpRouteDb): HttpRouteRow => ({
  id: r.id,
  tenantId: r.tenantId,
  name: r.name,
  parentRefs: r.parentRefs as HttpRouteRow["parentRefs"],
  rules: r.rules as HttpRouteRow["rules"],
});

/** The policy's parts are stored as the API wrote them (TrafficPolicySpec, checked by its schema); null is absent. */
export const trafficPolicyRowOf = (r: TrafficPolicyDb): TrafficPolicyRow => ({
  tenantId: r.tenantId,
  name: r.name,
  service: r.service,
  ...(r.connectionPool === null ? {} : { connectionPool: r.connectionPool as TrafficPolicyRow["connectionPool"] }),
  ...(r.outlierDetection === null ? {} : { outlierDetection: r.outlierDetection as TrafficPolicyRow["outlierDetection"] }),
  ...(r.rateLimit === null ? {} : { rateLimit: r.rateLimit as TrafficPolicyRow["rateLimit"] }),
});

/** The datapath-relevant rows, mirrored beside the compiler: for inverses, per-tenant snapshots and node presence. */
export class Rows {
  readonly tenants = new Map<number, TenantRow>();
  readonly byTenant = new Map<number, Record<RowKind, Map<string, unknown>>>();
  readonly nodes = new Map<string, NodeRow>();
  readonly backendIds = new Map<string, number>();
  readonly cidrIdentities = new Map<string, number>();
  /**
   * Where each node's transport listens (nodes.transport_endpoint), for the
   * transport documents; absent: none reported. Not a compiler row: no
   * node's datapath depends on it, so a change recompiles nothing.
   */
  readonly transportEndpoints = new Map<string, string>();
  /** The tenant of each numeric identity: steer entries name identities by number. */
  private readonly tenantOfIdentity = new Map<number, number>();
  /** tenant -> node -> how many of the tenant's workloads are on it: presence without reading every workload. */
  private readonly placed = new Map<number, Map<string, number>>();

  private of(tenantId: number): Record<RowKind, Map<string, unknown>> {
    let t = this.byTenant.get(tenantId);
    if (t === undefined) {
      t = { identity: new Map(), workload: new Map(), service: new Map(), policy: new Map(), httpRoute: new Map(), trafficPolicy: new Map() };
      this.byTenant.set(tenantId, t);
    }
    return t;
  }

  /** The tenants with at least one httpRoute: the ones whose nodes hold every node's proxy address. */
  tenantsWithRoutes(): number[] {
    return [...this.byTenant].filter(([, rows]) => rows.httpRoute.size > 0).map(([id]) => id);
  }

  get(kind: RowKind, tenantId: number, name: string): unknown {
    return this.byTenant.get(tenantId)?.[kind].get(name);
  }

  /** The tenant whose identity has this number, if one does. */
  tenantOf(numericId: number): number | undefined {
    return this.tenantOfIdentity.get(numericId);
  }

  /** A node's transport endpoint as the change log last announced it; null: none. */
  setTransportEndpoint(node: string, endpoint: string | null): void {
    if (endpoint === null) this.transportEndpoints.delete(node);
    else this.transportEndpoints.set(node, endpoint);
  }

  private forgetIdentity(tenantId: number, name: string): void {
    const old = this.get("identity", tenantId, name) as IdentityRow | undefined;
    if (old !== undefined) this.tenantOfIdentity.delete(old.numericId);
  }

  apply(c: Change): void {
    switch (c.kind) {
      case "tenant":
        if (c.op === "put") this.tenants.set(c.row.id, c.row);
        else {
          for (const name of this.byTenant.get(c.id)?.identity.keys() ?? []) this.forgetIdentity(c.id, name);
          this.tenants.delete(c.id);
          this.byTenant.delete(c.id);
          this.placed.delete(c.id);
        }
        return;
      case "node":
        if (c.op === "put") this.nodes.set(c.row.name, c.row);
        else {
          this.nodes.delete(c.name);
          this.transportEndpoints.delete(c.name);
        }
        return;
      case "backendId":
        if (c.id === undefined) this.backendIds.delete(c.key);
        else this.backendIds.set(c.key, c.id);
        return;
      case "cidrIdentity":
        if (c.id === undefined) this.cidrIdentities.delete(c.prefix);
        else this.cidrIdentities.set(c.prefix, c.id);
        return;
      default:
        if (c.kind === "identity") {
          this.forgetIdentity(c.op === "put" ? c.row.tenantId : c.tenantId, c.op === "put" ? c.row.name : c.name);
          if (c.op === "put") this.tenantOfIdentity.set(c.row.numericId, c.row.tenantId);
        }
        if (c.kind === "workload") {
          const tenantId = c.op === "put" ? c.row.tenantId : c.tenantId;
          const old = this.get("workload", tenantId, c.op === "put" ? c.row.name : c.name) as WorkloadRow | undefined;
          if (old !== undefined) this.place(tenantId, old.node, -1);
          if (c.op === "put") this.place(tenantId, c.row.node, 1);
        }
        if (c.op === "delete") this.byTenant.get(c.tenantId)?.[c.kind].delete(c.name);
        else this.of(c.row.tenantId)[c.kind].set(c.row.name, c.row);
    }
  }

  /** The change that undoes `c`, read before `c` is applied. */
  inverse(c: Change): Change {
    switch (c.kind) {
      case "tenant": {
        if (c.op === "delete") throw new Error("a tenant delete cannot be tried and reverted");
        const old = this.tenants.get(c.row.id);
        return old ? { kind: "tenant", op: "put", row: old } : { kind: "tenant", op: "delete", id: c.row.id };
      }
      case "node": {
        const name = c.op === "put" ? c.row.name : c.name;
        const old = this.nodes.get(name);
        return old ? { kind: "node", op: "put", row: old } : { kind: "node", op: "delete", name };
      }
      case "backendId":
        return { kind: "backendId", key: c.key, id: this.backendIds.get(c.key) };
      case "cidrIdentity":
        return { kind: "cidrIdentity", prefix: c.prefix, id: this.cidrIdentities.get(c.prefix) };
      default: {
        const tenantId = c.op === "put" ? c.row.tenantId : c.tenantId;
        const name = c.op === "put" ? c.row.name : c.name;
        const old = this.get(c.kind, tenantId, name);
        if (old === undefined) return { kind: c.kind, op: "delete", tenantId, name };
        return { kind: c.kind, op: "put", row: old } as Change;
      }
    }
  }

  private place(tenantId: number, node: string, by: 1 | -1): void {
    let nodes = this.placed.get(tenantId);
    if (nodes === undefined) this.placed.set(tenantId, (nodes = new Map()));
    const n = (nodes.get(node) ?? 0) + by;
    if (n > 0) nodes.set(node, n);
    else nodes.delete(node);
  }

  /** Nodes where a tenant has a workload. */
  nodesOf(tenantId: number): Iterable<string> {
    return this.placed.get(tenantId)?.keys() ?? [];
  }

  /** How many nodes a tenant has a workload on. */
  nodeCount(tenantId: number): number {
    return this.placed.get(tenantId)?.size ?? 0;
  }

  /** Whether a tenant has a workload on the node. */
  hosts(tenantId: number, node: string): boolean {
    return this.placed.get(tenantId)?.has(node) ?? false;
  }

  /**
   * A snapshot of some tenants only: backends and CIDRs resolve within one
   * tenant, so their missing ids do too. Without `workloads`, none (copying a
   * tenant's 10,000 workloads is wasted where no service selects them).
   */
  snapshotOf(tenantIds: Iterable<number>, workloads = true): Snapshot {
    const ts = [...new Set(tenantIds)].flatMap((id) => {
      const row = this.tenants.get(id);
      return row ? [{ row, rows: this.byTenant.get(id) }] : [];
    });
    const all = <T>(kind: RowKind) => ts.flatMap((t) => [...(t.rows?.[kind].values() ?? [])]) as T[];
    return {
      tenants: ts.map((t) => t.row),
      identities: all<IdentityRow>("identity"),
      workloads: workloads ? all<WorkloadRow>("workload") : [],
      services: all<ServiceRow>("service"),
      policies: all<PolicyRow>("policy"),
      httpRoutes: all<HttpRouteRow>("httpRoute"),
      trafficPolicies: all<TrafficPolicyRow>("trafficPolicy"),
      nodes: [...this.nodes.values()],
      backendIds: this.backendIds,
      cidrIdentities: this.cidrIdentities,
    };
  }
}
