import { and, arrayOverlaps, eq, inArray, ne, or, sql } from "drizzle-orm";
import { nodeMayRegister, nodeSelectorMatches } from "../ca/authz.ts";
import { identities, nodes, services, workloads } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import { withPlatformRead } from "../db/platform-read.ts";
import type { Follower } from "../follower/follow.ts";
import { workloadRowOf } from "../follower/rows.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { meshRows, unknownIdentity, writeMeshRow } from "./write.ts";
import type { Preconditions, ResourceStore } from "./write.ts";
import { etagOf, putIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal, notFound } from "./refusal.ts";
import { HEALTH_CHECK_DEFAULTS, HTTP_CHECK_DEFAULTS, type HealthCheck, type HealthCheckSpec, type WorkloadSpec } from "./specs.ts";
import { forgetHealth } from "./health.ts";
import type { Config } from "../config.ts";
import { addressPlanOf, workloadAddressRefusal, type AddressPlan } from "./addresses.ts";
import { assignPodCidr } from "./nodes.ts";

export type WorkloadDbRow = typeof workloads.$inferSelect;

const rows = meshRows(workloads, "workload");
const { byName } = rows;

/**
 * Addresses are the datapath's keys (ipcache, endpoint), compiled into the
 * maps of nodes other tenants share: each must lie in its node's pod CIDR
 * block and be no special-use address (invalid, checked first, so a refusal
 * says nothing about who holds what), and be one workload's, across all
 * tenants (conflict). `node` is the node's row as this write read it.
 */
async function requireFreeAddresses(
  w: WriteScope,
  tenantId: number,
  name: string,
  addresses: string[],
  node: { name: string; podCidr: string | null },
  plan: AddressPlan,
): Promise<void> {
  const block = node.podCidr ?? (await assignPodCidr(w, node.name, plan));
  addresses.forEach((address, i) => {
    const refusal = workloadAddressRefusal(address, block, node.name);
    if (refusal) throw fieldRefusal("invalid", `address ${address} ${refusal}`, `body.addresses.${i}`, refusal);
  });
  // Workloads' and services' addresses in one statement: it runs under the revision lock.
  const clashes = await withPlatformRead(w.tx, () =>
    w.tx
      .select({ addresses: workloads.addresses })
      .from(workloads)
      // No LIMIT: with one the planner bets on a scan finding a clash early (it guesses 0.5% of rows
      // overlap), and reads every workload when none does; without, it takes the GIN index (0017).
      .where(and(arrayOverlaps(workloads.addresses, addresses), or(ne(workloads.tenantId, tenantId), ne(workloads.name, name))))
      .unionAll(w.tx.select({ addresses: sql<string[]>`ARRAY[${services.vip}]` }).from(services).where(inArray(services.vip, addresses))),
  );
  // Another tenant's workload is never named: the caller learns only that the address is taken.
  const taken = new Set(clashes.flatMap((c) => c.addresses));
  const index = addresses.findIndex((a) => taken.has(a));
  if (index >= 0) {
    throw fieldRefusal("conflict", `address ${addresses[index]} is already in use`, `body.addresses.${index}`, "is used by another workload or a service VIP");
  }
}

