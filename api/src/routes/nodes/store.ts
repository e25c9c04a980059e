import { randomUUID } from "node:crypto";
import { and, asc, eq, gt, isNull, sql } from "drizzle-orm";
import { NODE_KIND, PLATFORM_TENANT_ID, secretHash } from "../../auth/node-credentials.ts";
import type { NodeWorkloadLookup } from "../../ca/authz.ts";
import type { Db } from "../../db/client.ts";
import { identities, joinTokens, nodes, tenants, workloads } from "../../db/schema.ts";
import { read, type WriteScope } from "../../db/transactions.ts";
import { conflict, notFound, unauthorized } from "../../http/problem.ts";
import { withPlatformRead } from "../../services/datapath.ts";
import type { Node, NodeStatusReport, NodeWorkload, Registration } from "./schemas.ts";

export type NodeRow = typeof nodes.$inferSelect;

/** What the compiler wants on a node now, or null when it cannot say. */
export type DesiredOf = (node: string) => Promise<{ revision: number; hash: string } | null>;

interface StoredStatus {
  counters: Record<string, number>;
  errors: string[];
}

export function toNode(row: NodeRow, desired: { revision: number; hash: string } | null): Node {
  const status = (row.status ?? { counters: {}, errors: [] }) as StoredStatus;
  const applied =
    row.appliedRevision !== null && row.appliedHash !== null && row.statusAt !== null
      ? { revision: row.appliedRevision, hash: row.appliedHash, at: row.statusAt.toISOString() }
      : null;
  const converged = desired !== null && applied !== null && applied.hash === desired.hash;
  return {
    name: row.name,
    zone: row.zone,
    labels: row.labels,
    createdAt: row.createdAt.toISOString(),
    desired,
    applied,
    converged,
    // The stored instant was set by the report that first matched; the desired
    // state may have moved since, and then it no longer means anything.
    convergedSince: converged && row.convergedSince ? row.convergedSince.toISOString() : null,
    counters: status.counters,
    errors: status.errors,
  };
}

export async function createJoinToken(w: WriteScope, token: string, ttlSeconds: number) {
  const [row] = await w.tx
    .insert(joinTokens)
    .values({ id: randomUUID(), tokenHash: secretHash(token), expiresAt: new Date(Date.now() + ttlSeconds * 1000) })
    .returning();
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: "join-token", name: row!.id, op: "upsert" }, "join-token.create");
  return row!;
}

/**
 * Spends the join token and creates the node, in one transaction. The
 * conditional UPDATE takes the token's row lock: of two registrations with
 * one token, the second waits, re-reads used_at and finds it set. A name
 * conflict rolls the whole write back, so it does not burn the token.
 */
export async function registerNode(w: WriteScope, body: Registration, credential: string): Promise<NodeRow> {
  const [spent] = await w.tx
    .update(joinTokens)
    .set({ usedAt: sql`now()`, usedBy: body.name })
    .where(and(eq(joinTokens.tokenHash, secretHash(body.joinToken)), isNull(joinTokens.usedAt), gt(joinTokens.expiresAt, sql`now()`)))
    .returning({ id: joinTokens.id });
  // One answer for unknown, used and expired tokens: a caller holding none learns nothing.
  if (!spent) throw unauthorized("join token invalid, expired or already used");
  const [row] = await w.tx
    .insert(nodes)
    .values({
      name: body.name,
      zone: body.zone,
      labels: body.labels ?? {},
      credentialHash: secretHash(credential),
      revision: w.revision,
    })
    .onConflictDoNothing({ target: nodes.name })
    .returning();
  if (!row) throw conflict(`node "${body.name}" is already registered; delete it first to register it again`);
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name: body.name, op: "upsert" }, "node.register");
  return row;
}

export async function deleteNode(w: WriteScope, name: string): Promise<void> {
  const [deleted] = await w.tx.delete(nodes).where(eq(nodes.name, name)).returning({ name: nodes.name });
  if (!deleted) throw notFound(`node "${name}"`);
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name, op: "delete" }, "node.delete");
}

