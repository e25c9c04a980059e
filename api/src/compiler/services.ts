/**
 * A service's frontends (svc), their weighted lookup tables (lb_slot) and the
 * backends the tables name, as seen from one zone.
 *
 * - Table ids: tableIdOf(service id, port index), stable for the service's
 *   life, so a backend change rewrites that table's slots in place. The
 *   agent's write order (backends, then slots, then svc; deletes last) means a
 *   connect() during the rewrite sees old or new slots, each naming a backend
 *   that exists. (A fresh id per table version would make the flip atomic,
 *   but a pure function of the snapshot cannot alternate ids without knowing
 *   what the node holds.)
 * - Table size: the smallest table that gives every backend exactly its
 *   share (the weights divided by their gcd, summed), capped at
 *   LB_TABLE_DEFAULT (1024 slots, shares within 1/1024). Ten equal backends
 *   take 10 slots, 90/10 takes 10: small tables keep lb_slot far below its
 *   capacity, and the socket LB draws a uniform slot either way.
 * - Withdrawn backends (an unhealthy workload, or one on a node the API marks
 *   unreachable) get no slots while any backend with weight still serves;
 *   when none does, every backend with weight keeps its slots (fail open, as
 *   Envoy's panic threshold), and the part says so (failingOpen).
 * - preferSameZone: when the node's zone has at least one serving backend of
 *   weight > 0, only those get slots (their weights keep their ratios);
 *   otherwise every serving backend does, so a zone outage never empties a
 *   service.
 * - No backend with weight > 0: the frontend is written with slots 0, which
 *   the datapath refuses (lb-no-backend) instead of leaking to the VIP.
 * - L7 frontends (a tcp port an httpRoute names, l7Ports) get a weft_l7
 *   entry instead of the svc entry and no table: the node's proxy picks the
 *   backend. Table ids still count every port, so a port turning L7 renumbers
 *   no other port's table.
 */
import { parseIPv4, protocols, type Entry } from "@weft/codec";
import { buildLbTable, LB_TABLE_DEFAULT, lbSlotEntries } from "./lb-table.ts";
import { backendKey, CompileError, tableIdOf } from "./ids.ts";
import { backendPart, makePart, owners, zoneOfWorkload } from "./parts.ts";
import { selects } from "./select.ts";
import { l7Ports, type SnapshotIndex, type TenantIndex } from "./snapshot-index.ts";
import type { Part, ServicePort, ServiceRow, WorkloadRow } from "./types.ts";

const WEIGHT_MAX = 1_000_000;

export interface ResolvedBackend {
  key: string;
  address: string;
  port: number;
  weight: number;
  zone: string | undefined;
  /** False when withdrawn: the workload is unhealthy or its node unreachable. A backend by address alone always serves. */
  serving: boolean;
}

/** Ports in (protocol, port) order: the order table ids are numbered in, whatever the row's order. */
export const sortedPorts = (s: ServiceRow): ServicePort[] =>
  [...s.ports].sort((a, b) => protocols[a.protocol] - protocols[b.protocol] || a.port - b.port);

/**
 * Backends of one service port, one per address:port (duplicates add their
 * weights). Selector backends are the first address of every matching
 * workload, weight 1 (the Gateway API default); an explicit backend naming a
 * workload that no longer exists is skipped.
 */
export function resolveBackends(index: SnapshotIndex, t: TenantIndex, s: ServiceRow, sp: ServicePort): ResolvedBackend[] {
  const found = new Map<string, ResolvedBackend>();
  const add = (address: string, port: number, weight: number, zone: string | undefined, serving: boolean): void => {
    const key = backendKey(address, port);
    const had = found.get(key);
    if (had === undefined) found.set(key, { key, address, port, weight, zone, serving });
    else {
      had.weight = Math.min(WEIGHT_MAX, had.weight + weight);
      had.serving &&= serving;
    }
  };
  if ("selector" in s.backends) {
    for (const identity of t.identities.values()) {
      if (!selects(s.backends.selector, identity)) continue;
      for (const name of t.workloadsByIdentity.get(identity.name) ?? []) {
        const w = t.workloads.get(name)!;
        const address = w.addresses[0];
        if (address !== undefined) add(address, sp.targetPort, 1, zoneOfWorkload(index, w), isServing(index, w));
      }
    }
  } else {
    for (const b of s.backends.explicit) {
      if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > WEIGHT_MAX) {
        throw new CompileError(`service ${s.name}: weight ${b.weight} is out of range 0..${WEIGHT_MAX}`);
      }
      const w = b.workload === undefined ? undefined : t.workloads.get(b.workload);
      const address = b.address ?? w?.addresses[0];
      if (address === undefined) continue;
      add(address, b.port ?? sp.targetPort, b.weight, b.zone ?? zoneOfWorkload(index, w), w === undefined || isServing(index, w));
    }
  }
  return [...found.values()].sort((a, b) => parseIPv4(a.address) - parseIPv4(b.address) || a.port - b.port);
}

