/**
 * The datapath service: one long-lived compiler per API process, fed from the
 * change log, serving each node's desired state, deltas and long polls, and
 * checking writes against node map capacities before they commit.
 *
 * Following the log: every change-feed event (own commits at once, other
 * replicas' through NOTIFY) triggers a pull that reads the change log past the
 * last applied revision and reloads the rows it names, in one repeatable-read
 * transaction with platform reads on. A pull reads the newest rows, not the
 * rows as of each revision, so several revisions collapse into one step; the
 * history records that (`unsureFrom`) so `since` never answers a delta from a
 * state it did not see. After a pull, only the tracked nodes its changes can
 * reach are compiled again (nodesReached).
 *
 * Serving many pollers (bench/fanout: one write wakes 1,000 held polls): a
 * request refreshes once and then reads from memory; a woken poll reads at
 * once, since the pull that woke it is applied; a refresh that finds the
 * revision unchanged costs one statement. Each delta is computed once per
 * (base, newest) state and shared, and its part comparisons are shared
 * between nodes (PartDiffs): the encoded bodies are shared the same way by
 * routes/datapath/answers.ts.
 *
 * Admission: a write calls catchUp inside its own transaction (it holds the
 * global revision lock, so everything before it has committed and nothing
 * else can commit), then admitWrite with the row changes it made. The changes
 * are applied to the live compiler, the touched nodes compiled and counted,
 * and the changes reverted, all synchronously, so no reader ever sees a
 * state that was not committed.
 */
import { and, asc, eq, gt, inArray, lt, sql } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "../db/client.ts";
import {
  backendIds as backendIdsTable,
  changeLog,
  cidrIdentities as cidrIdentitiesTable,
  identities,
  nodes as nodesTable,
  policies,
  revisionCounter,
  services,
  tenants,
  workloads,
} from "../db/schema.ts";
import type { Tx, WriteScope } from "../db/transactions.ts";
import { APP_ROLE, PLATFORM_ROLE } from "../db/schema.ts";
import {
  capacities,
  checkCapacity,
  CompileError,
  createCompiler,
  diff,
  missingIds,
  PartDiffs,
  type Capacities,
  type CapacityProblem,
  type Change,
  type Compiler,
  type DatapathDelta,
  type IdentityRow,
  type NodeDatapath,
  type NodeRow,
  type PolicyRow,
  type PolicyRule,
  type ServiceRow,
  type Snapshot,
  type TenantRow,
  type WorkloadRow,
} from "../compiler/index.ts";
import { NODE_KIND } from "../auth/node-credentials.ts";
import { HttpProblem } from "../http/problem.ts";
import type { ChangeFeed } from "./change-feed.ts";

export type { Change as CompilerChange, CapacityProblem as CapacityRefusal } from "../compiler/index.ts";

/** A node's desired state as this replica last applied it. */
export interface NodeState {
  /** The revision this state was first seen at. */
  revision: number;
  datapath: NodeDatapath;
}

/** A delta to a node's newest state; one object per (base, newest) pair, shared by every poller asking for it. */
export interface NodeDelta {
  revision: number;
  hash: string;
  delta: DatapathDelta;
}

/**
 * The interface the node routes use (routes/nodes, routes/datapath). The
 * synchronous reads answer from memory, as of the last applied pull: a route
 * calls refresh() once, then reads; a poll woken by waitForChange reads at
 * once, since the pull that woke it is already applied.
 */
export interface DatapathReader {
  /** Resolves once what was committed before the call is applied (one pull, shared by concurrent callers). */
  refresh(): Promise<void>;
  /** The node's newest applied state; null if the node is unknown. */
  state(node: string): NodeState | null;
  /** Delta from the node's state at `since` to its newest; "gone" if `since` is older than the retained history. */
  delta(node: string, since: number): NodeDelta | "gone" | null;
  /** refresh() then state(). */
  current(node: string): Promise<NodeState | null>;
  /** refresh() then delta(). */
  since(node: string, since: number): Promise<NodeDelta | "gone" | null>;
  /**
   * Resolves true when something for this node changed after
   * `afterRevision`, false on timeout or abort. Reads no database: call it
   * after refresh() (or current/since).
   */
  waitForChange(node: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** Capacity admission: refusals [{map, node, needed, available}] if the snapshot changed by `changes` were compiled. */
  admit(changes: Change[]): Promise<CapacityProblem[]>;
}

const ROW_KINDS = ["identity", "workload", "service", "policy"] as const;
type RowKind = (typeof ROW_KINDS)[number];

/** The datapath-relevant rows, mirrored beside the compiler: for inverses, per-tenant snapshots and node presence. */
class Rows {
  readonly tenants = new Map<number, TenantRow>();
  readonly byTenant = new Map<number, Record<RowKind, Map<string, unknown>>>();
  readonly nodes = new Map<string, NodeRow>();
  readonly backendIds = new Map<string, number>();
  readonly cidrIdentities = new Map<string, number>();

