/**
 * The per-node compiler: snapshot + node name -> that node's desired entries
 * per map and a content hash.
 *
 * A node's maps are the union of parts, one per owner (parts.ts). Parts are
 * memoized in the compiler and shared by every node that needs them; a change
 * (Compiler.apply) drops exactly the parts whose inputs it touched, so after
 * one backend changes a node recompiles one service table and re-assembles
 * references to the rest. compileNode(snapshot, node) is the same machine
 * with a fresh memo: the property tests check the two always agree.
 *
 * What a node gets:
 *  - ipcache: every workload address (/32) of each tenant with a workload on
 *    the node, wherever that workload runs, and the CIDRs those tenants'
 *    policies name (a CIDR equal to a present workload's /32 is left out: the
 *    workload is what that address is). Workloads of tenants absent from the
 *    node are world to it.
 *  - endpoint: the node's own workloads only.
 *  - policy, audit and steer: the parts of the identities of the node's own
 *    workloads.
 *  - svc, lb_slot, backend: every service of the tenants present, with tables
 *    for the node's zone where preferSameZone is set; l7 for the frontends
 *    an httpRoute names, which have no svc entry (l7.ts).
 *  - ipcache, too: every node's L7 proxy address (IDENTITY_PROXY, no tenant)
 *    on nodes hosting a tenant with httpRoutes;
 *    policy, too: the proxy's allows at its local backends (l7.ts).
 */
import { hash as digestOf } from "node:crypto";
import { CapacityBook, type LocalCapacity } from "./capacity-book.ts";
import { CompileError } from "./ids.ts";
import { addressCount, addressPart, cidrPart, endpointPart, owners } from "./parts.ts";
import { policyPart, type PolicyPart } from "./policy.ts";
import { canonicalPrefix, contains, parsePrefix, selects } from "./select.ts";
import { servicePart, type ServicePart } from "./services.ts";
import { steerParts } from "./steer.ts";
import { l7AllowParts, l7Document, proxyAddressOf, proxyAddressPart, proxyInboundHops, type L7Config } from "./l7.ts";
import { SnapshotIndex, cidrsOf, type Change, type TenantIndex } from "./snapshot-index.ts";
import {
  DATAPATH_MAPS,
  type DatapathMaps,
  type IdentityRow,
  type MapCounts,
  type NodeDatapath,
  type NodeRow,
  type Part,
  type PolicyRow,
  type ServiceRow,
  type Snapshot,
  type WorkloadRow,
} from "./types.ts";

export type { Change } from "./snapshot-index.ts";

export interface Compiler {
  /** Applies row changes in order (a batch from the change log); a refused change throws and changes nothing. */
  apply(changes: Change | readonly Change[]): void;
  compileNode(node: string): NodeDatapath;
  /** compileNode(node).counts without the hash: what admission compares against capacities, for every node a write touches. */
  countNode(node: string): MapCounts;
  /**
   * Admission's incremental count (follower/admission.ts): countNode(node)
   * is, map by map, countClass(capacityClass(node)) + countLocal(node). A
   * class is a zone and the tenants present: every node of a class holds
   * the same shared parts (addresses, CIDRs, services), so a write of a
   * tenant on 10,000 nodes counts its shared parts once per class, and each
   * node's own parts (endpoints, policies of its workloads) are remembered
   * until a change can alter them.
   */
  capacityClass(node: string): string;
  countClass(capacityClass: string): MapCounts;
  countLocal(node: string): MapCounts;
  /**
   * Counts every node not counted now (capacityOf), so that what a change
   * forgets afterwards (uncountedNodes) is exactly what it may alter.
   */
  countAllNodes(): void;
  /** Nodes whose class and own counts are not remembered now: those the changes since countAllNodes may alter. */
  uncountedNodes(): Iterable<string>;
  /**
   * The classes of counted nodes in which any of the tenants is present, each
   * with its members and an upper bound of their own counts (capacity-book.ts).
   */
  classesWith(tenantIds: ReadonlySet<number>): Iterable<{ capacityClass: string; bound: MapCounts; members: ReadonlySet<string> }>;
  /** Makes the class's bound exact (visits its members): after it did not fit. */
  exactBound(capacityClass: string): void;
  /** The current rows as a Snapshot. */
  snapshot(): Snapshot;
  /** The node's L7 proxy document (l7.ts); null when the node is unknown or has no pod block. */
  l7Document(node: string): L7Config | null;
  /** What the node's transport lets other nodes' proxies reach (l7.ts proxyInboundHops). */
  proxyInboundHops(node: string): { localIdentity: number; ports: number[] }[];
  /** Parts built since the compiler was created: how much work the memo saved. */
  readonly partsBuilt: number;
}

