// The CA's storage (ca/service.ts CaStore) on drizzle, under row-level
// security like every other tenant-owned table. Each change of CA state is one
// write() transaction, and each batch of issuances one transaction of its own
// (#insert); an issuance's record is its audit entry, so neither commits without the other.
import { randomBytes } from "node:crypto";
import { and, desc, eq, gt, notInArray, sql } from "drizzle-orm";
import type { FastifyRequest } from "fastify";
import { actorOf } from "../auth/principal.ts";
import type { AuthoritySlot } from "./authority.ts";
import type { CaState, CaStore, Caller, IssuanceRecord } from "./service.ts";
import type { Db } from "../db/client.ts";
import { APP_ROLE, TENANT_SETTING, caAuthorities, caSlots, tenants } from "../db/schema.ts";
import { read, write, type WriteScope } from "../db/transactions.ts";
import { GroupCommit } from "../db/group-commit.ts";
import type { ChangeFeed } from "../services/change-feed.ts";
import { FeedCache } from "../services/feed-cache.ts";

/**
 * The caller of a CA operation made on behalf of a request, for the audit
 * log: routes pass it explicitly to each CaService call (no ambient context:
 * AsyncLocalStorage would turn on promise hooks for every later request).
 */
export function callerOf(request: FastifyRequest): Caller {
  return {
    actor: request.principal ? actorOf(request.principal) : "anonymous",
    requestId: String(request.id),
    clientRequestId: request.clientRequestId,
  };
}

/**
 * Every tenant's active CA certificate's notAfter (the latest, should two be
 * active): the operator's CA expiry metrics. One read transaction that takes
 * each tenant in turn under row-level security, as a request of that tenant
 * would: the platform role has no policy on ca_slots (they hold the sealed
 * keys), and this read does not need one.
 */
export async function activeCaExpiries(db: Db): Promise<{ tenant: string; notAfter: Date }[]> {
  return read(db, null, async (tx) => {
    const out: { tenant: string; notAfter: Date }[] = [];
    for (const t of await tx.select({ id: tenants.id, name: tenants.name }).from(tenants)) {
      await tx.execute(sql`SELECT set_config(${TENANT_SETTING}, ${String(t.id)}, true)`);
      const [latest] = await tx
        .select({ notAfter: caSlots.notAfter })
        .from(caSlots)
        .where(and(eq(caSlots.tenantId, t.id), eq(caSlots.status, "active")))
        .orderBy(desc(caSlots.notAfter))
        .limit(1);
      if (latest) out.push({ tenant: t.name, notAfter: latest.notAfter });
    }
    return out;
  });
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
  caller: Caller;
}

/** Issuance records committed in one transaction, at most. */
const MAX_BATCH = 256;
/** Slots whose raised max_issued_not_after this process remembers; past it, the memory starts over. */
const MAX_RAISED_SLOTS = 10_000;

/**
 * Issuance records and the transactions that committed them, process-wide,
 * so bench/svid can say how large the group commits really were (each batch
 * pays a fixed cost, ~0.5 ms on PGlite, whatever its size).
 */