  private of(tenantId: number): Record<RowKind, Map<string, unknown>> {
    let t = this.byTenant.get(tenantId);
    if (t === undefined) {
      t = { identity: new Map(), workload: new Map(), service: new Map(), policy: new Map() };
      this.byTenant.set(tenantId, t);
    }
    return t;
  }

  get(kind: RowKind, tenantId: number, name: string): unknown {
    return this.byTenant.get(tenantId)?.[kind].get(name);
  }

  apply(c: Change): void {
    switch (c.kind) {
      case "tenant":
        if (c.op === "put") this.tenants.set(c.row.id, c.row);
        else {
          this.tenants.delete(c.id);
          this.byTenant.delete(c.id);
        }
        return;
      case "node":
        if (c.op === "put") this.nodes.set(c.row.name, c.row);
        else this.nodes.delete(c.name);
        return;
      case "backendId":
        if (c.id === undefined) this.backendIds.delete(c.key);
        else this.backendIds.set(c.key, c.id);
        return;
      case "cidrIdentity":
        if (c.id === undefined) this.cidrIdentities.delete(c.prefix);
        else this.cidrIdentities.set(c.prefix, c.id);
        return;
      default:
        if (c.op === "delete") this.byTenant.get(c.tenantId)?.[c.kind].delete(c.name);
        else this.of(c.row.tenantId)[c.kind].set(c.row.name, c.row);
    }
  }

  /** The change that undoes `c`, read before `c` is applied. */
  inverse(c: Change): Change {
    switch (c.kind) {
      case "tenant": {
        if (c.op === "delete") throw new Error("a tenant delete cannot be tried and reverted");
        const old = this.tenants.get(c.row.id);
        return old ? { kind: "tenant", op: "put", row: old } : { kind: "tenant", op: "delete", id: c.row.id };
      }
      case "node": {
        const name = c.op === "put" ? c.row.name : c.name;
        const old = this.nodes.get(name);
        return old ? { kind: "node", op: "put", row: old } : { kind: "node", op: "delete", name };
      }
      case "backendId":
        return { kind: "backendId", key: c.key, id: this.backendIds.get(c.key) };
      case "cidrIdentity":
        return { kind: "cidrIdentity", prefix: c.prefix, id: this.cidrIdentities.get(c.prefix) };
      default: {
        const tenantId = c.op === "put" ? c.row.tenantId : c.tenantId;
        const name = c.op === "put" ? c.row.name : c.name;
        const old = this.get(c.kind, tenantId, name);
        if (old === undefined) return { kind: c.kind, op: "delete", tenantId, name };
        return { kind: c.kind, op: "put", row: old } as Change;
      }
    }
  }

  /** Nodes where a tenant has a workload. */
  nodesOf(tenantId: number): Set<string> {
    const out = new Set<string>();
    for (const w of this.byTenant.get(tenantId)?.workload.values() ?? []) out.add((w as WorkloadRow).node);
    return out;
  }

