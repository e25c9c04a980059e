import { and, arrayOverlaps, eq, inArray, ne, or } from "drizzle-orm";
import { nodes, services, workloads } from "../../db/schema.ts";
import type { WriteScope } from "../../db/transactions.ts";
import { etagOf, putIntent } from "../../http/conventions.ts";
import { fieldProblem, forbidden, notFound } from "../../http/problem.ts";
import { withPlatformRead, workloadRowOf, type DatapathService } from "../../services/datapath.ts";
import type { TenantRow } from "../../services/tenant-directory.ts";
import { meshRows, requireIdentities } from "../mesh-store.ts";
import type { Preconditions, ResourceStore } from "../tenant-resource.ts";
import type { Workload, WorkloadSpec } from "./schemas.ts";

export type WorkloadDbRow = typeof workloads.$inferSelect;

export const toWorkload = (row: WorkloadDbRow): Workload => ({
  name: row.name,
  identity: row.identity,
  node: row.node,
  addresses: row.addresses,
  interface: row.interface,
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

const rows = meshRows(workloads, "workload");
const { byName } = rows;

/** Addresses are the datapath's keys (ipcache, endpoint): one address, one workload, across all tenants. */
async function requireFreeAddresses(w: WriteScope, tenantId: number, name: string, addresses: string[]): Promise<void> {
  const { workloadClash, vipClash } = await withPlatformRead(w.tx, async () => ({
    workloadClash: await w.tx
      .select({ addresses: workloads.addresses })
      .from(workloads)
      .where(and(arrayOverlaps(workloads.addresses, addresses), or(ne(workloads.tenantId, tenantId), ne(workloads.name, name))))
      .limit(1),
    vipClash: await w.tx.select({ vip: services.vip }).from(services).where(inArray(services.vip, addresses)).limit(1),
  }));
  // Another tenant's workload is never named: the caller learns only that the address is taken.
  const taken = new Set([...(workloadClash[0]?.addresses ?? []), ...(vipClash[0] ? [vipClash[0].vip] : [])]);
  const index = addresses.findIndex((a) => taken.has(a));
  if (index >= 0) {
    throw fieldProblem(409, `address ${addresses[index]} is already in use`, `body.addresses.${index}`, "is used by another workload or a service VIP");
  }
}

async function putWorkload(
  w: WriteScope,
  dp: DatapathService,
  tenant: TenantRow,
  name: string,
  spec: WorkloadSpec,
  pre: Preconditions,
) {
  await dp.catchUp(w);
  const existing = await rows.lock(w, tenant.id, name);
  if (pre.node !== undefined) requireOwnNode(pre.node, spec, existing);
  const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
  await requireIdentities(w, tenant.id, [{ field: "body.identity", identity: spec.identity }]);
  // Nodes exist once registered (routes/nodes); a workload on no node would never be enforced.
  const [node] = await w.tx.select({ name: nodes.name }).from(nodes).where(eq(nodes.name, spec.node));
  if (!node) throw fieldProblem(422, `node "${spec.node}" is not registered`, "body.node", `no node "${spec.node}" is registered`);
  await requireFreeAddresses(w, tenant.id, name, spec.addresses);
  const values = { identity: spec.identity, node: spec.node, addresses: spec.addresses, interface: spec.interface ?? null, revision: w.revision };
  const [row] = existing
    ? await w.tx.update(workloads).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
    : await w.tx.insert(workloads).values({ tenantId: tenant.id, name, ...values }).returning();
  await dp.admitWrite(w, [{ kind: "workload", op: "put", row: workloadRowOf(row!) }]);
  await w.record({ tenantId: tenant.id, kind: "workload", name, op: "upsert" }, `workload.${intent}`);
  return { row: row!, intent };
}

/**
 * A node agent declares the workloads it runs: it may place a workload on
 * itself only, and may not take over one another node runs (that would move
 * it, and with it the right to obtain its identity's SVIDs, to this node).
 * Checked under the row lock, so the row cannot move in between.
 */
function requireOwnNode(node: string, spec: WorkloadSpec, existing: WorkloadDbRow | undefined): void {
  if (spec.node !== node) {
    throw fieldProblem(403, `node "${node}" can place workloads only on itself`, "body.node", `must be "${node}", the node whose credential this is`);
  }
  if (existing !== undefined && existing.node !== node) {
    throw forbidden(`workload "${existing.name}" runs on another node; a node credential changes only workloads on its own node`);
  }
}

/** A node deletes only a workload on itself; another node's reads as missing (404), as meshRows.remove answers. */
async function removeWorkload(w: WriteScope, dp: DatapathService, tenantId: number, name: string, ifMatch: string | undefined, node?: string) {
  if (node !== undefined) {
    // The same row lock meshRows.remove takes next, in this transaction: the row stays on this node until commit.
    const existing = await rows.lock(w, tenantId, name);
    if (existing === undefined || existing.node !== node) throw notFound(`workload "${name}"`);
  }
  await rows.remove(w, dp, tenantId, name, ifMatch);
}

export const workloadStore: ResourceStore<WorkloadSpec, WorkloadDbRow> = { ...rows, put: putWorkload, remove: removeWorkload };
