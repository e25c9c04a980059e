// The CA's storage (ca/service.ts CaStore) on drizzle, under row-level
// security like every other tenant-owned table. Each change of CA state and
// each issuance is one write() transaction, so its audit row commits with it.
import { AsyncLocalStorage } from "node:async_hooks";
import { and, eq, gt, notInArray, sql } from "drizzle-orm";
import type { FastifyRequest } from "fastify";
import { actorOf } from "../auth/principal.ts";
import type { AuthoritySlot } from "../ca/authority.ts";
import type { CaState, CaStore, IssuanceRecord } from "../ca/service.ts";
import type { Db } from "../db/client.ts";
import { auditLog, caAuthorities, caSlots, svidIssuances } from "../db/schema.ts";
import { read, write, type WriteContext, type WriteScope } from "../db/transactions.ts";
import type { ChangeFeed } from "./change-feed.ts";
import { FeedCache } from "./feed-cache.ts";

/**
 * Who is changing the CA, for the audit log. CaService calls the store
 * without any request in hand, so the route (or the rotation scheduler) puts
 * the caller here around its CaService call; absent, the actor is the system.
 */
const callerContext = new AsyncLocalStorage<WriteContext>();
const SYSTEM: WriteContext = { actor: "system", requestId: "system", dryRun: false };

export function onBehalfOf<T>(request: FastifyRequest, fn: () => Promise<T>): Promise<T> {
  const actor = request.principal ? actorOf(request.principal) : "anonymous";
  return callerContext.run({ actor, requestId: String(request.id), dryRun: false }, fn);
}

export function asSystem<T>(actor: string, fn: () => Promise<T>): Promise<T> {
  return callerContext.run({ ...SYSTEM, actor }, fn);
}

/** The bundle changes as one resource per tenant in the change log. */
const BUNDLE = { kind: "bundle", name: "bundle" } as const;

type SlotRow = typeof caSlots.$inferSelect;

const toSlot = (r: SlotRow): AuthoritySlot => ({
  id: r.id,
  status: r.status,
  notBefore: r.notBefore,
  notAfter: r.notAfter,
  maxIssuedNotAfter: r.maxIssuedNotAfter,
  material: {
    caCertDer: r.caCertDer,
    caKeySealed: r.caKeySealed,
    jwtKid: r.jwtKid,
    jwtPublicKeySpki: r.jwtPublicKeySpki,
    jwtKeySealed: r.jwtKeySealed,
  },
});

/** Audit actions for a state change, from what differs between the stored slots and the new ones. */
function actionsOf(before: Map<string, string>, after: CaState, first: boolean, pruned: number): string[] {
  if (first) return ["ca.bootstrap"];
  const actions = new Set<string>();
  for (const s of after.slots) {
    const was = before.get(s.id);
    if (was === undefined) actions.add("ca.prepare");
    else if (was !== s.status && s.status === "active") actions.add("ca.activate");
  }
  if (pruned > 0) actions.add("ca.prune");
  return actions.size ? [...actions] : ["ca.update"];
}

type Loaded = { state: CaState; revision: number } | null;

interface PendingIssuance {
  rec: IssuanceRecord;
  ctx: WriteContext;
  settle: (err: unknown) => void;
}

/** A text[] parameter; it travels as JSON text, which both drivers (pg, PGlite) pass alike. */
const textArray = (values: readonly (string | null)[]) =>
  sql`ARRAY(SELECT json_array_elements_text(${JSON.stringify(values)}::json))`;

/** Issuance records committed in one transaction, at most. */
const MAX_BATCH = 256;

/**
 * Two things make issuance fast enough (bench/svid): the CA state is cached
 * per tenant (every SVID reads it; it changes a few times a day), and
 * issuance records are group-committed: requests that arrive while a batch
 * is being written wait for the next one, so one transaction carries them
 * all. Each caller still waits for its own record to commit before it gets
 * its SVID.
 */
export class DrizzleCaStore implements CaStore {
  readonly #states: FeedCache<Loaded>;
  #queue: PendingIssuance[] = [];
  #draining = false;

