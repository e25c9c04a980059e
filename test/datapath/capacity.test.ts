import { maps } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { capacities, checkCapacity } from "../../api/src/compiler/capacity.ts";
import { compileNode } from "../../api/src/compiler/compile.ts";
import { snapshot } from "./support.ts";

describe("capacity admission", () => {
  it("names the map, the node, needed and available for every overflow, from compiled counts", () => {
    const snap = snapshot({
      tenants: [{ id: 1, name: "t", defaultAction: "deny" }],
      identities: [256, 257, 258].map((numericId, i) => ({ tenantId: 1, name: `i${i}`, numericId, labels: {} })),
      workloads: [0, 1, 2].map((i) => ({ tenantId: 1, name: `w${i}`, identity: `i${i}`, node: "n1", addresses: [`10.0.0.${i + 1}`] })),
      nodes: [{ name: "n1", zone: "a" }, { name: "n2", zone: "a" }],
    });
    const counts = new Map(["n1", "n2"].map((n) => [n, compileNode(snap, n).counts]));
    expect(counts.get("n1")).toMatchObject({ endpoint: 3, ipcache: 3, policy: 6 });
    expect(checkCapacity(counts)).toEqual([]);
    expect(checkCapacity(counts, capacities({ policy: 5, endpoint: 3 }))).toEqual([{ map: "policy", node: "n1", needed: 6, available: 5 }]);
    expect(capacities().lb_slot).toBe(maps.lb_slot.maxEntries);
  });
});
