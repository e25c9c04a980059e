/**
 * The change-log follower: one long-lived compiler per API process, fed from
 * the change log; it serves each node's desired state, deltas and long polls
 * (history.ts) and checks writes against node map capacities before they
 * commit (admission.ts).
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
 * Serving many pollers (bench/fanout: one write wakes 1,000 held polls; the
 * scale goal: 10,000 nodes over 3 replicas): an agent's unchanged poll reads
 * no database. The change feed tells this replica the newest committed
 * revision (its own commits at once, other replicas' through NOTIFY), so
 * settle() pulls only when the feed (or a client's `since`) names a revision
 * past the applied one; a periodic head check bounds how late a lost
 * notification is noticed (SAFETY_PULL_MS). What remains: a write committed
 * on another replica is unknown here until its NOTIFY arrives (milliseconds;
 * at most SAFETY_PULL_MS if lost), so a poll arriving in that window waits
 * and is woken by it rather than answered at once. Reads that answer a change
 * or a plain read (refresh()) still check the head, so an operator reading
 * after a write on another replica sees it. After a pull, the reached tracked
 * nodes are compiled in slices that yield to the event loop (history.ts).
 */
import { and, asc, eq, gt, inArray, lt, sql } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "../db/client.ts";
import { platformRead, withPlatformRead } from "../db/platform-read.ts";
import {
  backendIds as backendIdsTable,
  changeLog,
  changeLogHorizon,
  cidrIdentities as cidrIdentitiesTable,
  httpRoutes,
  identities,
  nodes as nodesTable,
  policies,
  revisionCounter,
  services,
  tenants,
  trafficPolicies,
  workloadHealth,
  workloads,
} from "../db/schema.ts";
import type { Tx, WriteScope } from "../db/transactions.ts";
import {
  capacities,
  CompileError,
  createCompiler,
  type Capacities,
  type CapacityProblem,
  type Change,
  type Compiler,
  type L7Config,
  type Snapshot,
} from "../compiler/index.ts";
import { NODE_KIND } from "../auth/node-credentials.ts";
import type { ChangeEvent, ChangeFeed } from "../services/change-feed.ts";
import { admitWrite, tryChanges, type AdmissionRefusal } from "./admission.ts";
import type { TransportDocument } from "../mesh/specs.ts";
import { buildTransportDocument } from "../mesh/transport.ts";
import { proxyHopsOf } from "./proxy-hops.ts";
import { caRootsOf } from "./ca-roots.ts";
import { federatingTenants, jwtKeysOf } from "./jwt-keys.ts";
import { NodeHistory, type NodeDelta, type NodeState } from "./history.ts";
import { httpRouteRowOf, identityRowOf, nodeRowOf, policyRowOf, ROW_KINDS, Rows, serviceRowOf, tenantRowOf, trafficPolicyRowOf, workloadRowOf } from "./rows.ts";
import { transportRowsOf } from "./transport-rows.ts";

export type { NodeDelta, NodeState } from "./history.ts";

/**
 * The interface the node routes use (routes/nodes, routes/datapath). The
 * synchronous reads answer from memory, as of the last applied pull: a route
 * calls refresh() once, then reads; a poll woken by waitForChange reads at
 * once, since the pull that woke it is already applied.
 */
export interface DatapathReader {
  /** Resolves once what was committed before the call is applied (one pull, shared by concurrent callers). */
  refresh(): Promise<void>;
  /**
   * Resolves once every revision the change feed has announced, and
   * `atLeast` (a revision a client saw, perhaps on another replica), is
   * applied; reads the database only when one of them is past the applied
   * revision.
   */
  settle(atLeast?: number): Promise<void>;
  /** The node's newest applied state; null if the node is unknown. */
  state(node: string): NodeState | null;
  /** Delta from the node's state at `since` to its newest; "gone" if `since` is older than the retained history. */
  delta(node: string, since: number): NodeDelta | "gone" | null;
  /** refresh() then state(). */
  current(node: string): Promise<NodeState | null>;
  /**
   * current() without keeping the node's history when nobody polls it: for
   * the registration answer, so that registering 10,000 nodes does not
   * compile each of them again after every later write. Its revision is the
   * applied one, as state() answers for a node it starts tracking.
   */
  glance(node: string): Promise<NodeState | null>;
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
  /**
   * The node's L7 document from the rows in memory at the applied revision
   * (compiler/l7.ts), reading no database: settle() or refresh() first.
   * Null: unknown node or no pod block.
   */
  l7Document(node: string): L7Config | null;
  /**
   * The node's transport document (mesh/transport.ts) from its compiled
   * steer entries and the rows in memory at the applied revision, reading no
   * database: settle() or refresh() first. Null: unknown node.
   */
  transportDocument(node: string): TransportDocument | null;
}