export function createCompiler(snapshot: Snapshot): Compiler {
  return new MemoCompiler(new SnapshotIndex(snapshot));
}

/** The pure form: one node's datapath from a whole snapshot, nothing remembered. */
export function compileNode(snapshot: Snapshot, node: string): NodeDatapath {
  return createCompiler(snapshot).compileNode(node);
}

class MemoCompiler implements Compiler {
  partsBuilt = 0;
  private readonly addressParts = new Map<number, Part>();
  /** tenant id -> node -> part */
  private readonly endpointParts = new Map<number, Map<string, Part>>();
  private readonly policyParts = new Map<number, PolicyPart>();
  /** tenant id -> numeric identity -> steer part (only identities with steer entries) */
  private readonly steerParts = new Map<number, Map<number, Part>>();
  /** tenant id -> numeric identity -> the L7 proxy's allows at it (only governed backends of L7 frontends) */
  private readonly l7AllowParts = new Map<number, Map<number, Part>>();
  /** Every node's proxy address; dropped when a node's block, or a workload holding one, changes. */
  private proxyPart: Part | undefined;
  /**
   * The nodes' proxy addresses, each with how many nodes' blocks give it;
   * kept up to date as blocks change rather than dropped: rebuilding it read
   * every node after each registration.
   */
  private proxyAddresses: Map<string, number> | undefined;
  /** service id -> zone ("" when the service ignores zones) -> part */
  private readonly serviceParts = new Map<number, Map<string, ServicePart>>();
  private readonly backendParts = new Map<number, Part>();
  private readonly cidrParts = new Map<string, Part>();
  /** tenant id -> CIDRs its policies name */
  private readonly tenantCidrs = new Map<number, string[]>();
  /** node -> its class and own counts (capacityOf), grouped by class; dropped by forgetLocal. */
  private readonly localCapacity = new CapacityBook();

  constructor(private readonly index: SnapshotIndex) {}

  apply(changes: Change | readonly Change[]): void {
    for (const change of Array.isArray(changes) ? (changes as readonly Change[]) : [changes as Change]) this.applyOne(change);
  }

  private applyOne(change: Change): void {
    this.forgetLocal(change);
    const cidrsBefore = change.kind === "policy" || change.kind === "tenant" ? new Set(this.index.cidrRefs.keys()) : null;
    const before = this.touched(change);
    this.index.apply(change);
    this.forgetLocal(change);
    const after = this.touched(change);
    for (const drop of [before, after]) drop();
    if (cidrsBefore !== null) {
      const now = new Set(this.index.cidrRefs.keys());
      for (const p of cidrsBefore) if (!now.has(p)) this.invalidateCidr(p);
      for (const p of now) if (!cidrsBefore.has(p)) this.invalidateCidr(p);
    }
  }