  /** A snapshot of some tenants only: backends and CIDRs resolve within one tenant, so their missing ids do too. */
  snapshotOf(tenantIds: Iterable<number>): Snapshot {
    const ts = [...new Set(tenantIds)].flatMap((id) => {
      const row = this.tenants.get(id);
      return row ? [{ row, rows: this.byTenant.get(id) }] : [];
    });
    const all = <T>(kind: RowKind) => ts.flatMap((t) => [...(t.rows?.[kind].values() ?? [])]) as T[];
    return {
      tenants: ts.map((t) => t.row),
      identities: all<IdentityRow>("identity"),
      workloads: all<WorkloadRow>("workload"),
      services: all<ServiceRow>("service"),
      policies: all<PolicyRow>("policy"),
      nodes: [...this.nodes.values()],
      backendIds: this.backendIds,
      cidrIdentities: this.cidrIdentities,
    };
  }
}

// Row conversions: database rows to the compiler's plain rows.
type TenantDb = typeof tenants.$inferSelect;
type IdentityDb = typeof identities.$inferSelect;
type WorkloadDb = typeof workloads.$inferSelect;
type ServiceDb = typeof services.$inferSelect;
type PolicyDb = typeof policies.$inferSelect;

export const tenantRowOf = (r: TenantDb): TenantRow => ({ id: r.id, name: r.name, defaultAction: r.defaultAction });
export const identityRowOf = (r: IdentityDb): IdentityRow => ({
  tenantId: r.tenantId,
  name: r.name,
  numericId: r.securityIdentity,
  labels: r.selectors,
});
export const workloadRowOf = (r: WorkloadDb): WorkloadRow => ({
  tenantId: r.tenantId,
  name: r.name,
  identity: r.identity,
  node: r.node,
  addresses: r.addresses,
  ...(r.interface === null ? {} : { interface: r.interface }),
});
export const serviceRowOf = (r: ServiceDb): ServiceRow => ({
  id: r.id,
  tenantId: r.tenantId,
  name: r.name,
  vip: r.vip,
  ports: r.ports as ServiceRow["ports"],
  backends: r.backends as ServiceRow["backends"],
  loadBalancing: r.loadBalancing,
  preferSameZone: r.preferSameZone,
});
/** The API lets a rule leave out peers or ports (meaning any); the compiler wants them as empty lists. */
const rulesOf = (rules: unknown): PolicyRule[] =>
  (rules as Partial<PolicyRule>[]).map((r) => ({ peers: r.peers ?? [], ports: r.ports ?? [], action: r.action! }));

export const policyRowOf = (r: PolicyDb): PolicyRow => ({
  id: r.id,
  tenantId: r.tenantId,
  name: r.name,
  subject: r.subject as PolicyRow["subject"],
  ...(r.ingress === null ? {} : { ingress: rulesOf(r.ingress) }),
  ...(r.egress === null ? {} : { egress: rulesOf(r.egress) }),
});

/**
 * Runs `fn` as the read-only platform role, then returns to the app role:
 * inside a write transaction, the rest of the write stays tenant-bound.
 */
export async function withPlatformRead<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
  // The read-only platform role sees every tenant's rows (migrations/0008);
  // back to the app role, tenant setting untouched, before the write goes on.
  await tx.execute(sql`SELECT set_config('role', ${PLATFORM_ROLE}, true)`);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    // An error may have aborted the transaction, which then takes no more
    // statements: the role dies with it, and the first error is the one to tell.
    await tx.execute(sql`SELECT set_config('role', ${APP_ROLE}, true)`).catch(() => undefined);
    throw err;
  }
  await tx.execute(sql`SELECT set_config('role', ${APP_ROLE}, true)`);
  return result;
}

