import { and, asc, eq, gt, ne } from "drizzle-orm";
import { throwIfAny } from "../ca/errors.ts";
import { reservedPathErrors } from "../ca/node-proxy-id.ts";
import { validateSpiffeId } from "../ca/spiffe-id.ts";
import type { Db } from "../db/client.ts";
import { nodeSelectorMatches } from "../ca/authz.ts";
import { identities, nodes, workloads } from "../db/schema.ts";
import { read, type WriteScope } from "../db/transactions.ts";
import type { Follower } from "../follower/follow.ts";
import { identityRowOf } from "../follower/rows.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { etagOf, putIntent, requireMatch, type PutIntent } from "./preconditions.ts";
import { MeshRefusal, notFound } from "./refusal.ts";
import type { IdentitySpec } from "./specs.ts";
import { writeMeshRow } from "./write.ts";

export type IdentityDbRow = typeof identities.$inferSelect;

const byName = (tenantId: number, name: string) => and(eq(identities.tenantId, tenantId), eq(identities.name, name));

/**
 * Create or replace by name. A replace keeps the numeric security identity:
 * the datapath and issued SVIDs refer to it; only delete gives it up, and a
 * sequence never hands it out again.
 */
export async function putIdentity(
  w: WriteScope,
  tenant: TenantDbRow,
  name: string,
  spec: IdentitySpec,
  preconditions: { ifMatch?: string | undefined; ifNoneMatch?: string | undefined },
  /** Labels feed selectors, so an identity write is checked against node capacities too. */
  follower?: Follower,
): Promise<{ row: IdentityDbRow; intent: PutIntent }> {
  // The whole SPIFFE ID, for its 2048-byte limit; the trust domain was checked at tenant creation.
  // Field names are bare here: caCall places them in the body.
  throwIfAny([...validateSpiffeId(tenant.trustDomain, spec.path), ...reservedPathErrors(spec.path)]);
  return writeMeshRow(w, follower, {
    kind: "identity",
    tenantId: tenant.id,
    name,
    lock: async () => (await w.tx.select().from(identities).where(byName(tenant.id, name)).for("update"))[0],
    apply: async (existing) => {
      const intent = putIntent(existing ? etagOf(existing.revision) : null, preconditions.ifMatch, preconditions.ifNoneMatch);
      const [clash] = await w.tx
        .select({ name: identities.name })
        .from(identities)
        .where(and(eq(identities.tenantId, tenant.id), eq(identities.path, spec.path), ne(identities.name, name)));
      if (clash) {
        throw new MeshRefusal("conflict", "another identity already has that SPIFFE ID", [
          { field: "body.path", message: `is used by identity "${clash.name}"` },
        ]);
      }
      // On create too: workloads name identities by name, and may outlive one that was deleted.
      await requireWorkloadsStillSelected(w, tenant.id, name, spec.nodeSelector ?? {});
      const values = {
        path: spec.path,
        selectors: spec.selectors ?? {},
        nodeSelector: spec.nodeSelector ?? {},
        allowNodeRegistration: spec.allowNodeRegistration ?? false,
        x509SvidTtlSeconds: spec.x509SvidTtlSeconds ?? null,
        jwtSvidTtlSeconds: spec.jwtSvidTtlSeconds ?? null,
        revision: w.revision,
      };
      const [row] = existing
        ? await w.tx.update(identities).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
        : await w.tx.insert(identities).values({ tenantId: tenant.id, name, ...values }).returning();
      return { change: { kind: "identity", op: "put", row: identityRowOf(row!) }, op: "upsert", action: `identity.${intent}`, result: { row: row!, intent } };
    },
  });
}

/** At most this many workloads are named in a refusal; the detail gives the count. */
const NAMED_WORKLOADS = 20;

/**
 * A node selector that the nodes of existing workloads of the identity would
 * no longer match is refused (invalid on body.nodeSelector, naming them): every
 * workload stays on a node its identity selects, so the datapath never keeps
 * a workload's address as the identity on a node the identity has left.
 * Delete or move those workloads first. (SVID issuance checks the selector
 * against the node's labels on every request as well: ca/authz.ts.)
 */
async function requireWorkloadsStillSelected(w: WriteScope, tenantId: number, name: string, selector: Record<string, string>): Promise<void> {
  if (Object.keys(selector).length === 0) return;
  const placed = await w.tx
    .select({ workload: workloads.name, node: workloads.node, labels: nodes.labels })
    .from(workloads)
    .innerJoin(nodes, eq(nodes.name, workloads.node))
    .where(and(eq(workloads.tenantId, tenantId), eq(workloads.identity, name)))
    .orderBy(asc(workloads.name));
  const left = placed.filter((p) => !nodeSelectorMatches(selector, p.labels));
  if (left.length === 0) return;
  throw new MeshRefusal(
    "invalid",
    `${left.length} workload${left.length === 1 ? "" : "s"} of identity "${name}" run${left.length === 1 ? "s" : ""} on nodes this node selector does not match; delete or move them first`,
    left.slice(0, NAMED_WORKLOADS).map((p) => ({
      field: "body.nodeSelector",
      message: `does not match node "${p.node}" of workload "${p.workload}"`,
    })),
  );
}

export async function deleteIdentity(
  w: WriteScope,
  tenantId: number,
  name: string,
  ifMatch: string | undefined,
  follower?: Follower,
): Promise<void> {
  await writeMeshRow(w, follower, {
    kind: "identity",
    tenantId,
    name,
    lock: async () => (await w.tx.select().from(identities).where(byName(tenantId, name)).for("update"))[0],
    apply: async (existing) => {
      if (!existing) throw notFound(`identity "${name}"`);
      requireMatch(etagOf(existing.revision), ifMatch);
      await w.tx.delete(identities).where(byName(tenantId, name));
      return { change: { kind: "identity", op: "delete", tenantId, name }, op: "delete", action: "identity.delete", result: undefined };
    },
  });
}

export async function findIdentity(db: Db, tenantId: number, name: string): Promise<IdentityDbRow | null> {
  const [row] = await read(db, tenantId, (tx) => tx.select().from(identities).where(byName(tenantId, name)));
  return row ?? null;
}

export async function getIdentity(db: Db, tenantId: number, name: string): Promise<IdentityDbRow> {
  const row = await findIdentity(db, tenantId, name);
  if (!row) throw notFound(`identity "${name}"`);
  return row;
}

export async function listIdentities(db: Db, tenantId: number, limit: number, after: string | undefined): Promise<IdentityDbRow[]> {
  return read(db, tenantId, (tx) =>
    tx
      .select()
      .from(identities)
      .where(and(eq(identities.tenantId, tenantId), after === undefined ? undefined : gt(identities.name, after)))
      .orderBy(asc(identities.name))
      .limit(limit + 1),
  );
}