  /**
   * Drops the remembered class and own counts a change can alter; called
   * before and after it applies, so the node a workload leaves and the one
   * it lands on are both dropped. A workload reaches its own node's only, a
   * node change that node's, a service none (its parts are shared), a
   * traffic policy none (it is in no map); the rest (tenants, identities,
   * policies, ids) can re-expand any identity's policy part, so every
   * node's is dropped.
   */
  private forgetLocal(change: Change): void {
    switch (change.kind) {
      case "workload": {
        const tenantId = change.op === "put" ? change.row.tenantId : change.tenantId;
        const name = change.op === "put" ? change.row.name : change.name;
        const t = this.index.tenants.get(tenantId);
        // A backend of an L7 frontend changes the proxy's allows at its identity, on every node that runs it.
        if (t !== undefined && t.httpRoutes.size > 0) {
          this.localCapacity.forgetAll();
          return;
        }
        const w = t?.workloads.get(name);
        if (w !== undefined) this.localCapacity.forget(w.node);
        return;
      }
      case "node":
        this.localCapacity.forget(change.op === "put" ? change.row.name : change.name);
        return;
      case "trafficPolicy":
        return;
      case "service": {
        const t = this.index.tenants.get(change.op === "put" ? change.row.tenantId : change.tenantId);
        if (t !== undefined && t.httpRoutes.size > 0) this.localCapacity.forgetAll();
        return;
      }
      default:
        this.localCapacity.forgetAll();
    }
  }

  /**
   * The parts a change's rows feed, read from the index as it is now; called
   * before and after the change so both the old and the new row's dependents
   * are dropped. Answers a function that drops them.
   */
  private touched(change: Change): () => void {
    const idx = this.index;
    switch (change.kind) {
      case "tenant": {
        const t = idx.tenants.get(change.op === "put" ? change.row.id : change.id);
        if (t === undefined) return () => {};
        const { defaultAction, defaultTransport } = t.row;
        const drop = this.dropTenant(t);
        return () => {
          const now = idx.tenants.get(t.row.id);
          if (now === undefined || now.row.defaultAction !== defaultAction || now.row.defaultTransport !== defaultTransport) drop();
        };
      }
      case "identity": {
        const t = idx.tenants.get(change.op === "put" ? change.row.tenantId : change.tenantId);
        if (t === undefined) return () => {};
        // Names, labels and numbers feed every selector of the tenant: drop all of it.
        return this.dropTenant(t);
      }
      case "workload": {
        const tenantId = change.op === "put" ? change.row.tenantId : change.tenantId;
        const name = change.op === "put" ? change.row.name : change.name;
        const t = idx.tenants.get(tenantId);
        const w = t?.workloads.get(name);
        if (t === undefined || w === undefined) return () => {};
        const holdsProxyAddress = w.addresses.some((a) => this.isProxyAddress(a));
        const drop = this.dropWorkload(t, w);
        return () => {
          if (holdsProxyAddress) this.proxyPart = undefined;
          drop();
        };
      }
      case "service": {
        const tenantId = change.op === "put" ? change.row.tenantId : change.tenantId;
        const t = idx.tenants.get(tenantId);
        const s = t?.services.get(change.op === "put" ? change.row.name : change.name);
        const ids = [s?.id, change.op === "put" ? change.row.id : undefined];
        return () => {
          ids.forEach((id) => id !== undefined && this.serviceParts.delete(id));
          this.l7AllowParts.delete(tenantId);
        };
      }
      case "httpRoute": {
        // The services a route names (before and after) turn L7 or back: their tables and the proxy's allows change.
        const tenantId = change.op === "put" ? change.row.tenantId : change.tenantId;
        const t = idx.tenants.get(tenantId);
        const r = t?.httpRoutes.get(change.op === "put" ? change.row.name : change.name);
        const named = new Set([...(r?.parentRefs ?? []), ...(change.op === "put" ? change.row.parentRefs : [])].map((ref) => ref.name));
        const ids = [...named].flatMap((name) => t?.services.get(name)?.id ?? []);
        return () => {
          ids.forEach((id) => this.serviceParts.delete(id));
          this.l7AllowParts.delete(tenantId);
        };
      }
      case "trafficPolicy":
        // The proxy's settings only: the L7 document reads them from the index, no map part holds them.
        return () => {};
      case "policy": {
        const t = idx.tenants.get(change.op === "put" ? change.row.tenantId : change.tenantId);
        const p = t?.policies.get(change.op === "put" ? change.row.name : change.name);
        if (t === undefined || p === undefined) return () => {};
        return this.dropPolicy(t, p);
      }
      case "node": {
        const name = change.op === "put" ? change.row.name : change.name;
        const was = idx.nodes.get(name);
        return () => {
          if (change.op === "delete") for (const byNode of this.endpointParts.values()) byNode.delete(name);
          const now = idx.nodes.get(name);
          // A node's liveness withdraws or restores the backends on it, in every table that names them.
          if (now?.unreachable !== was?.unreachable) this.dropServicesOnNode(name);
          if (now?.zone !== was?.zone) this.dropZoned();
          if (now?.podCidr !== was?.podCidr) {
            this.proxyPart = undefined;
            this.countProxyAddress(was?.podCidr, -1);
            this.countProxyAddress(now?.podCidr, 1);
          }
        };
      }
      case "backendId": {
        const id = idx.backendIds.get(change.key);
        return () => {
          if (id !== undefined) this.backendParts.delete(id);
          this.dropServicesUsing(change.key);
        };
      }
      case "cidrIdentity": {
        const prefix = canonicalPrefix(change.prefix);
        return () => {
          this.cidrParts.delete(prefix);
          this.invalidateCidr(prefix);
        };
      }
    }
  }