const isServing = (index: SnapshotIndex, w: WorkloadRow): boolean => !w.unhealthy && index.nodes.get(w.node)?.unreachable !== true;

export interface ServicePart extends Part {
  /** address:port keys the part resolved: a change to one of their ids invalidates it. */
  readonly backendKeys: readonly string[];
}

/** The part plus the backend parts its tables name. */
export function servicePart(index: SnapshotIndex, t: TenantIndex, s: ServiceRow, zone: string | null): { part: ServicePart; backends: Part[] } {
  const svc: Entry<"svc">[] = [];
  const l7: Entry<"l7">[] = [];
  const slots: Entry<"lb_slot">[] = [];
  const proxied = new Set(l7Ports(t, s).map((p) => p.port));
  const backends = new Map<number, Part>();
  const keys = new Set<string>();
  let failingOpen = false;
  sortedPorts(s).forEach((sp, i) => {
    const tableId = tableIdOf(s.id, i);
    const key = { vip: s.vip, port: sp.port, protocol: protocols[sp.protocol] };
    if (sp.protocol === "tcp" && proxied.has(sp.port)) {
      l7.push({ key, value: { http: true } });
      return;
    }
    const resolved = resolveBackends(index, t, s, sp);
    for (const b of resolved) keys.add(b.key);
    const pool = servingPool(resolved);
    failingOpen ||= pool.failingOpen;
    const chosen = chooseByZone(pool.backends, zone);
    if (chosen.length > 1024) throw new CompileError(`service ${s.name} port ${sp.port}: ${chosen.length} backends, at most 1024`);
    const weighted = chosen.map((b) => {
      const backendId = index.backendIds.get(b.key);
      if (backendId === undefined) throw new CompileError(`backend ${b.key} of service ${s.name} has no id (Snapshot.backendIds)`);
      if (!backends.has(backendId)) backends.set(backendId, backendPart(backendId, b.address, b.port));
      return { backendId, weight: b.weight };
    });
    weighted.sort((a, b) => a.backendId - b.backendId);
    const table = weighted.length === 0 ? new Uint32Array(0) : buildLbTable(weighted, tableSize(weighted.map((b) => b.weight)));
    svc.push({ key, value: { tableId, slots: table.length } });
    slots.push(...lbSlotEntries(tableId, table));
  });
  const backendOwners = [...backends.keys()].sort((a, b) => a - b).map(owners.backend);
  const part = makePart(owners.service(s.id, zone), l7.length === 0 ? { svc, lb_slot: slots } : { svc, lb_slot: slots, l7 }, backendOwners);
  const label = failingOpen ? { failingOpen: `${t.row.name}/${s.name}` } : {};
  return { part: { ...part, ...label, backendKeys: [...keys].sort() }, backends: [...backends.values()] };
}

/**
 * The backends with weight that serve; all backends with weight when none
 * does (fail open: a service whose every backend looks down still tries them,
 * rather than refusing every connection on a health checker's word).
 */
export function servingPool(resolved: readonly ResolvedBackend[]): { backends: ResolvedBackend[]; failingOpen: boolean } {
  const live = resolved.filter((b) => b.weight > 0);
  const serving = live.filter((b) => b.serving);
  return serving.length > 0 || live.length === 0 ? { backends: serving, failingOpen: false } : { backends: live, failingOpen: true };
}

/** Same-zone backends when there are any, else all. */
export function chooseByZone(pool: ResolvedBackend[], zone: string | null): ResolvedBackend[] {
  if (zone === null) return pool;
  const local = pool.filter((b) => b.zone === zone);
  return local.length > 0 ? local : pool;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Smallest exact table, capped at LB_TABLE_DEFAULT. */
export function tableSize(weights: readonly number[]): number {
  const g = weights.reduce(gcd, 0);
  const exact = weights.reduce((sum, w) => sum + w / g, 0);
  return exact <= LB_TABLE_DEFAULT ? exact : LB_TABLE_DEFAULT;
}
