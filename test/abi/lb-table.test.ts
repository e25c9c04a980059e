import fc from "fast-check";
import { constants } from "@weft/codec";
import { buildLbTable, lbSlotEntries, LB_TABLE_DEFAULT } from "../../api/src/compiler/lb-table.ts";
import { describe, expect, it } from "vitest";

const weights = fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 64 });

function counts(table: Uint32Array): Map<number, number> {
  const c = new Map<number, number>();
  for (const id of table) c.set(id, (c.get(id) ?? 0) + 1);
  return c;
}

describe("weighted lookup table", () => {
  it("gives every backend its share of slots within one slot, and weight 0 none", () => {
    fc.assert(
      fc.property(weights, fc.integer({ min: 1, max: constants.LB_TABLE_MAX }), (ws, slots) => {
        const total = ws.reduce((a, b) => a + b, 0);
        const table = buildLbTable(ws.map((weight, i) => ({ backendId: i + 1, weight })), slots);
        if (total === 0) {
          expect(table.length).toBe(0);
          return;
        }
        expect(table.length).toBe(slots);
        const c = counts(table);
        ws.forEach((w, i) => {
          const got = c.get(i + 1) ?? 0;
          if (w === 0) expect(got).toBe(0);
          expect(Math.abs(got - (w * slots) / total)).toBeLessThan(1);
        });
      }),
      { numRuns: 300 },
    );
  });

  it("is a pure function of its input (the API previews what the agent writes)", () => {
    fc.assert(
      fc.property(weights, (ws) => {
        const backends = ws.map((weight, i) => ({ backendId: 100 + i, weight }));
        expect(buildLbTable(backends)).toEqual(buildLbTable(backends.map((b) => ({ ...b }))));
      }),
      { numRuns: 50 },
    );
  });

  it("hands out exact shares where weights divide the table", () => {
    const table = buildLbTable(
      [
        { backendId: 7, weight: 1 },
        { backendId: 8, weight: 3 },
        { backendId: 9, weight: 0 },
      ],
      8,
    );
    expect([...table]).toEqual([7, 7, 8, 8, 8, 8, 8, 8]);
    expect(buildLbTable([{ backendId: 1, weight: 5 }]).length).toBe(LB_TABLE_DEFAULT);
  });

  it("turns a table into lb_slot entries slot by slot", () => {
    const table = Uint32Array.from([4, 4, 5]);
    expect(lbSlotEntries(9, table)).toEqual([
      { key: { tableId: 9, slot: 0 }, value: { backendId: 4 } },
      { key: { tableId: 9, slot: 1 }, value: { backendId: 4 } },
      { key: { tableId: 9, slot: 2 }, value: { backendId: 5 } },
    ]);
  });

  const one = [{ backendId: 1, weight: 1 }];
  it.each([
    ["weight over 1,000,000", () => buildLbTable([{ backendId: 1, weight: 1 }, { backendId: 2, weight: 1_000_001 }]), /backends\[1\]\.weight: 1000001 is out of range 0\.\.1000000/],
    ["negative weight", () => buildLbTable([{ backendId: 1, weight: -1 }]), /weight.*not an integer/],
    ["table too large", () => buildLbTable(one, 16385), /16385 slots; allowed 1\.\.16384/],
    ["empty table", () => buildLbTable(one, 0), /0 slots/],
    ["no backends", () => buildLbTable([]), /0 backends/],
    ["too many backends", () => buildLbTable(Array.from({ length: 1025 }, (_, i) => ({ backendId: i + 1, weight: 1 }))), /1025 backends/],
    ["backend id 0", () => buildLbTable([{ backendId: 0, weight: 1 }]), /0 is not a backend id/],
    ["duplicate backend", () => buildLbTable([{ backendId: 3, weight: 1 }, { backendId: 3, weight: 2 }]), /3 appears twice/],
  ])("refuses %s", (_name, run, message) => {
    expect(run).toThrow(message);
  });
});
