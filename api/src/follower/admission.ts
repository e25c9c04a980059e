/**
 * Write admission: a write calls catchUp inside its own transaction (it holds
 * the global revision lock, so everything before it has committed and nothing
 * else can commit), then admitWrite with the row changes it made. The changes
 * are applied to the live compiler, the touched nodes counted (per class of
 * nodes and per node's own parts, not compiled: tryChanges), and the changes
 * reverted, all synchronously, so no reader ever sees a state that was not
 * committed.
 *
 * A refusal is answered as a value; the mesh throws it as its own refusal
 * (mesh/write.ts, admissionRefusal), which the HTTP layer answers with 422.
 */
import { backendIds as backendIdsTable, cidrIdentities as cidrIdentitiesTable } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import {
  checkCapacity,
  CompileError,
  DATAPATH_MAPS,
  missingIds,
  type Capacities,
  type CapacityProblem,
  type Change,
  type Compiler,
  type IdentityRow,
  type MapCounts,
  type HttpRouteRow,
  type PolicyRow,
  type ServiceRow,
  type Snapshot,
  type TrafficPolicyRow,
  type WorkloadRow,
} from "../compiler/index.ts";
import { ROW_KINDS, type RowKind, type Rows } from "./rows.ts";

/** Why a write was refused: maps that would overflow (each map and node, needed vs available), or rows the compiler cannot hold. */
export type AdmissionRefusal = { kind: "capacity"; refusals: CapacityProblem[] } | { kind: "compile"; message: string };

/**
 * Tries `changes` on the live compiler, counts the nodes they touch, and
 * reverts. A refusal is a map that overflows and grew: a node already over a
 * lowered capacity can still shrink.
 *
 * Counting is incremental (Compiler.countClass, countLocal): a node's count
 * is its class's shared parts plus its own. The nodes a write touches are
 * those where a tenant it changes is present, before or after, and the nodes
 * it names. Of those, the ones whose own counts or class the changes alter
 * are the ones the compiler forgets while they apply (every node counted
 * first: countAllNodes): each is counted. Every other one keeps its class and
 * own counts, so a class whose shared counts plus its members' largest own
 * counts fit is cleared without visiting its nodes; a workload of a tenant on
 * 10,000 nodes costs a count of its classes, not a visit of 10,000 nodes. The
 * refusals are the same as compiling every touched node (the property test in
 * test/datapath/capacity-incremental.test.ts holds the two equal). A failed
 * revert is handed to `onRevertFailed` (the follower then reloads everything).
 */
export function tryChanges(
  compiler: Compiler,
  rows: Rows,
  limits: Capacities,
  changes: Change[],
  onRevertFailed: (err: unknown) => void,
): CapacityProblem[] {
  const tenantIds = new Set<number>();
  const named = new Set<string>();
  for (const c of changes) {
    if (c.kind === "tenant") tenantIds.add(c.op === "put" ? c.row.id : c.id);
    else if (c.kind === "node") named.add(c.op === "put" ? c.row.name : c.name);
    else if (c.kind !== "backendId" && c.kind !== "cidrIdentity") tenantIds.add(c.op === "put" ? c.row.tenantId : c.tenantId);
    // A workload moving to a node where its tenant had nothing yet: that node's "before" is counted too.
    if (c.kind === "workload" && c.op === "put") named.add(c.row.node);
  }
  // The node a workload leaves may hold its tenant no more: it is touched all the same.
  for (const c of changes) {
    if (c.kind !== "workload") continue;
    const old = rows.get("workload", c.op === "put" ? c.row.tenantId : c.tenantId, c.op === "put" ? c.row.name : c.name) as WorkloadRow | undefined;
    if (old !== undefined) named.add(old.node);
  }
  compiler.countAllNodes();
  const undo: Change[] = [];
  let over = new Map<string, MapCounts>();
  let reverted = true;
  try {
    for (const c of changes) {
      const inverse = rows.inverse(c);
      compiler.apply(c);
      rows.apply(c);
      undo.push(inverse);
    }
    over = overCapacity(compiler, rows, tenantIds, named, limits);
  } finally {
    try {
      for (const c of undo.reverse()) {
        compiler.apply(c);
        rows.apply(c);
      }
    } catch (err) {
      reverted = false;
      onRevertFailed(err);
    }
  }
  // What the nodes held before is not known now: every overflow is refused.
  if (!reverted) return checkCapacity(over, limits);
  // The counts before, reverted, for the few nodes over capacity: only a map that grew is refused.
  const classBefore = classCounter(compiler);
  const before = new Map([...over.keys()].filter((n) => rows.nodes.has(n)).map((n) => [n, sum(classBefore(n), compiler.countLocal(n))] as const));
  return checkCapacity(over, limits).filter((p) => p.needed > (before.get(p.node)?.[p.map] ?? 0));
}

/**
 * Each touched node's counts (class + own) where some map is over capacity,
 * with the changes applied: the nodes the changes altered one by one (those
 * `named`, and those where a tenant of `tenantIds` is present), then every
 * class where a tenant of `tenantIds` is present, node by node only when the
 * class's bound does not fit.
 */
