/**
 * What the mesh stores share: the one write sequence (writeMeshRow), the
 * checks run inside a write, and row access.
 */
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { federations, httpRoutes, identities, policies, services, trafficPolicies, workloads } from "../db/schema.ts";
import { read, type WriteScope } from "../db/transactions.ts";
import type { Change } from "../compiler/index.ts";
import type { AdmissionRefusal } from "../follower/admission.ts";
import type { Follower } from "../follower/follow.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { etagOf, requireMatch, type PutIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal, notFound } from "./refusal.ts";

/** A write admission refuses is invalid: naming each map and node, needed vs available; or what the compiler cannot hold. */
export function admissionRefusal(refusal: AdmissionRefusal): MeshRefusal {
  if (refusal.kind === "compile") return new MeshRefusal("invalid", `the datapath cannot hold this: ${refusal.message}`);
  const refusals = refusal.refusals;
  return new MeshRefusal(
    "invalid",
    `refused: ${refusals.map((r) => `node ${r.node} map ${r.map}`).join(", ")} would overflow`,
    refusals.map((r) => ({
      field: `maps.${r.map}`,
      message: `node ${r.node}: needs ${r.needed} entries, has room for ${r.available}`,
    })),
  );
}

/** Write admission (follower/admission.ts) inside the write's transaction; a refusal is thrown. */
export async function admitOrRefuse(follower: Follower, w: WriteScope, changes: Change[]): Promise<void> {
  const refusal = await follower.admitWrite(w, changes);
  if (refusal) throw admissionRefusal(refusal);
}

/** A mesh row's kind, as the change log and the compiler name it. */
type MeshRowKind = "identity" | "workload" | "service" | "policy" | "federation" | "httpRoute" | "trafficPolicy";

/** One write of one mesh row, for writeMeshRow. */
export interface MeshWrite<Row, Out> {
  kind: MeshRowKind;
  tenantId: number;
  name: string;
  /** Locks the row (SELECT ... FOR UPDATE) and returns it as it is, if it exists. */
  lock(): Promise<Row | undefined>;
  /**
   * The checks that need the locked row, then the write itself: returns the
   * compiler's change for admission (null: the row is nothing the datapath
   * holds, as a federation), the audit operation and action, and what the
   * caller gets back. A check refuses by throwing.
   */
  apply(existing: Row | undefined): Promise<{ change: Change | null; op: "upsert" | "delete"; action: string; result: Out }>;
}

/**
 * The write sequence of every mesh row: catch the compiler up (from inside
 * the write's transaction, before any row changes: follower/follow.ts
 * catchUp), lock the row, check and write, admit (a refusal is thrown and
 * the transaction rolls back), record. Without a follower (`follower`
 * undefined) there is nothing to catch up or admit.
 */
export async function writeMeshRow<Row, Out>(w: WriteScope, follower: Follower | undefined, m: MeshWrite<Row, Out>): Promise<Out> {
  await follower?.catchUp(w);
  const existing = await m.lock();
  const { change, op, action, result } = await m.apply(existing);
  if (follower && change) await admitOrRefuse(follower, w, [change]);
  await w.record({ tenantId: m.tenantId, kind: m.kind, name: m.name, op }, action);
  return result;
}

export interface Preconditions {
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
  /**
   * Set when a node credential writes (definitions with `nodeWrites` only):
   * the store changes only what is placed on this node, under its row lock.
   */
  node?: string | undefined;
}

export interface ResourceStore<Spec, Row> {
  find(db: Db, tenantId: number, name: string): Promise<Row | null>;
  list(db: Db, tenantId: number, limit: number, after: string | undefined): Promise<Row[]>;
  put(w: WriteScope, follower: Follower, tenant: TenantDbRow, name: string, spec: Spec, pre: Preconditions): Promise<{ row: Row; intent: PutIntent }>;
  /** `node` as in Preconditions: a node deletes only what is on it; anything else is not-found, as a missing one. */
  remove(w: WriteScope, follower: Follower, tenantId: number, name: string, ifMatch: string | undefined, node?: string): Promise<void>;
}

