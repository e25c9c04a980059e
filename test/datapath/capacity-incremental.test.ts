/**
 * Admission counts incrementally (follower/admission.ts tryChanges: a node's
 * count is its class's shared parts plus its own, remembered between
 * writes): after any random sequence of writes its counts equal compiling
 * each node from scratch, and its refusals equal a full recount of every
 * touched node before and after.
 */
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { assignIds } from "../../api/src/compiler/allocate.ts";
import { checkCapacity, type Capacities } from "../../api/src/compiler/capacity.ts";
import { compileNode, createCompiler, type Change, type Compiler } from "../../api/src/compiler/compile.ts";
import { DATAPATH_MAPS, type MapCounts, type Snapshot, type WorkloadRow } from "../../api/src/compiler/types.ts";
import { tryChanges } from "../../api/src/follower/admission.ts";
import { Rows } from "../../api/src/follower/rows.ts";
import { edits, idChanges, NODES, platformArb } from "./arbitraries.ts";

type Edit = { change: Change; next: Snapshot };

/** Edits the compiler's own property test leaves out: new workloads (growth), a node's liveness, a new node. */
function moreEdits(snap: Snapshot, step: number): fc.Arbitrary<Edit> {
  const identity = fc.constantFrom(...snap.identities);
  return fc.oneof(
    edits(snap),
    fc.tuple(identity, fc.constantFrom(...snap.nodes.map((n) => n.name)), fc.integer({ min: 1, max: 3 })).map(([id, node, count]): Edit => {
      // Addresses of their own per step: no other edit hands out 10.5.0.0/16.
      const row: WorkloadRow = { tenantId: id.tenantId, name: `new-${step}`, identity: id.name, node, addresses: Array.from({ length: count }, (_, i) => `10.5.${step}.${i + 1}`) };
      return { change: { kind: "workload", op: "put", row }, next: { ...snap, workloads: [...snap.workloads, row] } };
    }),
    fc.constantFrom(...snap.nodes).map((old): Edit => {
      const row = { ...old, unreachable: !old.unreachable };
      return { change: { kind: "node", op: "put", row }, next: { ...snap, nodes: snap.nodes.map((n) => (n === old ? row : n)) } };
    }),
    fc.constant(null).map((): Edit => {
      const row = { name: `n${snap.nodes.length + 1}`, zone: "za" };
      return { change: { kind: "node", op: "put", row }, next: { ...snap, nodes: [...snap.nodes, row] } };
    }),
  );
}

/** Up to `left` edits in a row, each of the platform the one before left. */
function sequence(snap: Snapshot, left: number): fc.Arbitrary<Edit[]> {
  if (left === 0 || snap.workloads.length === 0) return fc.constant([]);
  return moreEdits(snap, left).chain((edit) => sequence(edit.next, left - 1).map((rest) => [edit, ...rest]));
}

const limitsArb: fc.Arbitrary<Capacities> = fc
  .array(fc.integer({ min: 0, max: 12 }), { minLength: DATAPATH_MAPS.length, maxLength: DATAPATH_MAPS.length })
  .map((caps) => Object.fromEntries(DATAPATH_MAPS.map((m, i) => [m, caps[i]!])) as Capacities);

function rowsOf(snap: Snapshot): Rows {
  const rows = new Rows();
  for (const row of snap.tenants) rows.apply({ kind: "tenant", op: "put", row });
  for (const row of snap.nodes) rows.apply({ kind: "node", op: "put", row });
  for (const [key, id] of snap.backendIds) rows.apply({ kind: "backendId", key, id });
  for (const [prefix, id] of snap.cidrIdentities) rows.apply({ kind: "cidrIdentity", prefix, id });
  for (const row of snap.identities) rows.apply({ kind: "identity", op: "put", row });
  for (const row of snap.workloads) rows.apply({ kind: "workload", op: "put", row });
  for (const row of snap.services) rows.apply({ kind: "service", op: "put", row });
  for (const row of snap.policies) rows.apply({ kind: "policy", op: "put", row });
  for (const row of snap.httpRoutes ?? []) rows.apply({ kind: "httpRoute", op: "put", row });
  for (const row of snap.trafficPolicies ?? []) rows.apply({ kind: "trafficPolicy", op: "put", row });
  return rows;
}

/**
 * The refusals of compiling every touched node from scratch, before and
 * after: the nodes of every tenant the changes name (before or after) and
 * the nodes they name; a map is refused where it is over capacity and grew.
 */
function fullRecount(before: Snapshot, after: Snapshot, changes: Change[], limits: Capacities) {
  const tenantIds = new Set<number>();
  const nodes = new Set<string>();
  for (const c of changes) {
    if (c.kind === "tenant") tenantIds.add(c.op === "put" ? c.row.id : c.id);
    else if (c.kind === "node") nodes.add(c.op === "put" ? c.row.name : c.name);
    else if (c.kind !== "backendId" && c.kind !== "cidrIdentity") tenantIds.add(c.op === "put" ? c.row.tenantId : c.tenantId);
    if (c.kind === "workload" && c.op === "put") nodes.add(c.row.node);
  }
  for (const snap of [before, after]) for (const w of snap.workloads) if (tenantIds.has(w.tenantId)) nodes.add(w.node);
  const counts = (snap: Snapshot) =>
    new Map([...nodes].filter((n) => snap.nodes.some((r) => r.name === n)).map((n) => [n, compileNode(snap, n).counts] as const));
  const was = counts(before);
  return checkCapacity(counts(after), limits).filter((p) => p.needed > (was.get(p.node)?.[p.map] ?? 0));
}

