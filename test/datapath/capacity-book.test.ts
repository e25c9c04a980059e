/**
 * The compiler's capacity book (compiler/capacity-book.ts): a class's bound is
 * at least every member's own counts (raised as members are counted, kept when
 * one is forgotten, exact again on request), and what is forgotten after
 * every node was counted is what is uncounted.
 */
import { describe, expect, it } from "vitest";
import { CapacityBook } from "../../api/src/compiler/capacity-book.ts";
import { DATAPATH_MAPS, type MapCounts } from "../../api/src/compiler/types.ts";

const counts = (over: Partial<MapCounts>): MapCounts => ({ ...(Object.fromEntries(DATAPATH_MAPS.map((m) => [m, 0])) as MapCounts), ...over });
const cls = JSON.stringify(["za", 1]);
const nodes = new Map([["a", {}], ["b", {}], ["c", {}]]);

describe("capacity book", () => {
  it("keeps each class's bound at or above every member's own counts", () => {
    const book = new CapacityBook();
    book.set("a", { capacityClass: cls, local: counts({ endpoint: 1, policy: 4 }) });
    book.set("b", { capacityClass: cls, local: counts({ endpoint: 3, policy: 2 }) });
    const [only] = [...book.classesWith(new Set([1]))];
    expect(only!.bound).toEqual(counts({ endpoint: 3, policy: 4 }));
    expect([...only!.members].sort()).toEqual(["a", "b"]);
    // Forgetting b leaves the bound (an upper bound still); exactBound brings it down to a's.
    book.forget("b");
    expect([...book.classesWith(new Set([1]))][0]!.bound).toEqual(counts({ endpoint: 3, policy: 4 }));
    book.exactBound(cls);
    expect([...book.classesWith(new Set([1]))][0]!.bound).toEqual(counts({ endpoint: 1, policy: 4 }));
    // A class is found by any tenant in it, and by no other.
    expect([...book.classesWith(new Set([2]))]).toEqual([]);
  });

  it("after every node is counted, only the nodes forgotten since are uncounted", () => {
    const book = new CapacityBook();
    expect([...book.uncounted(nodes)].sort()).toEqual(["a", "b", "c"]);
    for (const n of nodes.keys()) book.set(n, { capacityClass: cls, local: counts({}) });
    book.allCounted();
    expect([...book.uncounted(nodes)]).toEqual([]);
    book.forget("b");
    book.forget("gone");
    expect([...book.uncounted(nodes)]).toEqual(["b"]);
    book.forgetAll();
    expect([...book.uncounted(nodes)].sort()).toEqual(["a", "b", "c"]);
  });
});