/** A read transaction as the platform role over every tenant's rows, on one consistent snapshot. */
async function platformRead<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(
    async (tx) => {
      await tx.execute(sql`SELECT set_config('role', ${PLATFORM_ROLE}, true)`);
      return fn(tx);
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}

/** What one pull read: the changes past the last revision, with their rows as they are now. */
interface Pulled {
  /** Every revision up to here is in it. */
  head: number;
  /** The lowest revision with a change in it (head + 1 when none). */
  first: number;
  changes: Change[];
  full?: Snapshot;
}

interface HistoryEntry {
  /** The revision this state was seen at; the one clients are given. */
  revision: number;
  /** The state may have changed at any revision from here to `revision` (a collapsed pull). */
  unsureFrom: number;
  datapath: NodeDatapath;
  /** Deltas to this state by base revision, while it is the newest: computed once, shared by every poll. */
  deltas?: Map<number, NodeDelta>;
}

interface Waiter {
  after: number;
  done(changed: boolean): void;
}

const DELETE_ORDER: Record<string, number> = { policy: 0, service: 1, workload: 2, identity: 3, tenant: 4 };

export class DatapathService implements DatapathReader {
  private rows = new Rows();
  /** Replaced by start()'s full load. */
  private compiler: Compiler = createCompiler(this.rows.snapshotOf([]));
  private revision = 0;
  private maxBackendId = 0;
  private maxCidrId = 0;
  /** Nodes someone asked about: compiled after every pull, with their recent states. */
  private readonly tracked = new Map<string, HistoryEntry[]>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Part comparisons shared between nodes: one changed part that 1,000 nodes hold is compared once. */
  private readonly partDiffs = new PartDiffs();
  private running = false;
  private pending: (() => void)[] = [];
  private reloadNeeded = false;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private poller: NodeJS.Timeout | undefined;
  private readonly historySize: number;
  readonly limits: Capacities;

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly log: FastifyBaseLogger,
    opts: { capacity?: Partial<Capacities> | undefined; history?: number | undefined } = {},
  ) {
    this.limits = capacities(opts.capacity ?? {});
    this.historySize = opts.history ?? 64;
  }

  async start(): Promise<void> {
    this.applyPulled(await platformRead(this.db, (tx) => this.pullAll(tx)));
    this.unsubscribe = this.feed.subscribe((event) => {
      if (event.revision > this.revision) void this.refresh();
    });
    // Held long polls depend on NOTIFY; should the LISTEN connection drop a
    // notification, this bounds how late they learn of a change.
    this.poller = setInterval(() => {
      if (this.waiters.size > 0) void this.refresh();
    }, 5000);
    this.poller.unref();
  }

  /** Ends every held long poll (answering "unchanged") and stops following the feed. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.poller);
    this.unsubscribe?.();
    for (const set of this.waiters.values()) for (const w of set) w.done(false);
    this.waiters.clear();
  }

  /** The newest revision this replica has applied. */
  get appliedRevision(): number {
    return this.revision;
  }

  // ---- following the log ------------------------------------------------

  /**
   * Resolves once a pull that started after the call has been applied: what
   * was committed before the call is then visible. Callers waiting together
   * share one pull; a steady stream of other replicas' writes never keeps a
   * caller waiting for more than the pull after its own call.
   */
  refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.pending.push(resolve);
      this.pump();
    });
  }

  private pump(): void {
    if (this.running) return;
    this.running = true;
    void (async () => {
      while (this.pending.length > 0 && !this.stopped) {
        const batch = this.pending;
        this.pending = [];
        try {
          // A change that does not apply asks for a full reload: one more round, at once.
          for (let round = 0; round < 2; round++) {
            const full = this.reloadNeeded;
            // Most refreshes (every request calls one) find nothing new: one statement says so.
            if (!full && (await this.headRevision()) <= this.revision) break;
            const pulled = await platformRead(this.db, (tx) => (full ? this.pullAll(tx) : this.pull(tx)));
            if (this.applyPulled(pulled)) break;
          }
        } catch (err) {
          // The next event or request retries; a long poll meanwhile waits on.
          this.log.error({ err }, "datapath: following the change log failed");
        }
        for (const resolve of batch) resolve();
      }
      this.running = false;
      for (const resolve of this.pending.splice(0)) resolve();
    })();
  }

  /**
   * Brings the compiler up to the revision before `w`'s, from inside `w`'s
   * transaction. Call it before the write changes any row: the pull must
   * read only committed state.
   */
  async catchUp(w: WriteScope): Promise<void> {
    // A change that does not apply asks for a full reload: at most one more round.
    for (let round = 0; round < 2; round++) {
      const pulled = await withPlatformRead(w.tx, () => (this.reloadNeeded ? this.pullAll(w.tx) : this.pull(w.tx, w.revision)));
      // The counter read inside the write is the write's own, uncommitted revision.
      if (pulled.full) pulled.head = Math.min(pulled.head, w.revision - 1);
      if (this.applyPulled(pulled)) return;
    }
    throw new Error("datapath: cannot follow the change log (see the log)");
  }

  /** The newest committed revision. */
  private async headRevision(): Promise<number> {
    const [counter] = await this.db.select({ revision: revisionCounter.revision }).from(revisionCounter);
    return counter?.revision ?? 0;
  }

  private async pullAll(tx: Tx): Promise<Pulled> {
    const [counter] = await tx.select({ revision: revisionCounter.revision }).from(revisionCounter);
    // One after another: a transaction is one connection, and pg refuses overlapping queries on it.
    const ts = await tx.select().from(tenants);
    const ids = await tx.select().from(identities);
    const ws = await tx.select().from(workloads);
    const ss = await tx.select().from(services);
    const ps = await tx.select().from(policies);
    const ns = await tx.select({ name: nodesTable.name, zone: nodesTable.zone }).from(nodesTable);
    const bs = await tx.select().from(backendIdsTable);
    const cs = await tx.select().from(cidrIdentitiesTable);
    const head = counter?.revision ?? 0;
    return {
      head,
      first: head + 1,
      changes: [],
      full: {
        tenants: ts.map(tenantRowOf),
        identities: ids.map(identityRowOf),
        workloads: ws.map(workloadRowOf),
        services: ss.map(serviceRowOf),
        policies: ps.map(policyRowOf),
        nodes: ns,
        backendIds: new Map(bs.map((b) => [b.endpoint, b.id])),
        cidrIdentities: new Map(cs.map((c) => [c.cidr, c.numericId])),
      },
    };
  }

  /** The changes past this.revision (below `before` when given), with the rows they name as they are now. */
  private async pull(tx: Tx, before?: number): Promise<Pulled> {
    const from = this.revision;
    let head: number;
    if (before === undefined) {
      const [counter] = await tx.select({ revision: revisionCounter.revision }).from(revisionCounter);
      head = counter?.revision ?? 0;
    } else head = before - 1;
    const logged = await tx
      .select({ revision: changeLog.revision, tenantId: changeLog.tenantId, kind: changeLog.kind, name: changeLog.name })
      .from(changeLog)
      .where(and(gt(changeLog.revision, from), lt(changeLog.revision, head + 1)))
      .orderBy(asc(changeLog.revision), asc(changeLog.id));
    // The last change of each resource decides the order its current row is applied in.
    const latest = new Map<string, { revision: number; tenantId: number; kind: string; name: string }>();
    for (const e of logged) {
      if (e.kind !== "tenant" && !(ROW_KINDS as readonly string[]).includes(e.kind)) continue;
      const key = `${e.kind}/${e.tenantId}/${e.name}`;
      latest.delete(key);
      latest.set(key, e);
    }
    const puts: Change[] = [];
    const deletes: { order: number; change: Change }[] = [];
    for (const e of latest.values()) {
      const change = await this.reload(tx, e.kind, e.tenantId, e.name);
      if (change.op === "put") puts.push(change);
      else deletes.push({ order: DELETE_ORDER[e.kind] ?? 9, change });
    }
    // Only what the log names is read again: a pull per request must not cost a scan of 1,000 nodes.
    // Nodes are logged by name; ids are allocated only by writes that log the rows needing them.
    const nodeNames = new Set(logged.filter((e) => e.kind === NODE_KIND).map((e) => e.name));
    const ns =
      nodeNames.size === 0
        ? []
        : await tx.select({ name: nodesTable.name, zone: nodesTable.zone }).from(nodesTable).where(inArray(nodesTable.name, [...nodeNames]));
    const rowsChanged = latest.size > 0;
    const bs = rowsChanged ? await tx.select().from(backendIdsTable).where(gt(backendIdsTable.id, this.maxBackendId)) : [];
    const cs = rowsChanged ? await tx.select().from(cidrIdentitiesTable).where(gt(cidrIdentitiesTable.numericId, this.maxCidrId)) : [];
    const changes: Change[] = [];
    // Ids first (rows need them), node changes, then deletes (they free addresses and VIPs), then puts in log order.
    for (const b of bs) changes.push({ kind: "backendId", key: b.endpoint, id: b.id });
    for (const c of cs) changes.push({ kind: "cidrIdentity", prefix: c.cidr, id: c.numericId });
    const found = new Set(ns.map((n) => n.name));
    for (const n of ns) {
      const had = this.rows.nodes.get(n.name);
      if (!had || had.zone !== n.zone) changes.push({ kind: "node", op: "put", row: n });
    }
    for (const name of nodeNames) if (!found.has(name) && this.rows.nodes.has(name)) changes.push({ kind: "node", op: "delete", name });
    changes.push(...deletes.sort((a, b) => a.order - b.order).map((d) => d.change), ...puts);
    return { head, first: logged[0]?.revision ?? head + 1, changes };
  }

  private async reload(tx: Tx, kind: string, tenantId: number, name: string): Promise<Exclude<Change, { kind: "backendId" | "cidrIdentity" }>> {
    switch (kind) {
      case "tenant": {
        const [r] = await tx.select().from(tenants).where(eq(tenants.id, tenantId));
        return r ? { kind: "tenant", op: "put", row: tenantRowOf(r) } : { kind: "tenant", op: "delete", id: tenantId };
      }
      case "identity": {
        const [r] = await tx.select().from(identities).where(and(eq(identities.tenantId, tenantId), eq(identities.name, name)));
        return r ? { kind, op: "put", row: identityRowOf(r) } : { kind, op: "delete", tenantId, name };
      }
      case "workload": {
        const [r] = await tx.select().from(workloads).where(and(eq(workloads.tenantId, tenantId), eq(workloads.name, name)));
        return r ? { kind, op: "put", row: workloadRowOf(r) } : { kind, op: "delete", tenantId, name };
      }
      case "service": {
        const [r] = await tx.select().from(services).where(and(eq(services.tenantId, tenantId), eq(services.name, name)));
        return r ? { kind, op: "put", row: serviceRowOf(r) } : { kind, op: "delete", tenantId, name };
      }
      default: {
        const [r] = await tx.select().from(policies).where(and(eq(policies.tenantId, tenantId), eq(policies.name, name)));
        return r ? { kind: "policy", op: "put", row: policyRowOf(r) } : { kind: "policy", op: "delete", tenantId, name };
      }
    }
  }

  /** Synchronous: no request ever sees a half-applied pull. A pull older than what is applied is dropped. */
  private applyPulled(p: Pulled): boolean {
    if (p.head < this.revision || (p.head === this.revision && !p.full)) return true;
    let first = p.first;
    /** The nodes to compile again; null: every tracked node. */
    let nodes: Set<string> | null = null;
    if (p.full) {
      const f = p.full;
      this.compiler = createCompiler({ ...f, identities: [], workloads: [], services: [], policies: [] });
      this.rows = new Rows();
      for (const row of f.tenants) this.rows.apply({ kind: "tenant", op: "put", row });
      for (const row of f.nodes) this.rows.apply({ kind: "node", op: "put", row });
      for (const [key, id] of f.backendIds) this.rows.apply({ kind: "backendId", key, id });
      for (const [prefix, id] of f.cidrIdentities) this.rows.apply({ kind: "cidrIdentity", prefix, id });
      // Row by row: rows written past the API's checks (by hand, or before them) must not keep the API
      // from starting; the compiler refuses them, the log names them, the rest is served.
      const lists = { identity: f.identities, workload: f.workloads, service: f.services, policy: f.policies };
      for (const kind of ROW_KINDS) {
        for (const row of lists[kind]) {
          const change = { kind, op: "put", row } as Change;
          try {
            this.compiler.apply(change);
            this.rows.apply(change);
          } catch (err) {
            if (!(err instanceof CompileError)) throw err;
            this.log.warn({ err, kind, tenantId: row.tenantId, name: row.name }, "datapath: a stored row does not compile; left out");
          }
        }
      }
      this.maxBackendId = maxOf(p.full.backendIds.values());
      this.maxCidrId = maxOf(p.full.cidrIdentities.values());
      this.reloadNeeded = false;
      // Anything since the last applied revision may have changed.
      first = this.revision + 1;
    } else {
      const reached = this.nodesReached(p.changes);
      for (const c of p.changes) {
        if (c.kind === "backendId" && this.rows.backendIds.get(c.key) === c.id) continue;
        if (c.kind === "cidrIdentity" && this.rows.cidrIdentities.get(c.prefix) === c.id) continue;
        try {
          this.compiler.apply(c);
          this.rows.apply(c);
        } catch (err) {
          // The database refused what the compiler refuses, so this is a bug or a race: rebuild from scratch.
          this.log.error({ err, change: c.kind }, "datapath: a committed change did not apply; reloading everything");
          this.reloadNeeded = true;
          return false;
        }
        if (c.kind === "backendId" && c.id !== undefined) this.maxBackendId = Math.max(this.maxBackendId, c.id);
        if (c.kind === "cidrIdentity" && c.id !== undefined) this.maxCidrId = Math.max(this.maxCidrId, c.id);
      }
      nodes = reached();
    }
    this.revision = p.head;
    for (const node of [...this.tracked.keys()]) if (nodes === null || nodes.has(node)) this.record(node, first);
    return true;
  }

  /**
   * The nodes whose datapath `changes` can alter, read before they apply;
   * the answer, called once they have, is null for "any node". A tenant's
   * rows reach only the nodes where it has a workload, before or after (the
   * compiler gives a node nothing of a tenant absent from it); a new node
   * reaches itself. New ids and changed or deleted nodes may reach anything
   * (service tables follow zones across nodes): every tracked node is
   * compiled then, and compiling one that did not change costs only time.
   */
  private nodesReached(changes: readonly Change[]): () => Set<string> | null {
    const tenantIds = new Set<number>();
    const nodes = new Set<string>();
    for (const c of changes) {
      switch (c.kind) {
        case "backendId":
          if (this.rows.backendIds.get(c.key) !== c.id) return () => null;
          break;
        case "cidrIdentity":
          if (this.rows.cidrIdentities.get(c.prefix) !== c.id) return () => null;
          break;
        case "node":
          if (c.op === "delete" || this.rows.nodes.has(c.row.name)) return () => null;
          nodes.add(c.row.name);
          break;
        case "tenant":
          tenantIds.add(c.op === "put" ? c.row.id : c.id);
          break;
        default:
          tenantIds.add(c.op === "put" ? c.row.tenantId : c.tenantId);
      }
    }
    const addPresent = () => {
      for (const t of tenantIds) for (const n of this.rows.nodesOf(t)) nodes.add(n);
    };
    addPresent();
    return () => {
      addPresent();
      return nodes;
    };
  }

  /** Compiles a tracked node at this.revision; appends a history entry and wakes waiters if it changed. */
  private record(node: string, unsureFrom: number): void {
    const history = this.tracked.get(node)!;
    let datapath: NodeDatapath | null = null;
    try {
      datapath = this.rows.nodes.has(node) ? this.compiler.compileNode(node) : null;
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      this.log.error({ err, node }, "datapath: node does not compile");
    }
    const last = history[history.length - 1];
    if (datapath === null) {
      // Gone (deleted): its polls answer now, and find it missing.
      this.tracked.delete(node);
      this.wake(node, Number.MAX_SAFE_INTEGER);
      return;
    }
    if (last?.datapath.hash === datapath.hash) return;
    if (last) delete last.deltas;
    history.push({ revision: this.revision, unsureFrom: Math.min(unsureFrom, this.revision), datapath });
    if (history.length > this.historySize) history.splice(0, history.length - this.historySize);
    this.wake(node, this.revision);
  }

  private wake(node: string, revision: number): void {
    for (const w of this.waiters.get(node) ?? []) if (revision > w.after) w.done(true);
  }

  private track(node: string): HistoryEntry[] | null {
    let history = this.tracked.get(node);
    if (history) return history;
    if (!this.rows.nodes.has(node)) return null;
    const datapath = this.compiler.compileNode(node);
    history = [{ revision: this.revision, unsureFrom: this.revision, datapath }];
    this.tracked.set(node, history);
    return history;
  }

  // ---- reading ----------------------------------------------------------

  state(node: string): NodeState | null {
    const last = this.track(node)?.at(-1);
    return last ? { revision: last.revision, datapath: last.datapath } : null;
  }

  delta(node: string, since: number): NodeDelta | "gone" | null {
    const history = this.track(node);
    if (!history) return null;
    const latest = history[history.length - 1]!;
    let base: HistoryEntry | undefined;
    for (let i = history.length - 1; i >= 0; i--) {
      const e = history[i]!;
      if (since >= e.revision) {
        base = e;
        break;
      }
      // Inside a collapsed pull: the state at `since` was never seen here.
      if (since >= e.unsureFrom) return "gone";
    }
    // Newer than this replica has applied: the client saw a state this replica cannot name.
    if (!base || since > this.revision) return "gone";
    latest.deltas ??= new Map();
    let answer = latest.deltas.get(base.revision);
    if (answer === undefined) {
      answer = { revision: latest.revision, hash: latest.datapath.hash, delta: diff(base.datapath, latest.datapath, this.partDiffs) };
      latest.deltas.set(base.revision, answer);
    }
    return answer;
  }

  async current(node: string): Promise<NodeState | null> {
    await this.refresh();
    return this.state(node);
  }

  async since(node: string, since: number): Promise<NodeDelta | "gone" | null> {
    await this.refresh();
    return this.delta(node, since);
  }

  async waitForChange(node: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.stopped || signal?.aborted) return false;
    const history = this.track(node);
    if (!history || history[history.length - 1]!.revision > afterRevision) return true;
    return new Promise<boolean>((resolve) => {
      const set = this.waiters.get(node) ?? new Set<Waiter>();
      this.waiters.set(node, set);
      const waiter: Waiter = {
        after: afterRevision,
        done: (changed) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          set.delete(waiter);
          if (set.size === 0 && this.waiters.get(node) === set) this.waiters.delete(node);
          resolve(changed);
        },
      };
      const onAbort = () => waiter.done(false);
      const timer = setTimeout(() => waiter.done(false), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      set.add(waiter);
    });
  }

  // ---- admission --------------------------------------------------------

  /**
   * Tries `changes` on the live compiler, compiles the nodes they touch,
   * and reverts. A refusal is a map that overflows and grew: a node already
   * over a lowered capacity can still shrink.
   */
  async admit(changes: Change[]): Promise<CapacityProblem[]> {
    return this.tryChanges(changes);
  }

  private tryChanges(changes: Change[]): CapacityProblem[] {
    const tenantIds = new Set<number>();
    const nodes = new Set<string>();
    for (const c of changes) {
      if (c.kind === "tenant") tenantIds.add(c.op === "put" ? c.row.id : c.id);
      else if (c.kind === "node") nodes.add(c.op === "put" ? c.row.name : c.name);
      else if (c.kind !== "backendId" && c.kind !== "cidrIdentity") tenantIds.add(c.op === "put" ? c.row.tenantId : c.tenantId);
      // A workload moving to a node where its tenant had nothing yet: that node's "before" is counted too.
      if (c.kind === "workload" && c.op === "put") nodes.add(c.row.node);
    }
    const touched = (): void => {
      for (const t of tenantIds) for (const n of this.rows.nodesOf(t)) nodes.add(n);
    };
    const countsOf = () =>
      new Map([...nodes].filter((n) => this.rows.nodes.has(n)).map((n) => [n, this.compiler.countNode(n)] as const));
    touched();
    const before = countsOf();
    const undo: Change[] = [];
    try {
      for (const c of changes) {
        const inverse = this.rows.inverse(c);
        this.compiler.apply(c);
        this.rows.apply(c);
        undo.push(inverse);
      }
      touched();
      const after = countsOf();
      return checkCapacity(after, this.limits).filter((p) => p.needed > (before.get(p.node)?.[p.map] ?? 0));
    } finally {
      try {
        for (const c of undo.reverse()) {
          this.compiler.apply(c);
          this.rows.apply(c);
        }
      } catch (err) {
        this.log.error({ err }, "datapath: reverting an admission trial failed; reloading everything");
        this.reloadNeeded = true;
        void this.refresh();
      }
    }
  }

  /**
   * Admission for a write, inside its transaction after it changed its rows:
   * allocates the backend and CIDR ids the changed rows need (in the same
   * transaction, so a refused or dry-run write keeps none), then refuses with
   * 422 if any touched node's map would overflow. Compile errors (limits of
   * the id schemes, too many backends) are 422 too.
   */
  async admitWrite(w: WriteScope, changes: Change[]): Promise<void> {
    const tenantIds = changes.flatMap((c) =>
      c.kind === "tenant" ? [c.op === "put" ? c.row.id : c.id] : "tenantId" in c ? [c.tenantId] : "row" in c && "tenantId" in c.row ? [c.row.tenantId] : [],
    );
    const merged = mergeInto(this.rows.snapshotOf(tenantIds), changes);
    let missing;
    try {
      missing = missingIds(merged);
    } catch (err) {
      throw compileProblem(err);
    }
    const idChanges: Change[] = [];
    if (missing.backends.length > 0) {
      const rows = await w.tx
        .insert(backendIdsTable)
        .values(missing.backends.map((endpoint) => ({ endpoint })))
        .onConflictDoNothing()
        .returning();
      for (const r of rows) idChanges.push({ kind: "backendId", key: r.endpoint, id: r.id });
    }
    if (missing.cidrs.length > 0) {
      const rows = await w.tx
        .insert(cidrIdentitiesTable)
        .values(missing.cidrs.map((cidr) => ({ cidr })))
        .onConflictDoNothing()
        .returning();
      for (const r of rows) idChanges.push({ kind: "cidrIdentity", prefix: r.cidr, id: r.numericId });
    }
    let refusals: CapacityProblem[];
    try {
      refusals = this.tryChanges([...idChanges, ...changes]);
    } catch (err) {
      throw compileProblem(err);
    }
    if (refusals.length > 0) throw capacityProblem(refusals);
  }
}