  /** Everything a tenant's rows feed; ids are read now, while the rows are still there. */
  private dropTenant(t: TenantIndex): () => void {
    const tenantId = t.row.id;
    const drop = this.dropIdentities(t.identities.values());
    const services = [...t.services.values()].map((s) => s.id);
    return () => {
      this.addressParts.delete(tenantId);
      this.endpointParts.delete(tenantId);
      this.tenantCidrs.delete(tenantId);
      this.steerParts.delete(tenantId);
      this.l7AllowParts.delete(tenantId);
      drop();
      for (const id of services) this.serviceParts.delete(id);
    };
  }

  private dropIdentities(identities: Iterable<IdentityRow>): () => void {
    const ids = [...identities].map((i) => i.numericId);
    return () => ids.forEach((id) => this.policyParts.delete(id));
  }

  private dropWorkload(t: TenantIndex, w: WorkloadRow): () => void {
    const identity = t.identities.get(w.identity);
    const services = [...t.services.values()].filter((s) => {
      const b = s.backends;
      return "selector" in b ? identity !== undefined && selects(b.selector, identity) : b.explicit.some((e) => e.workload === w.name);
    });
    return () => {
      this.addressParts.delete(t.row.id);
      this.endpointParts.get(t.row.id)?.delete(w.node);
      for (const s of services) this.serviceParts.delete(s.id);
      // The proxy's allows find a backend's identity by its address, which an explicit backend may name too.
      if (services.length > 0 || t.httpRoutes.size > 0) this.l7AllowParts.delete(t.row.id);
    };
  }

  /** A policy's steering reaches its peers' parts too (any peer: the whole tenant's), so the tenant's steer parts go. */
  private dropPolicy(t: TenantIndex, p: PolicyRow): () => void {
    const drop = this.dropIdentities([...t.identities.values()].filter((i) => selects(p.subject, i)));
    return () => {
      this.tenantCidrs.delete(t.row.id);
      this.steerParts.delete(t.row.id);
      this.l7AllowParts.delete(t.row.id);
      drop();
    };
  }

  /** Zone changes move selector backends between zones: drop every zone-aware table. */
  private dropZoned(): void {
    for (const [id, byZone] of this.serviceParts) {
      if (!byZone.has("")) this.serviceParts.delete(id);
    }
  }

  /** Services with a backend that is a workload on the node (by selector or by name). */
  private dropServicesOnNode(node: string): void {
    for (const t of this.index.tenants.values()) {
      for (const w of t.workloads.values()) if (w.node === node) this.dropWorkload(t, w)();
    }
  }

  private dropServicesUsing(key: string): void {
    for (const [id, byZone] of this.serviceParts) {
      for (const part of byZone.values()) if (part.backendKeys.includes(key)) this.serviceParts.delete(id);
    }
  }