/** What one pull read: the changes past the last revision, with their rows as they are now. */
interface Pulled {
  /** Every revision up to here is in it. */
  head: number;
  /** The lowest revision with a change in it (head + 1 when none). */
  first: number;
  changes: Change[];
  /** Node rows the log names (registered, re-registered, deleted): announced again once applied. */
  nodeEvents?: ChangeEvent[];
  /** The transport endpoints of the nodes read (every node on a full load); null: none, or the node is gone. */
  endpoints: Map<string, string | null>;
  full?: Snapshot;
}

/** The order a pull applies row deletes in: a row that names others before the rows it names, the tenant last. */
const PULL_DELETE_ORDER: Record<string, number> = { trafficPolicy: 0, httpRoute: 0, policy: 0, service: 1, workload: 2, identity: 3, tenant: 4 };

/** Change-log kinds that change a tenant's JWT keys: its CA's bundle (ca/store.ts), its federations. */
const JWT_KEY_KINDS = new Set(["bundle", "federation"]);

/** The node columns the compiler reads, and the transport endpoint the transport documents name. */
const NODE_COLUMNS = {
  name: nodesTable.name,
  zone: nodesTable.zone,
  unreachableSince: nodesTable.unreachableSince,
  podCidr: nodesTable.podCidr,
  transportEndpoint: nodesTable.transportEndpoint,
};

/** How often the newest revision is read even without a notification: the bound on a lost NOTIFY. */
const SAFETY_PULL_MS = 5000;