export async function getNode(db: Db, name: string): Promise<NodeRow> {
  const [row] = await read(db, null, (tx) => tx.select().from(nodes).where(eq(nodes.name, name)));
  if (!row) throw notFound(`node "${name}"`);
  return row;
}

export async function listNodes(db: Db, limit: number, after: string | undefined): Promise<NodeRow[]> {
  return read(db, null, (tx) =>
    tx
      .select()
      .from(nodes)
      .where(after === undefined ? undefined : gt(nodes.name, after))
      .orderBy(asc(nodes.name))
      .limit(limit + 1),
  );
}

/**
 * Stores what the node reports. This is observed state, not desired state: it
 * takes no global revision, writes no change log and wakes no long poll (an
 * agent reports after every apply; feeding that back into the change stream
 * would wake every watcher for nothing). converged_since is kept across
 * reports of the same content and restarts when the content changes.
 */
export async function reportStatus(db: Db, name: string, report: NodeStatusReport, desiredHash: string | null): Promise<NodeRow> {
  const matches = desiredHash !== null && report.hash === desiredHash;
  const [row] = await read(db, null, (tx) =>
    tx
      .update(nodes)
      .set({
        appliedRevision: report.appliedRevision,
        appliedHash: report.hash,
        status: { counters: report.counters, errors: report.errors } satisfies StoredStatus,
        statusAt: sql`now()`,
        convergedSince: matches
          ? sql`CASE WHEN ${nodes.appliedHash} = ${report.hash} AND ${nodes.convergedSince} IS NOT NULL THEN ${nodes.convergedSince} ELSE now() END`
          : null,
      })
      .where(eq(nodes.name, name))
      .returning(),
  );
  if (!row) throw notFound(`node "${name}"`);
  return row;
}

/** The SVID rule's lookup: a workload of this tenant and identity registered on this node. */
export const workloadsCarrying =
  (db: Db): NodeWorkloadLookup =>
  async (node, identity) => {
    const tenantId = Number(identity.tenantId);
    const rows = await read(db, tenantId, (tx) =>
      tx
        .select({ identity: workloads.identity })
        .from(workloads)
        .where(and(eq(workloads.tenantId, tenantId), eq(workloads.node, node), eq(workloads.identity, identity.identityName)))
        .limit(1),
    );
    return rows.map((r) => ({ tenantId: identity.tenantId, identityName: r.identity }));
  };

/**
 * The workloads placed on one node, across tenants (the node serves them
 * all): a platform read, the same exception to tenant isolation the
 * compiler makes, answered only to the operator or that node.
 */
export async function workloadsOnNode(
  db: Db,
  node: string,
  limit: number,
  after: { tenant: string; name: string } | undefined,
): Promise<NodeWorkload[]> {
  const rows = await read(db, null, (tx) =>
    withPlatformRead(tx, () =>
      tx
        .select({
          tenant: tenants.name,
          trustDomain: tenants.trustDomain,
          name: workloads.name,
          identity: workloads.identity,
          addresses: workloads.addresses,
          interface: workloads.interface,
          path: identities.path,
        })
        .from(workloads)
        .innerJoin(tenants, eq(tenants.id, workloads.tenantId))
        .innerJoin(identities, and(eq(identities.tenantId, workloads.tenantId), eq(identities.name, workloads.identity)))
        .where(
          and(
            eq(workloads.node, node),
            // Row comparison: the same order as ORDER BY, whatever the collation.
            after === undefined ? undefined : sql`(${tenants.name}, ${workloads.name}) > (${after.tenant}, ${after.name})`,
          ),
        )
        .orderBy(asc(tenants.name), asc(workloads.name))
        .limit(limit + 1),
    ),
  );
  return rows.map((r) => ({
    tenant: r.tenant,
    name: r.name,
    identity: r.identity,
    addresses: r.addresses,
    ...(r.interface ? { interface: r.interface } : {}),
    spiffeId: `spiffe://${r.trustDomain}${r.path}`,
  }));
}
