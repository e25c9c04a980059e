/**
 * Properties over random platforms: the compiled maps, read back through the
 * codec and evaluated the way the tc program looks them up, agree with the
 * policy semantics a user writes down; compiles are deterministic; the memo
 * and the deltas agree with compiling from scratch.
 */
import { constants } from "@weft/codec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { assignIds } from "../../api/src/compiler/allocate.ts";
import { compileNode, createCompiler } from "../../api/src/compiler/compile.ts";
import { applyDelta, diff, PartDiffs } from "../../api/src/compiler/diff.ts";
import { createEvaluator } from "./evaluate.ts";
import type { Snapshot } from "../../api/src/compiler/types.ts";
import { encodeFull } from "../../api/src/routes/datapath/answers.ts";
import { canonical, intended, throughCodec } from "./support.ts";
import { EXTERNAL, edits, idChanges, NODES, platformArb, PORTS } from "./arbitraries.ts";

const RUNS = { numRuns: 150 };

describe("compiled policy, evaluated on codec-decoded entries", () => {
  it("denies what a deny covers, allows what only an allow covers, never joins tenants", () => {
    fc.assert(
      fc.property(platformArb, (snap) => {
        for (const node of NODES) {
          const decide = createEvaluator(throughCodec(compileNode(snap, node).maps));
          const present = new Set(snap.workloads.filter((w) => w.node === node).map((w) => w.tenantId));
          // Peers the node can name: workloads of tenants present on it, and outside addresses.
          const peers = [...snap.workloads.filter((w) => present.has(w.tenantId)).map((w) => w.addresses[0]!), ...EXTERNAL.filter((a) => !snap.workloads.some((w) => w.addresses.includes(a)))];
          for (const w of snap.workloads.filter((x) => x.node === node)) {
            for (const remote of peers) {
              for (const port of PORTS) {
                for (const protocol of [6, 17]) {
                  for (const direction of ["ingress", "egress"] as const) {
                    const got = decide({ local: w.addresses[0]!, remote, port, protocol, direction });
                    const want = intended(snap, w, remote, port, protocol, direction);
                    if (got.verdict !== want) throw new Error(`${node} ${w.name} ${direction} ${remote}:${port}/${protocol}: got ${got.reason}, want ${want}`);
                  }
                }
              }
            }
          }
        }
      }),
      RUNS,
    );
  });

  it("no policy entry names an identity of another tenant", () => {
    fc.assert(
      fc.property(platformArb, (snap) => {
        const tenantOf = new Map(snap.identities.map((i) => [i.numericId, i.tenantId]));
        const outside = new Set([0, 2, constants.IDENTITY_PROXY!, ...snap.cidrIdentities.values()]);
        for (const node of NODES) {
          for (const e of compileNode(snap, node).maps.policy) {
            const remote = e.key.remoteIdentity;
            expect(outside.has(remote) || tenantOf.get(remote) === tenantOf.get(e.key.localIdentity)).toBe(true);
          }
        }
      }),
      RUNS,
    );
  });
});

const shuffled = <T>(list: readonly T[], seed: number): T[] =>
  list
    .map((x, i) => ({ x, k: (i * 2654435761 + seed * 40503) % 4294967291 }))
    .sort((a, b) => a.k - b.k)
    .map(({ x }) => x);

describe("determinism", () => {
  it("the same rows in any order give the same hash and entries", () => {
    fc.assert(
      fc.property(platformArb, fc.integer({ min: 1, max: 1000 }), (snap, seed) => {
        const mixed: Snapshot = {
          ...snap,
          tenants: shuffled(snap.tenants, seed),
          identities: shuffled(snap.identities, seed),
          workloads: shuffled(snap.workloads, seed),
          policies: shuffled(snap.policies, seed),
          services: shuffled(snap.services, seed).map((s) => ({
            ...s,
            ports: shuffled(s.ports, seed + 1),
            backends: "explicit" in s.backends ? { explicit: shuffled(s.backends.explicit, seed + 2) } : s.backends,
          })),
          nodes: shuffled(snap.nodes, seed),
        };
        for (const node of NODES) {
          const a = compileNode(snap, node);
          const b = compileNode(mixed, node);
          expect(b.hash).toBe(a.hash);
          expect(b.maps).toEqual(a.maps);
        }
      }),
      RUNS,
    );
  });
});

describe("incremental compile and deltas", () => {
  it("the memo after a random edit equals a fresh compile (maps and L7 document), and the delta turns the old maps into the new", () => {
    const twoEdits = platformArb.chain((snap) =>
      edits(snap).chain((first) => edits(first.next).map((second) => [snap, first, second] as const)),
    );
    fc.assert(
      fc.property(twoEdits, ([snap, first, second]) => {
        const compiler = createCompiler(snap);
        // One memo for every node and edit, as the service keeps it: shared parts are compared once.
        const memo = new PartDiffs();
        let current = snap;
        const prev = new Map(NODES.map((n) => [n, compiler.compileNode(n)]));
        for (const edit of [first, second]) {
          // Ids for keys the edit introduced, allocated after the ones already handed out.
          const next = assignIds({ ...edit.next, backendIds: current.backendIds, cidrIdentities: current.cidrIdentities });
          compiler.apply([...idChanges(current, next), edit.change]);
          current = next;
          for (const node of NODES) {
            const incremental = compiler.compileNode(node);
            const fresh = compileNode(next, node);
            expect(incremental.hash).toBe(fresh.hash);
            expect(canonical(incremental.maps)).toEqual(canonical(fresh.maps));
            const before = prev.get(node)!;
            const delta = diff(before, incremental);
            expect(canonical(applyDelta(before.maps, delta))).toEqual(canonical(fresh.maps));
            expect(diff(before, incremental, memo)).toEqual(delta);
            expect(compiler.l7Document(node)).toEqual(createCompiler(next).l7Document(node));
            prev.set(node, incremental);
          }
        }
      }),
      RUNS,
    );
  });
});

describe("datapath answer bodies", () => {
  it("a full state assembled from per-part fragments is byte for byte the JSON of the state", () => {
    fc.assert(
      fc.property(platformArb, fc.nat({ max: 1_000_000 }), (snap, revision) => {
        for (const node of NODES) {
          const datapath = compileNode(snap, node);
          const assembled = encodeFull({ revision, datapath }).toString();
          expect(assembled).toBe(JSON.stringify({ revision, hash: datapath.hash, maps: datapath.maps }));
        }
      }),
      RUNS,
    );
  });
});