async function putWorkload(
  w: WriteScope,
  follower: Follower,
  tenant: TenantDbRow,
  name: string,
  spec: WorkloadSpec,
  pre: Preconditions,
  plan: AddressPlan,
) {
  return writeMeshRow(w, follower, {
    kind: "workload",
    tenantId: tenant.id,
    name,
    lock: () => rows.lock(w, tenant.id, name),
    apply: async (existing) => {
      if (pre.node !== undefined) await requireOwnNode(w, tenant.id, pre.node, spec, existing);
      const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
      // The identity (its existence and node selector) and the node (its labels and block) are read once
      // each: every statement here runs under the revision lock, every other writer's wait.
      const [identity] = await w.tx
        .select({ nodeSelector: identities.nodeSelector })
        .from(identities)
        .where(and(eq(identities.tenantId, tenant.id), eq(identities.name, spec.identity)));
      if (!identity) throw unknownIdentity({ field: "body.identity", identity: spec.identity });
      // Nodes exist once registered (routes/nodes); a workload on no node would never be enforced.
      const [node] = await w.tx.select({ name: nodes.name, labels: nodes.labels, podCidr: nodes.podCidr }).from(nodes).where(eq(nodes.name, spec.node));
      if (!node) throw fieldRefusal("invalid", `node "${spec.node}" is not registered`, "body.node", `no node "${spec.node}" is registered`);
      requireSelectedNode(identity.nodeSelector, spec, node.labels);
      await requireFreeAddresses(w, tenant.id, name, spec.addresses, node, plan);
      const healthCheck = spec.healthCheck === undefined ? null : filledHealthCheck(spec.healthCheck);
      const values = {
        identity: spec.identity,
        node: spec.node,
        addresses: spec.addresses,
        interface: spec.interface ?? null,
        healthCheck,
        revision: w.revision,
      };
      const [row] = existing
        ? await w.tx.update(workloads).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
        : await w.tx.insert(workloads).values({ tenantId: tenant.id, name, ...values }).returning();
      if (existing) await forgetHealth(w, tenant.id, name, spec.node, healthCheck !== null);
      return {
        change: { kind: "workload", op: "put", row: workloadRowOf(row!) },
        op: "upsert",
        action: `workload.${intent}`,
        result: { row: row!, intent },
      };
    },
  });
}

/**
 * The check with its defaults filled, as stored and as the agent gets it;
 * rules the schema cannot state are refused as invalid on their field.
 */
export function filledHealthCheck(spec: HealthCheckSpec): HealthCheck {
  const field = "body.healthCheck";
  if (spec.protocol === "tcp") {
    for (const key of ["path", "expectStatus"] as const) {
      if (spec[key] !== undefined) throw fieldRefusal("invalid", `a tcp health check has no ${key}`, `${field}.${key}`, "is for http checks only");
    }
  }
  const filled: HealthCheck = {
    protocol: spec.protocol,
    port: spec.port,
    ...(spec.protocol === "http" ? { path: spec.path ?? HTTP_CHECK_DEFAULTS.path, expectStatus: spec.expectStatus ?? HTTP_CHECK_DEFAULTS.expectStatus } : {}),
    intervalSeconds: spec.intervalSeconds ?? HEALTH_CHECK_DEFAULTS.intervalSeconds,
    timeoutSeconds: spec.timeoutSeconds ?? HEALTH_CHECK_DEFAULTS.timeoutSeconds,
    healthyThreshold: spec.healthyThreshold ?? HEALTH_CHECK_DEFAULTS.healthyThreshold,
    unhealthyThreshold: spec.unhealthyThreshold ?? HEALTH_CHECK_DEFAULTS.unhealthyThreshold,
  };
  if (filled.timeoutSeconds > filled.intervalSeconds) {
    throw fieldRefusal("invalid", "a health check's timeout must not exceed its interval", `${field}.timeoutSeconds`, `must be at most intervalSeconds (${filled.intervalSeconds})`);
  }
  return filled;
}

/**
 * The identity's node selector must match the node's labels (invalid on
 * body.node): an identity runs only on the nodes it names, whoever declares
 * the workload.
 */
function requireSelectedNode(nodeSelector: Record<string, string>, spec: WorkloadSpec, labels: Record<string, string>): void {
  if (!nodeSelectorMatches(nodeSelector, labels)) {
    throw fieldRefusal(
      "invalid",
      `node "${spec.node}" does not match the node selector of identity "${spec.identity}"`,
      "body.node",
      `identity "${spec.identity}" runs only on nodes labelled ${JSON.stringify(nodeSelector)}`,
    );
  }
}

/**
 * Whether `node` may itself manage workloads of these identities of the
 * tenant (ca/authz.ts nodeMayRegister: allowNodeRegistration and a matching
 * nodeSelector), by identity name; a missing identity is absent, which reads
 * as not allowed.
 */
