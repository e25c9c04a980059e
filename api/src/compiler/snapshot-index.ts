/**
 * The snapshot indexed by tenant, node and address, and changed one row at a
 * time. Every put is validated before anything changes, so a refused change
 * leaves the index as it was. The checks are the ones a node's maps depend
 * on: one key, one owner (addresses, VIPs, numeric identities, backend ids).
 */
import { constants, parseIPv4 } from "@weft/codec";
import { CompileError } from "./ids.ts";
import { canonicalPrefix } from "./select.ts";
import type { HttpRouteRow, IdentityRow, NodeRow, PolicyRow, ServicePort, ServiceRow, Snapshot, TenantRow, TrafficPolicyRow, WorkloadRow } from "./types.ts";

export type Change =
  | { kind: "tenant"; op: "put"; row: TenantRow }
  | { kind: "tenant"; op: "delete"; id: number }
  | { kind: "identity" | "workload" | "service" | "policy" | "httpRoute" | "trafficPolicy"; op: "delete"; tenantId: number; name: string }
  | { kind: "identity"; op: "put"; row: IdentityRow }
  | { kind: "workload"; op: "put"; row: WorkloadRow }
  | { kind: "service"; op: "put"; row: ServiceRow }
  | { kind: "policy"; op: "put"; row: PolicyRow }
  | { kind: "httpRoute"; op: "put"; row: HttpRouteRow }
  | { kind: "trafficPolicy"; op: "put"; row: TrafficPolicyRow }
  | { kind: "node"; op: "put"; row: NodeRow }
  | { kind: "node"; op: "delete"; name: string }
  /** id undefined: forget the allocation. */
  | { kind: "backendId"; key: string; id: number | undefined }
  | { kind: "cidrIdentity"; prefix: string; id: number | undefined };

export interface TenantIndex {
  row: TenantRow;
  identities: Map<string, IdentityRow>;
  workloads: Map<string, WorkloadRow>;
  services: Map<string, ServiceRow>;
  policies: Map<string, PolicyRow>;
  httpRoutes: Map<string, HttpRouteRow>;
  trafficPolicies: Map<string, TrafficPolicyRow>;
  /** identity name -> names of its workloads, for selector backends */
  workloadsByIdentity: Map<string, Set<string>>;
  /** identity name -> how many addresses its workloads hold: what addressCount sums without reading every workload */
  addressesByIdentity: Map<string, number>;
}

type RowKind = "identities" | "workloads" | "services" | "policies" | "httpRoutes" | "trafficPolicies";
type TenantRowKind = "identity" | "workload" | "service" | "policy" | "httpRoute" | "trafficPolicy";

const cidrsOf = (p: PolicyRow): string[] =>
  [...(p.ingress ?? []), ...(p.egress ?? [])].flatMap((r) => r.peers.flatMap((peer) => ("cidr" in peer ? [canonicalPrefix(peer.cidr)] : [])));

export class SnapshotIndex {
  readonly tenants = new Map<number, TenantIndex>();
  readonly nodes = new Map<string, NodeRow>();
  /** node -> tenant -> workload names on it: the tenants present on a node */
  readonly byNode = new Map<string, Map<number, Set<string>>>();
  /** address -> tenant of the workload holding it */
  readonly addressTenant = new Map<string, number>();
  readonly vipService = new Map<string, number>();
  readonly servicesById = new Map<number, ServiceRow>();
  readonly identitiesById = new Map<number, IdentityRow>();
  /** every CIDR any policy names -> number of policy references */
  readonly cidrRefs = new Map<string, number>();
  readonly backendIds = new Map<string, number>();
  readonly cidrIdentities = new Map<string, number>();
  private readonly backendIdUsers = new Map<number, string>();