export const issuanceCommits = { transactions: 0, records: 0 };

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
  readonly #records: GroupCommit<PendingIssuance, void>;
  /**
   * Per tenant/slot, the highest max_issued_not_after (ms) this process has
   * committed. The column only ever rises (GREATEST, here and in save()), so
   * a batch whose leaves all expire by then needs no UPDATE of the slot: in
   * bench/svid that UPDATE of one wide row, rewritten by every batch, cost
   * more than the batch's inserts. With one-hour leaves it now runs about
   * once a second per slot, when the floored expiry moves on.
   */
  readonly #raised = new Map<string, number>();

  /** maxWaitMs: how long an issuance waits for its record to commit (WEFT_DB_POOL_WAIT, as the status reports' group commit). */
  constructor(
    private readonly db: Db,
    feed: ChangeFeed,
    maxWaitMs?: number,
  ) {
    this.#records = new GroupCommit((batch) => this.#insert(batch).then(() => batch.map(() => undefined)), MAX_BATCH, maxWaitMs);
    // save() records a "bundle" change, whose NOTIFY reaches every replica.
    this.#states = new FeedCache(feed, (e) => (e.kind === BUNDLE.kind ? String(e.tenantId) : null));
  }

  #write<T>(tenantId: number, caller: Caller, body: (w: WriteScope) => Promise<T>): Promise<T> {
    return write(this.db, { ...caller, dryRun: false }, tenantId, body).then((r) => r.result);
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

  async save(tenantId: string, state: CaState, expectedRevision: number | null, caller: Caller): Promise<boolean> {
    const tid = Number(tenantId);
    try {
      return await this.#save(tid, state, expectedRevision, caller);
    } finally {
      // Won or lost, the cached state is old now; a lost race must reload to retry.
      this.#states.delete(tenantId);
    }
  }

  #save(tid: number, state: CaState, expectedRevision: number | null, caller: Caller): Promise<boolean> {
    return this.#write(tid, caller, async (w) => {
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

  recordIssuance(rec: IssuanceRecord, caller: Caller): Promise<void> {
    return this.#records.submit({ rec, caller });
  }

  /**
   * In one transaction: the issuance rows (each its own audit entry, see
   * svidIssuances in db/schema.ts), each slot's max_issued_not_after, under the app role with row-level security bound to each
   * tenant in turn, as write() does. Sent as ONE simple-protocol query of a
   * few statements (a multi-statement query is one implicit transaction: all
   * of it commits or none): PGlite runs an extended-protocol statement at
   * about ten times the cost of one in a simple query, and a batch through
   * write() took five of them (BEGIN, role, revision, insert, COMMIT). The
   * records travel as one JSON document (json_to_recordset) in a dollar
   * quote, so nothing of theirs is ever spliced into SQL text.
   */
  async #insert(batch: PendingIssuance[]): Promise<void> {
    const byTenant = new Map<number, PendingIssuance[]>();
    for (const p of batch) {
      const tid = Number(p.rec.tenantId);
      if (!Number.isSafeInteger(tid)) throw new Error(`tenant id ${p.rec.tenantId} is not an integer`);
      const items = byTenant.get(tid);
      if (items) items.push(p);
      else byTenant.set(tid, [p]);
    }
    const statements: string[] = [];
    const raising = new Map<string, number>();
    for (const [tid, items] of byTenant) {
      for (const { rec } of items) {
        const key = `${tid}/${rec.slotId}`;
        const expires = rec.expiresAt.getTime();
        if (expires > (raising.get(key) ?? this.#raised.get(key) ?? -Infinity)) raising.set(key, expires);
      }
      const raises = items.some(({ rec }) => raising.has(`${tid}/${rec.slotId}`));
      const rows = items.map(({ rec, caller }) => ({
        slot_id: rec.slotId,
        kind: rec.kind,
        identity_name: rec.identityName,
        spiffe_id: rec.spiffeId,
        serial: rec.serial,
        issued_at: rec.issuedAt.toISOString(),
        expires_at: rec.expiresAt.toISOString(),
        actor: caller.actor,
        request_id: caller.requestId,
        client_request_id: caller.clientRequestId ?? null,
      }));
      // Role and tenant the way write() binds them (set_config ..., true = SET LOCAL).
      statements.push(`SELECT set_config('role', '${APP_ROLE}', true), set_config('${TENANT_SETTING}', '${tid}', true)`);
      // The audit revision of an issuance is the global revision it was recorded at, read, not
      // taken: an issuance changes no resource (no change_log row), and taking one would queue
      // every batch on the revision_counter row lock behind all writes (issue 20) for a number
      // nothing follows.
      statements.push(`
        WITH rev AS (
          SELECT revision FROM revision_counter WHERE id = 1
        ), r AS (
          SELECT * FROM json_to_recordset(${dollarQuote(JSON.stringify(rows))}::json) AS r(
            slot_id uuid, kind text, identity_name text, spiffe_id text, serial text,
            issued_at timestamptz, expires_at timestamptz, actor text, request_id text, client_request_id text)
        )${
          raises
            ? `, raised AS (
          UPDATE ca_slots s SET max_issued_not_after = GREATEST(s.max_issued_not_after, l.expires_at)
          FROM (SELECT slot_id, max(expires_at) AS expires_at FROM r GROUP BY slot_id) l
          WHERE s.tenant_id = ${tid} AND s.id = l.slot_id
        )`
            : ""
        }
        INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at,
                                    actor, request_id, client_request_id, revision)
        SELECT ${tid}, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at,
               actor, request_id, client_request_id, (SELECT revision FROM rev) FROM r`);
    }
    await simpleQuery(this.db, statements.join(";\n"));
    // Committed: only now may a later batch rely on these values.
    if (this.#raised.size + raising.size > MAX_RAISED_SLOTS) this.#raised.clear();
    for (const [key, expires] of raising) this.#raised.set(key, expires);
    issuanceCommits.transactions++;
    issuanceCommits.records += batch.length;
  }
}

/**
 * Runs a multi-statement query through the simple protocol, on the driver
 * under drizzle: PGlite's exec(), or node-postgres's query() without
 * parameters. Both run it as one implicit transaction.
 */
async function simpleQuery(db: Db, text: string): Promise<void> {
  const client = (db as unknown as { $client?: { exec?: (q: string) => Promise<unknown>; query?: (q: string) => Promise<unknown> } }).$client;
  if (client?.exec) await client.exec(text);
  else if (client?.query) await client.query(text);
  else throw new Error("no driver client under drizzle: cannot record issuances");
}

/** A dollar-quoted literal whose tag does not occur in the text. */
function dollarQuote(text: string): string {
  let tag = "j";
  while (text.includes(`$${tag}$`)) tag += randomBytes(4).toString("hex");
  return `$${tag}$${text}$${tag}$`;
}
