/**
 * From the datapath's numbers to what each reader sees (pure). Each side of a
 * flow is resolved once, whole; then one row per viewer is cut from it:
 *
 *  - no tenant on either side (host to world): one row, the operator's;
 *  - one tenant (both sides, or one side and a reserved or CIDR peer): one
 *    row, that tenant's, which is also the operator's whole copy;
 *  - two tenants (a cross-tenant drop): the operator's whole row, and one
 *    row for each tenant with the other side redacted to its address and
 *    "other-tenant", so that tenant's names never reach the other's rows.
 *
 * A side counts as a tenant's only when that tenant has a workload on the
 * uploading node: a node's ipcache knows no other tenant's addresses (they
 * are world to it), so a node naming another tenant is wrong or lying, and
 * its claim opens no tenant's view; such a side reads "unknown".
 */
import { constants } from "@weft/codec";
import { decodeRuleId } from "../../compiler/ids.ts";
import type { flowAggregates, flows } from "../../db/schema.ts";
import type {
  FlowPeerView,
  FlowPolicyView,
  FlowVerdict,
  UploadedAggregate,
  UploadedFlow,
} from "./specs.ts";

/** Names of the numbers one batch carries, read when it arrived (directory.ts). */
export interface FlowNames {
  tenants: ReadonlyMap<number, string>;
  identities: ReadonlyMap<number, { tenantId: number; name: string }>;
  cidrs: ReadonlyMap<number, string>;
  /** Workload addresses: what an unknown identity (0, the sock hook's source) is by its address. */
  workloads: ReadonlyMap<string, { tenantId: number; identity: number }>;
  policies: ReadonlyMap<number, { tenantId: number; name: string; ingressRules: number }>;
  /** Services by VIP. */
  services: ReadonlyMap<string, { tenantId: number; name: string }>;
  /** Tenants with a workload on the uploading node. */
  presentOnNode: ReadonlySet<number>;
}

/** One side, resolved: its tenant (null: none, or not attributable) and how the operator sees it. */
interface Side {
  tenantId: number | null;
  identity: string | null;
  peer: FlowPeerView;
}

const RESERVED_BY_ID: Record<number, FlowPeerView["reserved"]> = {
  [constants.IDENTITY_HOST]: "host",
  [constants.IDENTITY_WORLD]: "world",
  [constants.IDENTITY_UNMANAGED]: "unmanaged",
  [constants.IDENTITY_HEALTH]: "health",
  // A node's L7 proxy connecting to a backend (issue 21): its allow entries carry rule id 1 (compiler/l7.ts).
  [constants.IDENTITY_PROXY!]: "proxy",
};

const reserved = (name: NonNullable<FlowPeerView["reserved"]>, extra: Partial<FlowPeerView> = {}): Side => ({
  tenantId: null,
  identity: null,
  peer: { identity: null, tenant: null, reserved: name, ...extra },
});

/**
 * One side by its identity number and the tenant the datapath reported; the
 * identity's own row decides its tenant. An identity deleted since (or
 * never known) is still its reported tenant's when that tenant is on the node.
 */
export function resolveSide(names: FlowNames, identity: number, tenant: number, address?: string): Side {
  if (identity === constants.IDENTITY_ANY) {
    const workload = address === undefined ? undefined : names.workloads.get(address);
    return workload === undefined ? reserved("unknown") : resolveSide(names, workload.identity, workload.tenantId);
  }
  if (identity <= constants.IDENTITY_RESERVED_MAX) return reserved(RESERVED_BY_ID[identity] ?? "reserved");
  const cidr = names.cidrs.get(identity);
  if (cidr !== undefined) return reserved("cidr", { cidr });
  const known = names.identities.get(identity);
  if (known === undefined) {
    if (!names.presentOnNode.has(tenant)) return reserved("unknown");
    return { tenantId: tenant, identity: null, peer: { identity: null, tenant: names.tenants.get(tenant)!, reserved: "unknown" } };
  }
  // One of a tenant absent from the node: nothing to attribute it to.
  if (!names.presentOnNode.has(known.tenantId)) return reserved("unknown");
  return { tenantId: known.tenantId, identity: known.name, peer: { identity: known.name, tenant: names.tenants.get(known.tenantId)! } };
}

const REDACTED: FlowPeerView = { identity: null, tenant: null, reserved: "other-tenant" };

/** Who a row is for: a tenant (null: the operator alone), and whether it is the operator's whole copy. */
interface Viewer {
  tenantId: number | null;
  whole: boolean;
}

