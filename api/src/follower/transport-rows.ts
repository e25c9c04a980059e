/**
 * A node's transport document's rows (mesh/transport.ts TransportRows), from
 * the rows the follower holds at its applied revision: the identities and
 * trust domains of the tenants of the node's local steered identities, those
 * tenants' workloads on other nodes whose transport reported an endpoint,
 * and their CA certificates. Nothing of a tenant without a local steered
 * identity is read.
 */
import type { Entry } from "@weft/codec";
import { spiffeId } from "../ca/spiffe-id.ts";
import type { IdentityRow, WorkloadRow } from "../compiler/index.ts";
import { localIdentities, type TransportRows } from "../mesh/transport.ts";
import type { Rows } from "./rows.ts";

export interface TransportInputs {
  rows: TransportRows;
  /** The tenants' trust bundles (PEM) by tenant id. */
  bundles: ReadonlyMap<number, string>;
}

/** `alsoTenants`: tenants the node's L7 proxy takes part for (mesh/transport.ts ProxyHops). */
export function transportRowsOf(rows: Rows, node: string, steer: readonly Entry<"steer">[], alsoTenants: Iterable<number> = []): TransportInputs {
  const identities = new Map<number, { tenantId: number; spiffeId: string }>();
  const trustDomains = new Map<number, string>();
  const bundles = new Map<number, string>();
  const remoteWorkloads: { numericId: number; addresses: readonly string[]; endpoint: string }[] = [];
  const tenantIds = new Set([...localIdentities(steer).flatMap((id) => rows.tenantOf(id) ?? []), ...alsoTenants]);
  for (const tenantId of tenantIds) {
    const tenant = rows.tenants.get(tenantId);
    const own = rows.byTenant.get(tenantId);
    if (tenant?.trustDomain === undefined || own === undefined) continue;
    trustDomains.set(tenantId, tenant.trustDomain);
    if (tenant.trustBundlePem !== undefined) bundles.set(tenantId, tenant.trustBundlePem);
    const numericIds = new Map<string, number>();
    for (const i of own.identity.values() as Iterable<IdentityRow>) {
      numericIds.set(i.name, i.numericId);
      if (i.path !== undefined) identities.set(i.numericId, { tenantId, spiffeId: spiffeId(tenant.trustDomain, i.path) });
    }
    for (const w of own.workload.values() as Iterable<WorkloadRow>) {
      const endpoint = rows.transportEndpoints.get(w.node);
      const numericId = numericIds.get(w.identity);
      if (w.node === node || endpoint === undefined || numericId === undefined || !identities.has(numericId)) continue;
      remoteWorkloads.push({ numericId, addresses: w.addresses, endpoint });
    }
  }
  return { rows: { identities, trustDomains, remoteWorkloads }, bundles };
}
