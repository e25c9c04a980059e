import { decodeEntries, decodeKeys, encodeEntries, type Entry } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { syncLocalVeths } from "../../nodeagent/src/agent/local-veths.ts";
import type { MapTarget } from "../../nodeagent/src/apply/index.ts";

/** A local_veth map in memory that records the batches written to it, in order. */
function fakeMap(held: Record<string, number>) {
  const calls: string[] = [];
  const entries = new Map(Object.entries(held));
  const target: MapTarget = {
    dump: () => encodeEntries("local_veth", [...entries].map(([address, ifindex]): Entry<"local_veth"> => ({ key: { address }, value: { ifindex } }))),
    updateBatch(keys, values) {
      const written = decodeEntries("local_veth", keys, values);
      calls.push(`update ${written.map((e) => `${e.key.address}=${e.value.ifindex}`).join(",")}`);
      for (const e of written) entries.set(e.key.address, e.value.ifindex);
      return undefined;
    },
    deleteBatch(keys) {
      const gone = decodeKeys("local_veth", keys);
      calls.push(`delete ${gone.map((k) => k.address).join(",")}`);
      for (const k of gone) entries.delete(k.address);
      return gone.length;
    },
  };
  return { target, calls, entries };
}

describe("local_veth sync", () => {
  it("writes only the difference: new and moved addresses first, then the ones gone", () => {
    const m = fakeMap({ "198.18.0.2": 10, "198.18.0.6": 11, "198.18.0.10": 12 });
    const r = syncLocalVeths(m.target, new Map([["198.18.0.2", 10], ["198.18.0.6", 21], ["198.18.0.14", 13]]));
    expect(r).toEqual({ upserts: 2, deletes: 1 });
    expect(m.calls).toEqual(["update 198.18.0.6=21,198.18.0.14=13", "delete 198.18.0.10"]);
    expect(Object.fromEntries(m.entries)).toEqual({ "198.18.0.2": 10, "198.18.0.6": 21, "198.18.0.14": 13 });
  });

  it("writes nothing when the kernel already holds the wanted entries (an agent restart)", () => {
    const m = fakeMap({ "198.18.0.2": 10 });
    expect(syncLocalVeths(m.target, new Map([["198.18.0.2", 10]]))).toEqual({ upserts: 0, deletes: 0 });
    expect(m.calls).toEqual([]);
  });

  it("empties the map when host routing is off", () => {
    const m = fakeMap({ "198.18.0.2": 10, "198.18.0.6": 11 });
    syncLocalVeths(m.target, new Map());
    expect(m.entries.size).toBe(0);
  });
});