  /** A CIDR entered or left the platform's set: re-expand every policy whose CIDR peers contain it. */
  private invalidateCidr(prefix: string): void {
    const inner = parsePrefix(prefix);
    for (const [id, part] of this.policyParts) {
      if (part.cidrPeers.some((outer) => contains(parsePrefix(outer), inner))) this.policyParts.delete(id);
    }
  }

  compileNode(node: string): NodeDatapath {
    return assemble(node, this.collect(node));
  }

  countNode(node: string): MapCounts {
    return countsOf(this.collect(node).values());
  }

  /** The node's parts by owner, unsorted: its class's shared parts and its own. */
  private collect(node: string): Map<string, Part> {
    const row = this.nodeRow(node);
    const present = this.index.byNode.get(node) ?? NO_TENANTS;
    const parts = new Map<string, Part>();
    this.collectShared(present, row.zone, parts, true);
    this.collectLocal(node, present, parts);
    return parts;
  }

  private nodeRow(node: string): NodeRow {
    const row = this.index.nodes.get(node);
    if (row === undefined) throw new CompileError(`unknown node ${node}`);
    return row;
  }

  /**
   * The parts that depend only on which tenants a node hosts and its zone
   * (addresses, CIDR peers, services and their backends): every node of the
   * same class (capacityClass) holds exactly these. Without `addresses`,
   * the tenants' address parts are left out (countClass counts them).
   */
  private collectShared(present: ReadonlyMap<number, unknown>, zone: string, parts: Map<string, Part>, addresses: boolean): void {
    const add = (p: Part): void => void parts.set(p.owner, p);
    // Only a tenant with routes has backends the proxies connect to: a node hosting none needs no
    // proxy addresses, so a node joining reaches the nodes of such tenants only (follow.ts).
    const proxied = [...present.keys()].some((id) => this.index.tenant(id).httpRoutes.size > 0);
    if (proxied) {
      const proxies = (this.proxyPart ??= this.built(proxyAddressPart(this.index)));
      if ((proxies.entries.ipcache?.length ?? 0) > 0) add(proxies);
    }
    for (const tenantId of present.keys()) {
      const t = this.index.tenant(tenantId);
      if (addresses) add(this.memo(this.addressParts, tenantId, () => addressPart(t)));
      for (const prefix of this.memo(this.tenantCidrs, tenantId, () => tenantCidrList(t))) {
        if (this.isPresentWorkload(prefix, present) || (proxied && this.isProxyAddress(prefix))) continue;
        add(this.memo(this.cidrParts, prefix, () => cidrPart(prefix, this.cidrIdentity(prefix))));
      }
      for (const s of t.services.values()) {
        const part = this.service(t, s, s.preferSameZone ? zone : null);
        add(part);
        for (const owner of part.backendOwners ?? []) add(this.backendParts.get(Number(owner.slice(2)))!);
      }
    }
  }

  /** The parts only this node holds: its workloads' endpoints and their identities' policies and steering. */
  private collectLocal(node: string, present: ReadonlyMap<number, ReadonlySet<string>>, parts: Map<string, Part>): void {
    const idx = this.index;
    for (const [tenantId, names] of present) {
      const t = idx.tenant(tenantId);
      const byNode = this.memo(this.endpointParts, tenantId, () => new Map<string, Part>());
      const endpoint = this.memo(byNode, node, () => endpointPart(t, node, names));
      parts.set(endpoint.owner, endpoint);
      const steer = this.memo(this.steerParts, tenantId, () => steerParts(t));
      const l7 = this.memo(this.l7AllowParts, tenantId, () => l7AllowParts(idx, t));
      for (const name of names) {
        const identity = t.identities.get(t.workloads.get(name)!.identity);
        if (identity !== undefined) {
          const policy = this.memo(this.policyParts, identity.numericId, () => policyPart(idx, t, identity));
          parts.set(policy.owner, policy);
          const steered = steer.get(identity.numericId);
          if (steered !== undefined) parts.set(steered.owner, steered);
          const proxied = l7.get(identity.numericId);
          if (proxied !== undefined) parts.set(proxied.owner, proxied);
        }
      }
    }
  }