const incremental = (compiler: Compiler, node: string): MapCounts => {
  const shared = compiler.countClass(compiler.capacityClass(node));
  const local = compiler.countLocal(node);
  return Object.fromEntries(DATAPATH_MAPS.map((m) => [m, shared[m] + local[m]])) as MapCounts;
};

describe("incremental capacity counts", () => {
  it("after random writes, each node's counts equal a fresh compile, and admission refuses exactly what a full recount refuses", () => {
    const arb = platformArb.chain((snap) => fc.tuple(fc.constant(snap), sequence(snap, 5), fc.array(limitsArb, { minLength: 5, maxLength: 5 })));
    let refusalsSeen = 0;
    fc.assert(
      fc.property(arb, ([snap, steps, limitsByStep]) => {
        const compiler = createCompiler(snap);
        const rows = rowsOf(snap);
        let current = snap;
        // Counted once before any write, so that what is remembered must be dropped correctly.
        for (const node of current.nodes) expect(incremental(compiler, node.name)).toEqual(compileNode(current, node.name).counts);
        for (const [i, edit] of steps.entries()) {
          const next = assignIds({ ...edit.next, backendIds: current.backendIds, cidrIdentities: current.cidrIdentities });
          const changes = [...idChanges(current, next), edit.change];
          const limits = limitsByStep[i]!;
          const refused = tryChanges(compiler, rows, limits, changes, (err) => {
            throw err;
          });
          expect(refused).toEqual(fullRecount(current, next, changes, limits));
          refusalsSeen += refused.length;
          // The trial reverted: the counts are those before the write.
          for (const node of current.nodes) expect(incremental(compiler, node.name)).toEqual(compileNode(current, node.name).counts);
          // Committed, as the follower applies it.
          for (const c of changes) {
            compiler.apply(c);
            rows.apply(c);
          }
          current = next;
          for (const node of current.nodes) {
            const fresh = compileNode(current, node.name).counts;
            expect(incremental(compiler, node.name)).toEqual(fresh);
            expect(compiler.countNode(node.name)).toEqual(fresh);
          }
        }
      }),
      { numRuns: 200 },
    );
    // The limits are small enough that refusals are common: the comparison is not of empty lists only.
    expect(refusalsSeen).toBeGreaterThan(50);
  });

  it("a workload of a tenant on 10,000 nodes is counted without compiling, or visiting, each node", () => {
    const nodes = Array.from({ length: 10_000 }, (_, i) => ({ name: `n${i}`, zone: "za" }));
    const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const snap = assignIds({
      tenants: [{ id: 1, name: "fleet", defaultAction: "deny" }],
      identities: [{ tenantId: 1, name: "web", numericId: 256, labels: {} }],
      workloads: nodes.map((n, i) => ({ tenantId: 1, name: `w${i}`, identity: "web", node: n.name, addresses: [address(i + 1)] })),
      services: [],
      policies: [],
      nodes,
      backendIds: new Map(),
      cidrIdentities: new Map(),
    });
    const compiler = createCompiler(snap);
    const rows = rowsOf(snap);
    const limits = Object.fromEntries(DATAPATH_MAPS.map((m) => [m, 100_000])) as Capacities;
    const put = (i: number): Change => ({ kind: "workload", op: "put", row: { tenantId: 1, name: `x${i}`, identity: "web", node: "n0", addresses: [address(20_000 + i)] } });
    // The first trial counts every node once; later ones only the node the workload lands on.
    tryChanges(compiler, rows, limits, [put(0)], (err) => {
      throw err;
    });
    const built = compiler.partsBuilt;
    const countNode = vi.spyOn(compiler, "countNode");
    const countClass = vi.spyOn(compiler, "countClass");
    const countLocal = vi.spyOn(compiler, "countLocal");
    for (let i = 1; i <= 20; i++) {
      expect(tryChanges(compiler, rows, limits, [put(i)], (err) => {
        throw err;
      })).toEqual([]);
    }
    // No node is compiled; the one class is counted once after each change; the tenant's
    // 10,000-address part is not rebuilt, only the one node's own endpoint part.
    expect(countNode).not.toHaveBeenCalled();
    expect(countClass).toHaveBeenCalledTimes(20);
    // Nor is each node visited: the class's bound of its members' own counts fits, so only the node the
    // workload lands on is counted (the lock holder's work does not grow with the fleet).
    expect(countLocal.mock.calls.length).toBeLessThanOrEqual(20 * 2);
    expect(compiler.partsBuilt - built).toBeLessThanOrEqual(20 * 2);
    // A capacity one below the ipcache's new size refuses on every node of the tenant, naming each.
    const tight = { ...limits, ipcache: 10_000 };
    const refused = tryChanges(compiler, rows, tight, [put(99)], (err) => {
      throw err;
    });
    expect(refused).toHaveLength(10_000);
    expect(refused[0]).toEqual({ map: "ipcache", node: "n0", needed: 10_001, available: 10_000 });
  });
});