  constructor(
    private readonly db: Db,
    feed: ChangeFeed,
  ) {
    // save() records a "bundle" change, whose NOTIFY reaches every replica.
    this.#states = new FeedCache(feed, (e) => (e.kind === BUNDLE.kind ? String(e.tenantId) : null));
  }

  #write<T>(tenantId: number, body: (w: WriteScope) => Promise<T>): Promise<T> {
    return write(this.db, callerContext.getStore() ?? SYSTEM, tenantId, body).then((r) => r.result);
  }

  load(tenantId: string): Promise<Loaded> {
    return this.#states.get(tenantId, () => this.#loadFresh(Number(tenantId)));
  }

  async #loadFresh(tid: number): Promise<Loaded> {
    // One round trip: the authority row with its slots joined on.
    const rows = await read(this.db, tid, (tx) =>
      tx
        .select()
        .from(caAuthorities)
        .leftJoin(caSlots, eq(caSlots.tenantId, caAuthorities.tenantId))
        .where(eq(caAuthorities.tenantId, tid)),
    );
    const head = rows[0]?.ca_authorities;
    if (!head) return null;
    // The order the slots were made in, as the in-memory state keeps them: the
    // bundle lists the oldest CA first. notBefore has whole seconds, so two
    // CAs made within one second need created_at (one transaction each).
    const slots = rows
      .flatMap((r) => (r.ca_slots ? [r.ca_slots] : []))
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.notBefore.getTime() - b.notBefore.getTime())
      .map(toSlot);
    return { state: { sequence: head.sequence, slots }, revision: head.revision };
  }

  async save(tenantId: string, state: CaState, expectedRevision: number | null): Promise<boolean> {
    const tid = Number(tenantId);
    try {
      return await this.#save(tid, state, expectedRevision);
    } finally {
      // Won or lost, the cached state is old now; a lost race must reload to retry.
      this.#states.delete(tenantId);
    }
  }

  #save(tid: number, state: CaState, expectedRevision: number | null): Promise<boolean> {
    return this.#write(tid, async (w) => {
      const swapped =
        expectedRevision === null
          ? await w.tx
              .insert(caAuthorities)
              .values({ tenantId: tid, sequence: state.sequence, revision: 1 })
              .onConflictDoNothing()
              .returning({ tenantId: caAuthorities.tenantId })
          : await w.tx
              .update(caAuthorities)
              .set({ sequence: state.sequence, revision: expectedRevision + 1, updatedAt: new Date() })
              .where(and(eq(caAuthorities.tenantId, tid), eq(caAuthorities.revision, expectedRevision)))
              .returning({ tenantId: caAuthorities.tenantId });
      if (swapped.length === 0) return false;
      const stored = await w.tx.select({ id: caSlots.id, status: caSlots.status }).from(caSlots).where(eq(caSlots.tenantId, tid));
      const before = new Map(stored.map((s) => [s.id, s.status as string]));
      const ids = state.slots.map((s) => s.id);
      // A safety net under the pruning rule: never delete a CA that a stored,
      // still valid SVID depends on, even if a stale state says it may go.
      const stillNeeded = and(gt(caSlots.notAfter, sql`now()`), gt(caSlots.maxIssuedNotAfter, sql`now()`));
      const pruned = await w.tx
        .delete(caSlots)
        .where(and(eq(caSlots.tenantId, tid), ids.length ? notInArray(caSlots.id, ids) : undefined, sql`NOT coalesce(${stillNeeded}, false)`))
        .returning({ id: caSlots.id });
      for (const s of state.slots) {
        if (before.has(s.id)) {
          await w.tx
            .update(caSlots)
            .set({
              status: s.status,
              // Issuances raise this concurrently (recordIssuance); a state loaded before them must not lower it.
              maxIssuedNotAfter: sql`GREATEST(${caSlots.maxIssuedNotAfter}, ${s.maxIssuedNotAfter?.toISOString() ?? null}::timestamptz)`,
            })
            .where(and(eq(caSlots.tenantId, tid), eq(caSlots.id, s.id)));
        } else {
          await w.tx.insert(caSlots).values({
            tenantId: tid,
            id: s.id,
            status: s.status,
            notBefore: s.notBefore,
            notAfter: s.notAfter,
            maxIssuedNotAfter: s.maxIssuedNotAfter,
            ...s.material,
          });
        }
      }
      for (const action of actionsOf(before, state, expectedRevision === null, pruned.length)) {
        await w.record({ tenantId: tid, ...BUNDLE, op: "upsert" }, action);
      }
      return true;
    });
  }

  recordIssuance(rec: IssuanceRecord): Promise<void> {
    const ctx = callerContext.getStore() ?? SYSTEM;
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ rec, ctx, settle: (err) => (err === undefined ? resolve() : reject(err)) });
      if (!this.#draining) {
        this.#draining = true;
        // Start on the next turn of the event loop, not now: requests already
        // received get to reach this queue first and share the transaction.
        // (PGlite runs a whole transaction as one chain of microtasks, which
        // would otherwise starve them until it ends: batches of one.)
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, MAX_BATCH);
        try {
          await this.#insert(batch);
          for (const p of batch) p.settle(undefined);
        } catch (err) {
          if (batch.length === 1) batch[0]!.settle(err);
          // One bad record (its tenant deleted meanwhile, say) must not fail the rest: each alone.
          else for (const p of batch) await this.#insert([p]).then(() => p.settle(undefined), (e: unknown) => p.settle(e ?? err));
        }
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * In one transaction: the issuance rows, each slot's max_issued_not_after,
   * the audit rows. Rows go in as one array per column through unnest(): a
   * statement whose text and parameter count do not grow with the batch,
   * where a multi-row VALUES made drizzle and the server handle 9 parameters a row.
   */
  async #insert(batch: PendingIssuance[]): Promise<void> {
    const byTenant = new Map<number, PendingIssuance[]>();
    for (const p of batch) {
      const tid = Number(p.rec.tenantId);
      byTenant.set(tid, [...(byTenant.get(tid) ?? []), p]);
    }
    const [first] = byTenant.keys();
    await write(this.db, { ...SYSTEM, requestId: "svid-batch" }, first!, async (w) => {
      for (const [tid, items] of byTenant) {
        if (tid !== first) await w.setTenant(tid);
        const col = (f: (p: PendingIssuance) => string | null) => textArray(items.map(f));
        const latest = new Map<string, Date>();
        for (const { rec } of items) if (!(latest.get(rec.slotId)! >= rec.expiresAt)) latest.set(rec.slotId, rec.expiresAt);
        // One statement: issuance rows, the slots' max_issued_not_after, and
        // the audit rows (audit only: an issuance changes no resource, so
        // nothing for watchers in the change log).
        await w.tx.execute(sql`
          WITH issued AS (
            INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at)
            SELECT ${tid}, * FROM unnest(
              ${col((p) => p.rec.slotId)}::uuid[], ${col((p) => p.rec.kind)}, ${col((p) => p.rec.identityName)},
              ${col((p) => p.rec.spiffeId)}, ${col((p) => p.rec.serial)},
              ${col((p) => p.rec.issuedAt.toISOString())}::timestamptz[], ${col((p) => p.rec.expiresAt.toISOString())}::timestamptz[])
          ), raised AS (
            UPDATE ca_slots s SET max_issued_not_after = GREATEST(s.max_issued_not_after, l.expires_at)
            FROM unnest(
              ${textArray([...latest.keys()])}::uuid[],
              ${textArray([...latest.values()].map((d) => d.toISOString()))}::timestamptz[]
            ) AS l(slot_id, expires_at)
            WHERE s.tenant_id = ${tid} AND s.id = l.slot_id
          )
          INSERT INTO audit_log (tenant_id, actor, action, resource, request_id, revision)
          SELECT ${tid}, *, ${w.revision} FROM unnest(
            ${col((p) => p.ctx.actor)}, ${col((p) => `${p.rec.kind}.issue`)},
            ${col((p) => `identity/${p.rec.identityName}`)}, ${col((p) => p.ctx.requestId)})`);
      }
    });
  }
}