async function nodePermits(w: WriteScope, tenantId: number, node: string, names: string[]): Promise<Set<string>> {
  const [self] = await w.tx.select({ labels: nodes.labels }).from(nodes).where(eq(nodes.name, node));
  if (!self) return new Set();
  const found = await w.tx
    .select({ name: identities.name, allowNodeRegistration: identities.allowNodeRegistration, nodeSelector: identities.nodeSelector })
    .from(identities)
    .where(and(eq(identities.tenantId, tenantId), inArray(identities.name, [...new Set(names)])));
  return new Set(found.filter((i) => nodeMayRegister(i, self.labels)).map((i) => i.name));
}

/**
 * A node agent declares the workloads it runs: it may place a workload on
 * itself only, of an identity that lets this node register it (the identity's
 * allowNodeRegistration, and its nodeSelector matching the node's labels), and
 * may not take over one another node runs (that would move it, and with it the
 * right to obtain its identity's SVIDs, to this node), nor rebind one of its
 * own whose identity does not let it. Checked under the row lock, so the row
 * cannot move in between.
 *
 * A missing identity, another tenant's name, one not allowing node
 * registration and a selector that does not match the node all get the same
 * refusal (forbidden), before anything else is looked at (If-Match included,
 * dry run or not): a node learns nothing of which identities exist.
 */
async function requireOwnNode(w: WriteScope, tenantId: number, node: string, spec: WorkloadSpec, existing: WorkloadDbRow | undefined): Promise<void> {
  if (spec.node !== node) {
    throw fieldRefusal("forbidden", `node "${node}" can place workloads only on itself`, "body.node", `must be "${node}", the node whose credential this is`);
  }
  const mine = existing !== undefined && existing.node === node;
  const permitted = await nodePermits(w, tenantId, node, mine ? [spec.identity, existing.identity] : [spec.identity]);
  if (!permitted.has(spec.identity)) {
    throw fieldRefusal(
      "forbidden",
      `node "${node}" may not register workloads of this identity`,
      "body.identity",
      "must name an identity of this tenant that allows node registration (allowNodeRegistration) on a node its nodeSelector matches",
    );
  }
  if (existing !== undefined && existing.node !== node) {
    throw new MeshRefusal("forbidden", `workload "${existing.name}" runs on another node; a node credential changes only workloads on its own node`);
  }
  if (mine && !permitted.has(existing.identity)) throw notManagedByNode(existing, node);
}

const notManagedByNode = (existing: WorkloadDbRow, node: string) =>
  new MeshRefusal(
    "forbidden",
    `workload "${existing.name}" is of identity "${existing.identity}", which does not let node "${node}" register its workloads; only the tenant changes or deletes it`,
  );

/**
 * A node deletes only a workload on itself; another node's reads as missing
 * (not-found), as meshRows.remove answers. One on itself whose identity does
 * not let this node register workloads (declared by the tenant, or the
 * identity changed since) is the tenant's to delete: forbidden.
 */
async function removeWorkload(w: WriteScope, follower: Follower, tenantId: number, name: string, ifMatch: string | undefined, node?: string) {
  if (node !== undefined) {
    // The same row lock meshRows.remove takes next, in this transaction: the row stays on this node until commit.
    const existing = await rows.lock(w, tenantId, name);
    if (existing === undefined || existing.node !== node) throw notFound(`workload "${name}"`);
    if (!(await nodePermits(w, tenantId, node, [existing.identity])).has(existing.identity)) throw notManagedByNode(existing, node);
  }
  await rows.remove(w, follower, tenantId, name, ifMatch);
}

/** Built from the configuration: workload addresses come from the pod CIDR (WEFT_POD_CIDR). */
export const workloadStore = (config: Config): ResourceStore<WorkloadSpec, WorkloadDbRow> => {
  const plan = addressPlanOf(config);
  return { ...rows, put: (w, follower, tenant, name, spec, pre) => putWorkload(w, follower, tenant, name, spec, pre, plan), remove: removeWorkload };
};