export interface SelectorSpec {
  identity?: string | undefined;
  labels?: Record<string, string> | undefined;
}

/**
 * Identity names of the write's own tenant only: a name that exists only in
 * another tenant reads exactly like one that exists nowhere (invalid), so a
 * selector can never reach, or probe for, another tenant's identities.
 */
export async function requireIdentities(w: WriteScope, tenantId: number, named: { field: string; identity: string }[]): Promise<void> {
  if (named.length === 0) return;
  const wanted = [...new Set(named.map((n) => n.identity))];
  const found = await w.tx
    .select({ name: identities.name })
    .from(identities)
    .where(and(eq(identities.tenantId, tenantId), inArray(identities.name, wanted)));
  const known = new Set(found.map((r) => r.name));
  const missing = named.find((n) => !known.has(n.identity));
  if (missing) throw unknownIdentity(missing);
}

/** The refusal of an identity name the write's tenant does not have (requireIdentities). */
export const unknownIdentity = (named: { field: string; identity: string }): MeshRefusal =>
  fieldRefusal("invalid", `identity "${named.identity}" does not exist in this tenant`, named.field, `no identity "${named.identity}" in this tenant`);

/** The identity a selector names, with where it sits in the body, if it names one. */
export const namedIn = (field: string, selector: SelectorSpec | { cidr: string }): { field: string; identity: string }[] =>
  "identity" in selector && selector.identity !== undefined ? [{ field: `${field}.identity`, identity: selector.identity }] : [];

type MeshTable = typeof workloads | typeof services | typeof policies | typeof federations | typeof httpRoutes | typeof trafficPolicies;
type MeshKind = "workload" | "service" | "policy" | "federation" | "httpRoute" | "trafficPolicy";

/**
 * What the mesh stores share: finding, listing and deleting by
 * (tenant, name). Deletes follow the write order of the puts: catch the
 * follower up, lock, check If-Match, `beforeDelete` (what else still names
 * the row refuses), change, admit, record.
 */
export function meshRows<T extends MeshTable>(
  table: T,
  kind: MeshKind,
  opts: { beforeDelete?: (w: WriteScope, tenantId: number, name: string) => Promise<void> } = {},
) {
  type Row = T["$inferSelect"];
  // One of the tables with the same key columns; drizzle cannot type a select over a union of tables.
  const t = table as unknown as typeof workloads;
  const byName = (tenantId: number, name: string) => and(eq(t.tenantId, tenantId), eq(t.name, name));
  return {
    byName,
    async lock(w: WriteScope, tenantId: number, name: string): Promise<Row | undefined> {
      const [row] = await w.tx.select().from(t).where(byName(tenantId, name)).for("update");
      return row as Row | undefined;
    },
    async find(db: Db, tenantId: number, name: string): Promise<Row | null> {
      const [row] = await read(db, tenantId, (tx) => tx.select().from(t).where(byName(tenantId, name)));
      return (row as Row | undefined) ?? null;
    },
    list(db: Db, tenantId: number, limit: number, after: string | undefined): Promise<Row[]> {
      return read(db, tenantId, (tx) =>
        tx
          .select()
          .from(t)
          .where(and(eq(t.tenantId, tenantId), after === undefined ? undefined : gt(t.name, after)))
          .orderBy(asc(t.name))
          .limit(limit + 1),
      ) as Promise<Row[]>;
    },
    async remove(w: WriteScope, follower: Follower, tenantId: number, name: string, ifMatch: string | undefined): Promise<void> {
      await writeMeshRow(w, follower, {
        kind,
        tenantId,
        name,
        lock: () => this.lock(w, tenantId, name),
        apply: async (existing) => {
          if (!existing) throw notFound(`${kind} "${name}"`);
          requireMatch(etagOf(existing.revision), ifMatch);
          await opts.beforeDelete?.(w, tenantId, name);
          await w.tx.delete(t).where(byName(tenantId, name));
          const change = kind === "federation" ? null : { kind, op: "delete" as const, tenantId, name };
          return { change, op: "delete", action: `${kind}.delete`, result: undefined };
        },
      });
    },
  };
}