  constructor(snapshot: Snapshot) {
    for (const row of snapshot.tenants) this.apply({ kind: "tenant", op: "put", row });
    for (const row of snapshot.nodes) this.apply({ kind: "node", op: "put", row });
    for (const row of snapshot.identities) this.apply({ kind: "identity", op: "put", row });
    for (const row of snapshot.workloads) this.apply({ kind: "workload", op: "put", row });
    for (const row of snapshot.services) this.apply({ kind: "service", op: "put", row });
    for (const row of snapshot.policies) this.apply({ kind: "policy", op: "put", row });
    for (const row of snapshot.httpRoutes ?? []) this.apply({ kind: "httpRoute", op: "put", row });
    for (const row of snapshot.trafficPolicies ?? []) this.apply({ kind: "trafficPolicy", op: "put", row });
    for (const [key, id] of snapshot.backendIds) this.apply({ kind: "backendId", key, id });
    for (const [prefix, id] of snapshot.cidrIdentities) this.apply({ kind: "cidrIdentity", prefix, id });
  }

  tenant(id: number): TenantIndex {
    const t = this.tenants.get(id);
    if (t === undefined) throw new CompileError(`unknown tenant ${id}`);
    return t;
  }

  /** Applies one change; answers the row it replaced or removed, if any. */
  apply(change: Change): unknown {
    switch (change.kind) {
      case "tenant":
        return change.op === "put" ? this.putTenant(change.row) : this.deleteTenant(change.id);
      case "node":
        return change.op === "put" ? this.putNode(change.row) : this.deleteNode(change.name);
      case "backendId":
        return this.putBackendId(change.key, change.id);
      case "cidrIdentity":
        return this.putCidrIdentity(change.prefix, change.id);
      default:
        if (change.op === "delete") return this.deleteRow(change.kind, change.tenantId, change.name);
        return this.putRow(change);
    }
  }

  private putTenant(row: TenantRow): TenantRow | undefined {
    if (!Number.isInteger(row.id) || row.id < 1 || row.id > 0xffffffff) throw new CompileError(`tenant id ${row.id} is not a u32 >= 1`);
    const had = this.tenants.get(row.id);
    if (had !== undefined) {
      const old = had.row;
      had.row = row;
      return old;
    }
    this.tenants.set(row.id, {
      row,
      identities: new Map(),
      workloads: new Map(),
      services: new Map(),
      policies: new Map(),
      httpRoutes: new Map(),
      trafficPolicies: new Map(),
      workloadsByIdentity: new Map(),
      addressesByIdentity: new Map(),
    });
    return undefined;
  }

  private deleteTenant(id: number): TenantIndex | undefined {
    const t = this.tenants.get(id);
    if (t === undefined) return undefined;
    for (const kind of ["trafficPolicy", "httpRoute", "workload", "service", "policy", "identity"] as const) {
      for (const name of [...this.rowsOf(t, kind).keys()]) this.deleteRow(kind, id, name);
    }
    this.tenants.delete(id);
    return t;
  }

  private putNode(row: NodeRow): NodeRow | undefined {
    const old = this.nodes.get(row.name);
    this.nodes.set(row.name, row);
    return old;
  }

  private deleteNode(name: string): NodeRow | undefined {
    const old = this.nodes.get(name);
    this.nodes.delete(name);
    return old;
  }

  private putBackendId(key: string, id: number | undefined): number | undefined {
    const old = this.backendIds.get(key);
    if (id !== undefined) {
      if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw new CompileError(`backend id ${id} for ${key} is not a u32 >= 1`);
      const user = this.backendIdUsers.get(id);
      if (user !== undefined && user !== key) throw new CompileError(`backend id ${id} is given to both ${user} and ${key}`);
    }
    if (old !== undefined) this.backendIdUsers.delete(old);
    if (id === undefined) this.backendIds.delete(key);
    else {
      this.backendIds.set(key, id);
      this.backendIdUsers.set(id, key);
    }
    return old;
  }