  capacityClass(node: string): string {
    return this.capacityOf(node).capacityClass;
  }

  countClass(capacityClass: string): MapCounts {
    const [zone, ...tenantIds] = JSON.parse(capacityClass) as [string, ...number[]];
    const parts = new Map<string, Part>();
    this.collectShared(new Map(tenantIds.map((id) => [id, undefined])), zone, parts, false);
    const counts = countsOf(parts.values());
    // A write of a tenant changes its address part; counting it does not need it built.
    for (const id of tenantIds) counts.ipcache += this.addressParts.get(id)?.entries.ipcache?.length ?? addressCount(this.index.tenant(id));
    return counts;
  }

  countLocal(node: string): MapCounts {
    return this.capacityOf(node).local;
  }

  countAllNodes(): void {
    for (const node of this.localCapacity.uncounted(this.index.nodes)) this.capacityOf(node);
    this.localCapacity.allCounted();
  }

  uncountedNodes(): Iterable<string> {
    return this.localCapacity.uncounted(this.index.nodes);
  }

  classesWith(tenantIds: ReadonlySet<number>): Iterable<{ capacityClass: string; bound: MapCounts; members: ReadonlySet<string> }> {
    return this.localCapacity.classesWith(tenantIds);
  }

  exactBound(capacityClass: string): void {
    this.localCapacity.exactBound(capacityClass);
  }

  /** A node's class and own counts, remembered until a change can alter them (forgetLocal). */
  private capacityOf(node: string): LocalCapacity {
    let known = this.localCapacity.get(node);
    if (known === undefined) {
      const row = this.nodeRow(node);
      const present = this.index.byNode.get(node) ?? NO_TENANTS;
      const parts = new Map<string, Part>();
      this.collectLocal(node, present, parts);
      known = { capacityClass: JSON.stringify([row.zone, ...[...present.keys()].sort((a, b) => a - b)]), local: countsOf(parts.values()) };
      this.localCapacity.set(node, known);
    }
    return known;
  }

  private service(t: TenantIndex, s: ServiceRow, zone: string | null): ServicePart {
    const byZone = this.memo(this.serviceParts, s.id, () => new Map<string, ServicePart>());
    const had = byZone.get(zone ?? "");
    if (had !== undefined) return had;
    const built = servicePart(this.index, t, s, zone);
    this.partsBuilt += 1 + built.backends.length;
    for (const b of built.backends) this.backendParts.set(Number(b.owner.slice(2)), b);
    byZone.set(zone ?? "", built.part);
    return built.part;
  }

  private memo<K, V>(map: Map<K, V>, key: K, build: () => V): V {
    let v = map.get(key);
    if (v === undefined) {
      map.set(key, (v = build()));
      this.partsBuilt++;
    }
    return v;
  }

  private cidrIdentity(prefix: string): number {
    const id = this.index.cidrIdentities.get(prefix);
    if (id === undefined) throw new CompileError(`CIDR ${prefix} has no identity (Snapshot.cidrIdentities)`);
    return id;
  }

  /** A node's proxy address ("10.0.3.1", or as "10.0.3.1/32"): the proxy part holds its ipcache key. */
  private isProxyAddress(address: string): boolean {
    if (this.proxyAddresses === undefined) {
      this.proxyAddresses = new Map();
      for (const n of this.index.nodes.values()) this.countProxyAddress(n.podCidr, 1);
    }
    return this.proxyAddresses.has(address.endsWith("/32") ? address.slice(0, -3) : address);
  }

  /** A node's block given (+1) or taken back (-1), once the addresses are counted at all. */
  private countProxyAddress(podCidr: string | undefined, by: 1 | -1): void {
    const a = proxyAddressOf(podCidr);
    if (this.proxyAddresses === undefined || a === null) return;
    const n = (this.proxyAddresses.get(a) ?? 0) + by;
    if (n > 0) this.proxyAddresses.set(a, n);
    else this.proxyAddresses.delete(a);
  }