/** The per-tenant snapshot with the write's row changes applied. */
function mergeInto(s: Snapshot, changes: Change[]): Snapshot {
  const lists = {
    identity: [...s.identities],
    workload: [...s.workloads],
    service: [...s.services],
    policy: [...s.policies],
  } as Record<RowKind, { tenantId: number; name: string }[]>;
  let tenantRows = [...s.tenants];
  for (const c of changes) {
    if (c.kind === "tenant") {
      const id = c.op === "put" ? c.row.id : c.id;
      tenantRows = tenantRows.filter((t) => t.id !== id);
      if (c.op === "put") tenantRows.push(c.row);
      continue;
    }
    if (!(ROW_KINDS as readonly string[]).includes(c.kind)) continue;
    const rc = c as Extract<Change, { kind: RowKind }>;
    const tenantId = rc.op === "put" ? rc.row.tenantId : rc.tenantId;
    const name = rc.op === "put" ? rc.row.name : rc.name;
    lists[rc.kind] = lists[rc.kind].filter((r) => r.tenantId !== tenantId || r.name !== name);
    if (rc.op === "put") lists[rc.kind].push(rc.row);
  }
  return {
    ...s,
    tenants: tenantRows,
    identities: lists.identity as IdentityRow[],
    workloads: lists.workload as WorkloadRow[],
    services: lists.service as ServiceRow[],
    policies: lists.policy as PolicyRow[],
  };
}

function compileProblem(err: unknown): unknown {
  if (err instanceof CompileError) return new HttpProblem(422, `the datapath cannot hold this: ${err.message}`);
  return err;
}

/** 422 naming each map and node, needed vs available. */
export function capacityProblem(refusals: CapacityProblem[]): HttpProblem {
  return new HttpProblem(
    422,
    `refused: ${refusals.map((r) => `node ${r.node} map ${r.map}`).join(", ")} would overflow`,
    refusals.map((r) => ({
      field: `maps.${r.map}`,
      message: `node ${r.node}: needs ${r.needed} entries, has room for ${r.available}`,
    })),
  );
}

/** Math.max without spreading 100k arguments onto the stack. */
function maxOf(values: Iterable<number>): number {
  let max = 0;
  for (const v of values) if (v > max) max = v;
  return max;
}