  private putCidrIdentity(prefix: string, id: number | undefined): number | undefined {
    const key = canonicalPrefix(prefix);
    if (id !== undefined) {
      if (!Number.isInteger(id) || id < constants.IDENTITY_FIRST! || id > 0xffffffff) {
        throw new CompileError(`CIDR identity ${id} for ${key} is not a u32 >= ${constants.IDENTITY_FIRST}`);
      }
      const clash = this.identitiesById.get(id);
      if (clash !== undefined) throw new CompileError(`CIDR identity ${id} for ${key} is also identity ${clash.name}`);
    }
    const old = this.cidrIdentities.get(key);
    if (id === undefined) this.cidrIdentities.delete(key);
    else this.cidrIdentities.set(key, id);
    return old;
  }

  rowsOf(t: TenantIndex, kind: TenantRowKind): Map<string, unknown> {
    const field: Record<typeof kind, RowKind> = { identity: "identities", workload: "workloads", service: "services", policy: "policies", httpRoute: "httpRoutes", trafficPolicy: "trafficPolicies" };
    return t[field[kind]];
  }

  private putRow(change: Extract<Change, { op: "put"; row: { tenantId: number } }>): unknown {
    const t = this.tenant(change.row.tenantId);
    const rows = this.rowsOf(t, change.kind);
    const old = rows.get(change.row.name);
    this.validate(change, old);
    if (old !== undefined) this.unlink(change.kind, t, old);
    rows.set(change.row.name, change.row);
    this.link(change.kind, t, change.row);
    return old;
  }

  private deleteRow(kind: TenantRowKind, tenantId: number, name: string): unknown {
    const t = this.tenants.get(tenantId);
    if (t === undefined) return undefined;
    const rows = this.rowsOf(t, kind);
    const old = rows.get(name);
    if (old === undefined) return undefined;
    this.unlink(kind, t, old);
    rows.delete(name);
    return old;
  }

  /** Refuses a put that would give a key a second owner. */
  private validate(change: Extract<Change, { op: "put"; row: { tenantId: number } }>, old: unknown): void {
    switch (change.kind) {
      case "identity": {
        const { numericId, name } = change.row;
        if (!Number.isInteger(numericId) || numericId < constants.IDENTITY_FIRST! || numericId > 0xffffffff) {
          throw new CompileError(`identity ${name}: numeric id ${numericId} is not a u32 >= ${constants.IDENTITY_FIRST}`);
        }
        const clash = this.identitiesById.get(numericId);
        if (clash !== undefined && clash !== old) throw new CompileError(`identity ${name}: numeric id ${numericId} is taken by ${clash.name}`);
        for (const [prefix, id] of this.cidrIdentities) {
          if (id === numericId) throw new CompileError(`identity ${name}: numeric id ${numericId} is the identity of CIDR ${prefix}`);
        }
        return;
      }
      case "workload": {
        const mine = new Set((old as WorkloadRow | undefined)?.addresses ?? []);
        for (const a of change.row.addresses) {
          parseIPv4(a, `workload ${change.row.name} address`);
          if (this.addressTenant.has(a) && !mine.has(a)) throw new CompileError(`workload ${change.row.name}: address ${a} is already in use`);
        }
        if (new Set(change.row.addresses).size !== change.row.addresses.length) {
          throw new CompileError(`workload ${change.row.name}: an address appears twice`);
        }
        return;
      }
      case "service": {
        const { vip, id, name } = change.row;
        parseIPv4(vip, `service ${name} vip`);
        const owner = this.vipService.get(vip);
        if (owner !== undefined && owner !== id) throw new CompileError(`service ${name}: VIP ${vip} belongs to service ${owner}`);
        const byId = this.servicesById.get(id);
        if (byId !== undefined && byId !== old) throw new CompileError(`service ${name}: id ${id} is taken by ${byId.name}`);
        return;
      }
      case "policy":
        cidrsOf(change.row); // throws on a malformed CIDR
        return;
      case "httpRoute":
        // The id names the route's HAProxy sections (l7.ts).
        if (!Number.isInteger(change.row.id) || change.row.id < 1) throw new CompileError(`httpRoute ${change.row.name}: id ${change.row.id} is not an integer >= 1`);
        return;
      case "trafficPolicy":
        // One per service, as the API and the database's unique key hold: a second would make a frontend's settings a guess.
        for (const other of this.tenant(change.row.tenantId).trafficPolicies.values()) {
          if (other !== old && other.service === change.row.service) {
            throw new CompileError(`trafficPolicy ${change.row.name}: service ${change.row.service} already has trafficPolicy ${other.name}`);
          }
        }
        return;
    }
  }