function overCapacity(compiler: Compiler, rows: Rows, tenantIds: ReadonlySet<number>, named: ReadonlySet<string>, limits: Capacities): Map<string, MapCounts> {
  const classOf = classCounter(compiler);
  const over = new Map<string, MapCounts>();
  const check = (node: string): void => {
    const shared = classOf(node);
    const local = compiler.countLocal(node);
    if (DATAPATH_MAPS.some((m) => shared[m] + local[m] > limits[m])) over.set(node, sum(shared, local));
  };
  const present = (node: string): boolean => (JSON.parse(compiler.capacityClass(node)) as number[]).slice(1).some((t) => tenantIds.has(t));
  // Every node was counted before the changes: the uncounted ones are those they may have altered.
  for (const node of [...compiler.uncountedNodes()]) if (rows.nodes.has(node) && (named.has(node) || present(node))) check(node);
  for (const node of named) if (rows.nodes.has(node)) check(node);
  for (const c of [...compiler.classesWith(tenantIds)]) {
    const shared = classOf.byClass(c.capacityClass);
    if (!DATAPATH_MAPS.some((m) => shared[m] + c.bound[m] > limits[m])) continue;
    for (const node of c.members) if (rows.nodes.has(node)) check(node);
    compiler.exactBound(c.capacityClass);
  }
  return over;
}

/** The counts of a node's class (or of a class by its key), each class counted once: make another after the compiler changes. */
function classCounter(compiler: Compiler): ((node: string) => MapCounts) & { byClass(capacityClass: string): MapCounts } {
  const classes = new Map<string, MapCounts>();
  const byClass = (key: string): MapCounts => {
    let shared = classes.get(key);
    if (shared === undefined) classes.set(key, (shared = compiler.countClass(key)));
    return shared;
  };
  return Object.assign((node: string) => byClass(compiler.capacityClass(node)), { byClass });
}

function sum(a: MapCounts, b: MapCounts): MapCounts {
  const out = {} as MapCounts;
  for (const m of DATAPATH_MAPS) out[m] = a[m] + b[m];
  return out;
}

/**
 * Admission for a write, inside its transaction after it changed its rows:
 * allocates the backend and CIDR ids the changed rows need (in the same
 * transaction, so a refused or dry-run write keeps none), then refuses if
 * any touched node's map would overflow. Compile errors (limits of the id
 * schemes, too many backends) are refusals too. `trial` is tryChanges on the
 * live compiler.
 */
export async function admitWrite(
  w: WriteScope,
  rows: Rows,
  changes: Change[],
  trial: (changes: Change[]) => CapacityProblem[],
): Promise<AdmissionRefusal | null> {
  const tenantIds = changes.flatMap((c) =>
    c.kind === "tenant" ? [c.op === "put" ? c.row.id : c.id] : "tenantId" in c ? [c.tenantId] : "row" in c && "tenantId" in c.row ? [c.row.tenantId] : [],
  );
  // Workloads need ids only as service backends: without services, 10,000 of them need not be copied or indexed again.
  const services = changes.some((c) => c.kind === "service" && c.op === "put") || tenantIds.some((id) => (rows.byTenant.get(id)?.service.size ?? 0) > 0);
  const merged = mergeInto(rows.snapshotOf(tenantIds, services), changes);
  let missing;
  try {
    missing = missingIds(merged.services.length === 0 ? { ...merged, workloads: [] } : merged);
  } catch (err) {
    return compileRefusal(err);
  }
  const idChanges: Change[] = [];
  if (missing.backends.length > 0) {
    const inserted = await w.tx
      .insert(backendIdsTable)
      .values(missing.backends.map((endpoint) => ({ endpoint })))
      .onConflictDoNothing()
      .returning();
    for (const r of inserted) idChanges.push({ kind: "backendId", key: r.endpoint, id: r.id });
  }
  if (missing.cidrs.length > 0) {
    const inserted = await w.tx
      .insert(cidrIdentitiesTable)
      .values(missing.cidrs.map((cidr) => ({ cidr })))
      .onConflictDoNothing()
      .returning();
    for (const r of inserted) idChanges.push({ kind: "cidrIdentity", prefix: r.cidr, id: r.numericId });
  }
  let refusals: CapacityProblem[];
  try {
    refusals = trial([...idChanges, ...changes]);
  } catch (err) {
    return compileRefusal(err);
  }
  return refusals.length > 0 ? { kind: "capacity", refusals } : null;
}

/** A compile error is a refusal; anything else is a fault and is thrown on. */
function compileRefusal(err: unknown): AdmissionRefusal {
  if (err instanceof CompileError) return { kind: "compile", message: err.message };
  throw err;
}

/** The per-tenant snapshot with the write's row changes applied. */
function mergeInto(s: Snapshot, changes: Change[]): Snapshot {
  const lists = {
    identity: [...s.identities],
    workload: [...s.workloads],
    service: [...s.services],
    policy: [...s.policies],
    httpRoute: [...(s.httpRoutes ?? [])],
    trafficPolicy: [...(s.trafficPolicies ?? [])],
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
    httpRoutes: lists.httpRoute as HttpRouteRow[],
    trafficPolicies: lists.trafficPolicy as TrafficPolicyRow[],
  };
}
