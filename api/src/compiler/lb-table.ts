/**
 * The weighted lookup table a service frontend names (svc.tableId/slots) and
 * the socket LB draws a uniform random slot from (bpf/weft_sock.bpf.c):
 * backend ids per slot, written as lb_slot entries.
 */
import { constants, type Entry } from "@weft/codec";

/** Slots of a table when the caller names no size (shares within 1/1024). */
export const LB_TABLE_DEFAULT = 1024;

export interface WeightedBackend {
  backendId: number;
  weight: number;
}

function invalid(what: string, why: string): never {
  throw new Error(`invalid ${what}: ${why}`);
}

function u32(v: number, what: string): number {
  if (v >>> 0 !== v) invalid(what, `${String(v)} is not an integer in 0..4294967295`);
  return v;
}

/**
 * Backend ids per slot, by Hamilton's apportionment: backend i gets
 * floor(w_i * slots / W) slots and the slots left over go to the largest
 * remainders (ties to the lower index), so each backend's share of slots is
 * within 1/slots of weight/total and a weight of 0 gets no slot. Slots are
 * filled in backend order. All weights 0 gives an empty table (a drained
 * service). Weights 0..LB_WEIGHT_MAX; 1..LB_BACKENDS_MAX distinct backend
 * ids >= 1; slots 1..LB_TABLE_MAX (default LB_TABLE_DEFAULT).
 */
export function buildLbTable(backends: readonly WeightedBackend[], slots: number = LB_TABLE_DEFAULT): Uint32Array {
  const n = backends.length;
  if (n === 0 || n > constants.LB_BACKENDS_MAX) invalid("backends", `${n} backends; a table holds 1..${constants.LB_BACKENDS_MAX}`);
  if (!Number.isInteger(slots) || slots < 1 || slots > constants.LB_TABLE_MAX) {
    invalid("table size", `${String(slots)} slots; allowed 1..${constants.LB_TABLE_MAX}`);
  }
  const seen = new Set<number>();
  backends.forEach((b, i) => {
    u32(b.backendId, `backends[${i}].backendId`);
    if (b.backendId === 0) invalid(`backends[${i}].backendId`, "0 is not a backend id");
    if (seen.has(b.backendId)) invalid(`backends[${i}].backendId`, `${b.backendId} appears twice`);
    seen.add(b.backendId);
    u32(b.weight, `backends[${i}].weight`);
  });
  backends.forEach((b, i) => {
    if (b.weight > constants.LB_WEIGHT_MAX) invalid(`backends[${i}].weight`, `${b.weight} is out of range 0..${constants.LB_WEIGHT_MAX}`);
  });
  // Every product and sum stays below 2^53 (1,024 x 1,000,000 x 16,384), so
  // this integer arithmetic on numbers is exact.
  const total = backends.reduce((sum, b) => sum + b.weight, 0);
  if (total === 0) return new Uint32Array(0);
  const rem = backends.map((b) => (b.weight * slots) % total);
  const count = backends.map((b, i) => (b.weight * slots - rem[i]!) / total);
  // Fewer than n slots are left, and only backends with a remainder get one.
  for (let given = count.reduce((a, c) => a + c, 0); given < slots; given++) {
    let best = 0;
    for (let i = 1; i < n; i++) if (rem[i]! > rem[best]!) best = i;
    count[best]!++;
    rem[best] = 0;
  }
  const table = new Uint32Array(slots);
  let s = 0;
  backends.forEach((b, i) => {
    table.fill(b.backendId, s, s + count[i]!);
    s += count[i]!;
  });
  return table;
}

/** lb_slot entries for a table built by buildLbTable, under tableId. */
export function lbSlotEntries(tableId: number, table: Uint32Array): Entry<"lb_slot">[] {
  return Array.from(table, (backendId, slot) => ({ key: { tableId, slot }, value: { backendId } }));
}