  private link(kind: TenantRowKind, t: TenantIndex, row: unknown): void {
    if (kind === "identity") {
      const r = row as IdentityRow;
      this.identitiesById.set(r.numericId, r);
    } else if (kind === "workload") {
      const w = row as WorkloadRow;
      for (const a of w.addresses) this.addressTenant.set(a, w.tenantId);
      getOrSet(getOrSet(this.byNode, w.node, () => new Map()), w.tenantId, () => new Set()).add(w.name);
      getOrSet(t.workloadsByIdentity, w.identity, () => new Set()).add(w.name);
      t.addressesByIdentity.set(w.identity, (t.addressesByIdentity.get(w.identity) ?? 0) + w.addresses.length);
    } else if (kind === "service") {
      const s = row as ServiceRow;
      this.vipService.set(s.vip, s.id);
      this.servicesById.set(s.id, s);
    } else if (kind === "policy") {
      for (const c of cidrsOf(row as PolicyRow)) this.cidrRefs.set(c, (this.cidrRefs.get(c) ?? 0) + 1);
    }
  }

  private unlink(kind: TenantRowKind, t: TenantIndex, row: unknown): void {
    if (kind === "identity") {
      this.identitiesById.delete((row as IdentityRow).numericId);
    } else if (kind === "workload") {
      const w = row as WorkloadRow;
      for (const a of w.addresses) this.addressTenant.delete(a);
      const onNode = this.byNode.get(w.node);
      const names = onNode?.get(w.tenantId);
      names?.delete(w.name);
      if (names?.size === 0) onNode!.delete(w.tenantId);
      if (onNode?.size === 0) this.byNode.delete(w.node);
      const sameIdentity = t.workloadsByIdentity.get(w.identity);
      sameIdentity?.delete(w.name);
      if (sameIdentity?.size === 0) t.workloadsByIdentity.delete(w.identity);
      const held = (t.addressesByIdentity.get(w.identity) ?? 0) - w.addresses.length;
      if (held > 0) t.addressesByIdentity.set(w.identity, held);
      else t.addressesByIdentity.delete(w.identity);
    } else if (kind === "service") {
      const s = row as ServiceRow;
      this.vipService.delete(s.vip);
      this.servicesById.delete(s.id);
    } else if (kind === "policy") {
      for (const c of cidrsOf(row as PolicyRow)) {
        const n = (this.cidrRefs.get(c) ?? 0) - 1;
        if (n > 0) this.cidrRefs.set(c, n);
        else this.cidrRefs.delete(c);
      }
    }
  }
}

/**
 * The tcp ports of a service that some httpRoute of its tenant names (a
 * parentRef without a port names every tcp port): its L7 frontends, which
 * the node's proxy takes instead of the socket LB (l7.ts).
 */
export function l7Ports(t: TenantIndex, s: ServiceRow): ServicePort[] {
  const named = new Set<number>();
  let all = false;
  for (const r of t.httpRoutes.values()) {
    for (const ref of r.parentRefs) {
      if (ref.name !== s.name) continue;
      if (ref.port === undefined) all = true;
      else named.add(ref.port);
    }
  }
  return s.ports.filter((p) => p.protocol === "tcp" && (all || named.has(p.port)));
}

/** The traffic policy naming a service, if one does. */
export function trafficPolicyOf(t: TenantIndex, s: ServiceRow): TrafficPolicyRow | undefined {
  for (const p of t.trafficPolicies.values()) if (p.service === s.name) return p;
  return undefined;
}

export function getOrSet<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) map.set(key, (v = make()));
  return v;
}

export { cidrsOf };