/** The viewers of a flow between two sides: null is the operator, alone only when no tenant is involved. */
function viewersOf(src: Side, dst: Side): Viewer[] {
  const tenants = [...new Set([src.tenantId, dst.tenantId].filter((t): t is number => t !== null))];
  if (tenants.length === 0) return [{ tenantId: null, whole: true }];
  if (tenants.length === 1) return [{ tenantId: tenants[0]!, whole: true }];
  return [{ tenantId: null, whole: true }, ...tenants.map((tenantId) => ({ tenantId, whole: false }))];
}

/** A side as one viewer sees it: whole, or redacted when it is another tenant's. */
function sideFor(side: Side, viewer: Viewer): Side {
  if (viewer.whole || side.tenantId === null || side.tenantId === viewer.tenantId) return side;
  return { peer: REDACTED, tenantId: null, identity: null };
}

/** A fact owned by one tenant (its policy, its service) is shown to that tenant's rows and the operator's. */
const ownedFor = <T>(owner: number | undefined, value: T, viewer: Viewer, tenants: (number | null)[]): T | null => {
  if (owner === undefined) return null;
  // Only a fact of a tenant on this flow: a rule id naming a stranger's policy names nothing.
  if (!tenants.includes(owner)) return null;
  return viewer.whole && viewer.tenantId === null ? value : owner === viewer.tenantId ? value : null;
};

function policyOf(names: FlowNames, ruleId: number, verdict: FlowVerdict): { tenantId: number; view: FlowPolicyView } | undefined {
  const decoded = decodeRuleId(ruleId);
  const policy = decoded && names.policies.get(decoded.policyId);
  if (!decoded || !policy) return undefined;
  const ingress = decoded.ruleIndex < policy.ingressRules;
  return {
    tenantId: policy.tenantId,
    view: {
      name: policy.name,
      rule: ingress ? decoded.ruleIndex : decoded.ruleIndex - policy.ingressRules,
      direction: ingress ? "ingress" : "egress",
      // The verdict says which: a rule in audit mode reports what it would have denied as audit.
      mode: verdict === "audit" ? "audit" : "enforce",
    },
  };
}

/** A row of flows (flow_aggregates) as ingestion writes it: the table's own type. */
export type FlowRow = Omit<typeof flows.$inferInsert, "id">;
export type AggregateRow = Omit<typeof flowAggregates.$inferInsert, "id">;

export function flowRows(names: FlowNames, node: string, flow: UploadedFlow): FlowRow[] {
  const src = resolveSide(names, flow.src.identity, flow.src.tenant, flow.src.address);
  const dst = resolveSide(names, flow.dst.identity, flow.dst.tenant, flow.dst.address);
  const tenants = [src.tenantId, dst.tenantId];
  const policy = policyOf(names, flow.ruleId, flow.verdict);
  const service = flow.originalDst && names.services.get(flow.originalDst.address);
  return viewersOf(src, dst).map((viewer) => {
    const s = sideFor(src, viewer);
    const d = sideFor(dst, viewer);
    const serviceName = ownedFor(service?.tenantId, service?.name ?? null, viewer, tenants);
    return {
      tenantId: viewer.tenantId,
      whole: viewer.whole,
      node,
      time: new Date(flow.time),
      hook: flow.hook,
      verdict: flow.verdict,
      reason: flow.reason,
      protocol: flow.protocol,
      srcTenantId: s.tenantId,
      dstTenantId: d.tenantId,
      srcIdentity: s.identity,
      dstIdentity: d.identity,
      service: serviceName,
      source: { address: flow.src.address, port: flow.src.port, ...s.peer },
      destination: { address: flow.dst.address, port: flow.dst.port, ...d.peer },
      originalDestination: flow.originalDst ? { address: flow.originalDst.address, port: flow.originalDst.port, service: serviceName } : null,
      policy: ownedFor(policy?.tenantId, policy?.view ?? null, viewer, tenants),
    };
  });
}

export function aggregateRows(names: FlowNames, node: string, a: UploadedAggregate): AggregateRow[] {
  const src = resolveSide(names, a.srcIdentity, a.srcTenant);
  const dst = resolveSide(names, a.dstIdentity, a.dstTenant);
  return viewersOf(src, dst).map((viewer) => ({
    tenantId: viewer.tenantId,
    whole: viewer.whole,
    node,
    start: new Date(a.start),
    end: new Date(a.end),
    source: sideFor(src, viewer).peer,
    destination: sideFor(dst, viewer).peer,
    port: a.dstPort,
    protocol: a.protocol,
    verdict: a.verdict,
    reason: a.reason,
    count: a.count,
    bytes: a.bytes,
  }));
}