export class Follower implements DatapathReader {
  private rows = new Rows();
  /** Replaced by start()'s full load. */
  private compiler: Compiler = createCompiler(this.rows.snapshotOf([]));
  private revision = 0;
  /** The newest revision the change feed has announced. */
  private announced = 0;
  private maxBackendId = 0;
  private maxCidrId = 0;
  private readonly history: NodeHistory;
  private running = false;
  private pending: (() => void)[] = [];
  private reloadNeeded = false;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private poller: NodeJS.Timeout | undefined;
  readonly limits: Capacities;

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly log: FastifyBaseLogger,
    opts: {
      capacity?: Partial<Capacities> | undefined;
      history?: number | undefined;
      /** Seconds each node's compile took (the metrics' compile durations). */
      onCompiled?: ((seconds: number) => void) | undefined;
    } = {},
  ) {
    this.limits = capacities(opts.capacity ?? {});
    const onCompiled = opts.onCompiled;
    this.history = new NodeHistory(
      {
        appliedRevision: () => this.revision,
        hasNode: (node) => this.rows.nodes.has(node),
        compileNode: (node) => {
          const started = performance.now();
          try {
            return this.compiler.compileNode(node);
          } finally {
            onCompiled?.((performance.now() - started) / 1000);
          }
        },
      },
      log,
      opts.history ?? 64,
    );
  }

  async start(): Promise<void> {
    this.applyPulled(await platformRead(this.db, (tx) => this.pullAll(tx)));
    this.unsubscribe = this.feed.subscribe((event) => {
      if (event.revision > this.announced) this.announced = event.revision;
      if (event.revision > this.revision) void this.refresh();
    });
    // Polls trust the feed; should the LISTEN connection drop a notification,
    // this bounds how late they learn of a change (one statement per period).
    this.poller = setInterval(() => void this.refresh(), SAFETY_PULL_MS);
    this.poller.unref();
  }

  /** Ends every held long poll (answering "unchanged") and stops following the feed. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.poller);
    this.unsubscribe?.();
    this.history.stop();
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

  settle(atLeast = 0): Promise<void> {
    if (this.stopped || (!this.reloadNeeded && Math.max(this.announced, atLeast) <= this.revision)) return Promise.resolve();
    return this.refresh();
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
    // Every revision below the write's own has committed (it holds the revision lock): when they are all applied
    // already (the pull after the previous commit got there first), there is nothing to read, under the lock.
    if (!this.reloadNeeded && this.revision >= w.revision - 1) return;
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
    const keys = await jwtKeysOf(tx);
    const roots = await caRootsOf(tx);
    const ids = await tx.select().from(identities);
    const ws = await tx.select().from(workloads);
    const sick = new Set((await tx.select().from(workloadHealth).where(eq(workloadHealth.healthy, false))).map((h) => `${h.tenantId}/${h.name}`));
    const ss = await tx.select().from(services);
    const ps = await tx.select().from(policies);
    const hs = await tx.select().from(httpRoutes);
    const tps = await tx.select().from(trafficPolicies);
    const ns = await tx.select(NODE_COLUMNS).from(nodesTable);
    const bs = await tx.select().from(backendIdsTable);
    const cs = await tx.select().from(cidrIdentitiesTable);
    const head = counter?.revision ?? 0;
    return {
      head,
      first: head + 1,
      changes: [],
      endpoints: new Map(ns.map((n) => [n.name, n.transportEndpoint])),
      full: {
        tenants: ts.map((t) => tenantRowOf(t, keys.get(t.id), roots.get(t.id))),
        identities: ids.map(identityRowOf),
        workloads: ws.map((w) => workloadRowOf(w, sick.has(`${w.tenantId}/${w.name}`) ? false : null)),
        services: ss.map(serviceRowOf),
        policies: ps.map(policyRowOf),
        httpRoutes: hs.map(httpRouteRowOf),
        trafficPolicies: tps.map(trafficPolicyRowOf),
        nodes: ns.map(nodeRowOf),
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
    // The horizon rides along with the changes (one statement fewer: a write's catch-up runs under the revision lock),
    // and is read alone only when there are none.
    const prunedThrough = sql<number>`coalesce((SELECT ${changeLogHorizon.prunedThrough} FROM ${changeLogHorizon}), 0)`.mapWith(Number);
    const logged = await tx
      .select({ prunedThrough, revision: changeLog.revision, tenantId: changeLog.tenantId, kind: changeLog.kind, name: changeLog.name, op: changeLog.op })
      .from(changeLog)
      .where(and(gt(changeLog.revision, from), lt(changeLog.revision, head + 1)))
      .orderBy(asc(changeLog.revision), asc(changeLog.id));
    // Retention (db/log-retention.ts) raises the horizon before deleting at or below it, so this
    // snapshot either still holds every change past `from` or shows the horizon above it.
    const horizon = logged[0]?.prunedThrough ?? (await tx.select({ prunedThrough: changeLogHorizon.prunedThrough }).from(changeLogHorizon))[0]?.prunedThrough ?? 0;
    if (from < horizon) {
      this.log.warn({ applied: from, prunedThrough: horizon }, "datapath: the change log was pruned past this replica's revision; reloading everything");
      return this.pullAll(tx);
    }
    // The last change of each resource decides the order its current row is applied in.
    const latest = new Map<string, ChangeEvent>();
    for (const logEvent of logged) {
      // A CA rotation (bundle) or a federation changes the tenant's JWT keys, which the tenant's row carries.
      const e = JWT_KEY_KINDS.has(logEvent.kind) ? { ...logEvent, kind: "tenant" } : logEvent;
      if (e.kind !== "tenant" && !(ROW_KINDS as readonly string[]).includes(e.kind)) continue;
      const key = e.kind === "tenant" ? `tenant/${e.tenantId}` : `${e.kind}/${e.tenantId}/${e.name}`;
      latest.delete(key);
      latest.set(key, e);
    }
    // A tenant's CA or federations also change the keys of the tenants that federate with it by name.
    const keyChanged = new Set(logged.filter((e) => JWT_KEY_KINDS.has(e.kind)).map((e) => e.tenantId));
    for (const tenantId of await federatingTenants(tx, [...keyChanged])) {
      const key = `tenant/${tenantId}`;
      if (!latest.has(key)) latest.set(key, { revision: head, tenantId, kind: "tenant", name: "", op: "upsert" });
    }
    const puts: Change[] = [];
    const deletes: { order: number; change: Change }[] = [];
    for (const e of latest.values()) {
      const change = await this.reload(tx, e.kind, e.tenantId, e.name);
      if (change.op === "put") puts.push(change);
      else deletes.push({ order: PULL_DELETE_ORDER[e.kind] ?? 9, change });
    }
    // Only what the log names is read again: a pull per request must not cost a scan of 1,000 nodes.
    // Nodes are logged by name; ids are allocated only by writes that log the rows needing them.
    const nodeEvents = logged.filter((e) => e.kind === NODE_KIND);
    const nodeNames = new Set(nodeEvents.map((e) => e.name));
    const read = nodeNames.size === 0 ? [] : await tx.select(NODE_COLUMNS).from(nodesTable).where(inArray(nodesTable.name, [...nodeNames]));
    const ns = read.map(nodeRowOf);
    const endpoints = new Map<string, string | null>([...nodeNames].map((name) => [name, null]));
    for (const n of read) endpoints.set(n.name, n.transportEndpoint);
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
      if (!had || had.zone !== n.zone || had.unreachable !== n.unreachable || had.podCidr !== n.podCidr) changes.push({ kind: "node", op: "put", row: n });
    }
    for (const name of nodeNames) if (!found.has(name) && this.rows.nodes.has(name)) changes.push({ kind: "node", op: "delete", name });
    changes.push(...deletes.sort((a, b) => a.order - b.order).map((d) => d.change), ...puts);
    return { head, first: logged[0]?.revision ?? head + 1, changes, nodeEvents, endpoints };
  }

  private async reload(tx: Tx, kind: string, tenantId: number, name: string): Promise<Exclude<Change, { kind: "backendId" | "cidrIdentity" }>> {
    switch (kind) {
      case "tenant": {
        const [r] = await tx.select().from(tenants).where(eq(tenants.id, tenantId));
        if (!r) return { kind: "tenant", op: "delete", id: tenantId };
        const keys = await jwtKeysOf(tx, [r.id]);
        const roots = await caRootsOf(tx, [r.id]);
        return { kind: "tenant", op: "put", row: tenantRowOf(r, keys.get(r.id), roots.get(r.id)) };
      }
      case "identity": {
        const [r] = await tx.select().from(identities).where(and(eq(identities.tenantId, tenantId), eq(identities.name, name)));
        return r ? { kind, op: "put", row: identityRowOf(r) } : { kind, op: "delete", tenantId, name };
      }
      case "workload": {
        const [r] = await tx
          .select({ w: workloads, healthy: workloadHealth.healthy })
          .from(workloads)
          .leftJoin(workloadHealth, and(eq(workloadHealth.tenantId, workloads.tenantId), eq(workloadHealth.name, workloads.name)))
          .where(and(eq(workloads.tenantId, tenantId), eq(workloads.name, name)));
        return r ? { kind, op: "put", row: workloadRowOf(r.w, r.healthy) } : { kind, op: "delete", tenantId, name };
      }
      case "service": {
        const [r] = await tx.select().from(services).where(and(eq(services.tenantId, tenantId), eq(services.name, name)));
        return r ? { kind, op: "put", row: serviceRowOf(r) } : { kind, op: "delete", tenantId, name };
      }
      case "httpRoute": {
        const [r] = await tx.select().from(httpRoutes).where(and(eq(httpRoutes.tenantId, tenantId), eq(httpRoutes.name, name)));
        return r ? { kind, op: "put", row: httpRouteRowOf(r) } : { kind, op: "delete", tenantId, name };
      }
      case "trafficPolicy": {
        const [r] = await tx.select().from(trafficPolicies).where(and(eq(trafficPolicies.tenantId, tenantId), eq(trafficPolicies.name, name)));
        return r ? { kind, op: "put", row: trafficPolicyRowOf(r) } : { kind, op: "delete", tenantId, name };
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
      this.compiler = createCompiler({ ...f, identities: [], workloads: [], services: [], policies: [], httpRoutes: [], trafficPolicies: [] });
      this.rows = new Rows();
      for (const row of f.tenants) this.rows.apply({ kind: "tenant", op: "put", row });
      for (const row of f.nodes) this.rows.apply({ kind: "node", op: "put", row });
      for (const [key, id] of f.backendIds) this.rows.apply({ kind: "backendId", key, id });
      for (const [prefix, id] of f.cidrIdentities) this.rows.apply({ kind: "cidrIdentity", prefix, id });
      // Row by row: rows written past the API's checks (by hand, or before them) must not keep the API
      // from starting; the compiler refuses them, the log names them, the rest is served.
      const lists = { identity: f.identities, workload: f.workloads, service: f.services, policy: f.policies, httpRoute: f.httpRoutes ?? [], trafficPolicy: f.trafficPolicies ?? [] };
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
    // Read with the rows, applied with them: no document sees an endpoint ahead of (or behind) its revision.
    for (const [node, endpoint] of p.endpoints) this.rows.setTransportEndpoint(node, endpoint);
    this.revision = p.head;
    if (p.head > this.announced) this.announced = p.head;
    this.history.recordLater(nodes, first);
    // Caches keyed by node (node credentials) learn of these from NOTIFY too, unless it was lost: say it again.
    if (p.nodeEvents !== undefined && p.nodeEvents.length > 0) this.feed.publish(p.nodeEvents);
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
          // Its proxy address goes into the ipcache of every node hosting a tenant with routes (compile.ts).
          if (c.row.podCidr !== undefined) for (const t of this.rows.tenantsWithRoutes()) tenantIds.add(t);
          break;
        case "tenant":
          tenantIds.add(c.op === "put" ? c.row.id : c.id);
          break;
        default:
          tenantIds.add(c.op === "put" ? c.row.tenantId : c.tenantId);
      }
    }
    // Only tracked nodes are compiled again (history.recordLater): when fewer are tracked than host the
    // tenants (registering 10,000 nodes, none polling yet), each tracked node is asked instead.
    const addPresent = () => {
      const tracked = this.history.trackedNodes;
      let hosting = 0;
      for (const t of tenantIds) hosting += this.rows.nodeCount(t);
      if (tracked.size < hosting) {
        for (const n of tracked.keys()) if ([...tenantIds].some((t) => this.rows.hosts(t, n))) nodes.add(n);
      } else for (const t of tenantIds) for (const n of this.rows.nodesOf(t)) nodes.add(n);
    };
    addPresent();
    return () => {
      addPresent();
      return nodes;
    };
  }

  // ---- reading (history.ts) ---------------------------------------------

  state(node: string): NodeState | null {
    return this.history.state(node);
  }

  delta(node: string, since: number): NodeDelta | "gone" | null {
    return this.history.delta(node, since);
  }


  async current(node: string): Promise<NodeState | null> {
    await this.refresh();
    return this.state(node);
  }

  async glance(node: string): Promise<NodeState | null> {
    await this.refresh();
    if (this.history.tracks(node)) return this.history.state(node);
    // As state() would answer for a node it starts tracking: compiled at the applied revision.
    return this.rows.nodes.has(node) ? { revision: this.revision, datapath: this.compiler.compileNode(node) } : null;
  }

  l7Document(node: string): L7Config | null {
    return this.compiler.l7Document(node);
  }

  transportDocument(node: string): TransportDocument | null {
    const state = this.history.state(node);
    if (state === null) return null;
    const { steer } = state.datapath.maps;
    const proxy = proxyHopsOf(this.compiler.l7Document(node), this.compiler.proxyInboundHops(node));
    const tenants = new Set((proxy?.inbound ?? []).flatMap((hop) => this.rows.tenantOf(hop.localIdentity) ?? []));
    if (proxy !== undefined && proxy.targets.length > 0) {
      const named = new Set(proxy.tenants);
      for (const [id, t] of this.rows.tenants) if (named.has(t.name)) tenants.add(id);
    }
    const { rows, bundles } = transportRowsOf(this.rows, node, steer, tenants);
    return buildTransportDocument(steer, rows, bundles, proxy);
  }

  async since(node: string, since: number): Promise<NodeDelta | "gone" | null> {
    await this.refresh();
    return this.delta(node, since);
  }

  /** Long polls held by this replica now. */
  get heldLongPolls(): number {
    return this.history.held;
  }

  waitForChange(node: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.history.waitForChange(node, afterRevision, timeoutMs, signal);
  }

  // ---- admission (admission.ts) -----------------------------------------

  /** Capacity admission: what tryChanges refuses for `changes` on the live compiler. */
  async admit(changes: Change[]): Promise<CapacityProblem[]> {
    return this.tryChanges(changes);
  }

  private tryChanges(changes: Change[]): CapacityProblem[] {
    return tryChanges(this.compiler, this.rows, this.limits, changes, (err) => {
      this.log.error({ err }, "datapath: reverting an admission trial failed; reloading everything");
      this.reloadNeeded = true;
      void this.refresh();
    });
  }

  /** Admission for a write, inside its transaction after it changed its rows (admission.ts); null: admitted. */
  admitWrite(w: WriteScope, changes: Change[]): Promise<AdmissionRefusal | null> {
    return admitWrite(w, this.rows, changes, (all) => this.tryChanges(all));
  }
}

/** Math.max without spreading 100k arguments onto the stack. */
function maxOf(values: Iterable<number>): number {
  let max = 0;
  for (const v of values) if (v > max) max = v;
  return max;
}