  private built(p: Part): Part {
    this.partsBuilt++;
    return p;
  }

  l7Document(node: string): L7Config | null {
    return l7Document(this.index, node);
  }

  proxyInboundHops(node: string): { localIdentity: number; ports: number[] }[] {
    return proxyInboundHops(this.index, node);
  }

  private isPresentWorkload(prefix: string, present: ReadonlyMap<number, unknown>): boolean {
    if (!prefix.endsWith("/32")) return false;
    const tenant = this.index.addressTenant.get(prefix.slice(0, -3));
    return tenant !== undefined && present.has(tenant);
  }

  snapshot(): Snapshot {
    const ts = [...this.index.tenants.values()];
    const all = <K extends "identities" | "workloads" | "services" | "policies" | "httpRoutes" | "trafficPolicies">(k: K) => ts.flatMap((t) => [...t[k].values()]) as Array<TenantIndex[K] extends Map<string, infer R> ? R : never>;
    return {
      tenants: ts.map((t) => t.row),
      identities: all("identities"),
      workloads: all("workloads"),
      services: all("services"),
      policies: all("policies"),
      httpRoutes: all("httpRoutes"),
      trafficPolicies: all("trafficPolicies"),
      nodes: [...this.index.nodes.values()],
      backendIds: new Map(this.index.backendIds),
      cidrIdentities: new Map(this.index.cidrIdentities),
    };
  }
}

/** A node that hosts nothing. */
const NO_TENANTS: ReadonlyMap<number, ReadonlySet<string>> = new Map();

/** Entries per map over `parts`. */
function countsOf(parts: Iterable<Part>): MapCounts {
  const counts = Object.fromEntries(DATAPATH_MAPS.map((m) => [m, 0])) as MapCounts;
  for (const p of parts) for (const m of DATAPATH_MAPS) counts[m] += p.entries[m]?.length ?? 0;
  return counts;
}

const tenantCidrList = (t: TenantIndex): string[] => [...new Set([...t.policies.values()].flatMap(cidrsOf))].sort();

/**
 * Sorts owners, hashes (owner, digest) pairs, counts entries; the flat maps
 * wait until asked for. Every tracked node a write reaches is assembled
 * again (3,000 per replica in a wave): the pairs are hashed in one call
 * over one string (the same digest as feeding them one by one, without a
 * Hash object and a native call per pair).
 */
function assemble(node: string, unsorted: Map<string, Part>): NodeDatapath {
  const keys = [...unsorted.keys()].sort();
  const parts = new Map<string, Part>();
  let text = "";
  const counts = Object.fromEntries(DATAPATH_MAPS.map((m) => [m, 0])) as MapCounts;
  const failingOpen: string[] = [];
  for (const k of keys) {
    const p = unsorted.get(k)!;
    parts.set(k, p);
    text += `${k} ${p.digest}\n`;
    for (const m of DATAPATH_MAPS) counts[m] += p.entries[m]?.length ?? 0;
    if (p.failingOpen !== undefined) failingOpen.push(p.failingOpen);
  }
  return new NodeResult(node, digestOf("sha256", text, "hex"), counts, parts, failingOpen.sort());
}

class NodeResult implements NodeDatapath {
  private flat: DatapathMaps | undefined;
  constructor(
    readonly node: string,
    readonly hash: string,
    readonly counts: MapCounts,
    readonly parts: ReadonlyMap<string, Part>,
    readonly failingOpen: readonly string[],
  ) {}

  get maps(): DatapathMaps {
    this.flat ??= flatten(this.parts.values());
    return this.flat;
  }
}

export function flatten(parts: Iterable<Part>): DatapathMaps {
  const out = Object.fromEntries(DATAPATH_MAPS.map((m) => [m, []])) as unknown as DatapathMaps;
  for (const p of parts) {
    for (const m of DATAPATH_MAPS) {
      const list = p.entries[m];
      if (list !== undefined) for (const e of list) (out[m] as unknown[]).push(e);
    }
  }
  return out;
}
