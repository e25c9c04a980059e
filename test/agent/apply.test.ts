/**
 * The apply engine against real maps pinned in a private directory: minimal
 * diffs, idempotence, write order, repair after a failure half-way, and
 * refusal of malformed desired states with the kernel untouched.
 */
import { encodeEntries, maps, protocols } from "@weft/codec";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ApplyEngine, isSelectionKey, MANAGED_MAPS, type BatchCall, type MapTargets } from "../../nodeagent/src/apply/index.ts";
import { KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, kernelUnavailableReason, makePinDir } from "../support/kernel.ts";
import { canonical, kernelEntries, nodeState } from "./fixtures.ts";

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, bpffs)", reason))("apply engine on pinned kernel maps", () => {
  const cleanup = new Cleanup();
  let dp: KernelDatapath;
  let targets: MapTargets;
  let calls: BatchCall[];
  let engine: ApplyEngine;

  beforeAll(() => {
    const pinDir = makePinDir(cleanup, "apply");
    dp = KernelDatapath.load({ pinDir });
    cleanup.add("close datapath", () => dp.close());
    targets = dp.maps;
    engine = new ApplyEngine(targets, { onBatch: (c) => calls.push(c) });
  });
  afterAll(() => cleanup.run());
  beforeEach(() => {
    // Every case starts from empty maps; emptying is itself an apply.
    engine.apply(Object.fromEntries(MANAGED_MAPS.map((m) => [m, []])));
    calls = [];
  });

  const expectKernelHolds = (state: ReturnType<typeof nodeState>) => {
    for (const id of MANAGED_MAPS) expect(canonical(kernelEntries(targets[id], id)), id).toEqual(canonical(state[id] as never));
  };

  it("writes a desired state, and applying it again changes nothing", () => {
    const state = nodeState();
    const first = engine.apply(state);
    expect(first.maps).toEqual({
      ipcache: { upserts: 2, deletes: 0 },
      endpoint: { upserts: 1, deletes: 0 },
      policy: { upserts: state.policy.length, deletes: 0 },
      svc: { upserts: 1, deletes: 0 },
      lb_slot: { upserts: 16, deletes: 0 },
      backend: { upserts: 2, deletes: 0 },
      audit: { upserts: 0, deletes: 0 },
      steer: { upserts: 0, deletes: 0 },
      l7: { upserts: 0, deletes: 0 },
    });
    expectKernelHolds(state);
    calls = [];
    const second = engine.apply(nodeState());
    expect(second.upserts + second.deletes).toBe(0);
    expect(calls).toEqual([]);
    expect(second.elapsedMs).toBeGreaterThan(0);
  });

  it("writes only the difference: new keys and changed values, deletes stale keys", () => {
    engine.apply(nodeState());
    const next = nodeState({ allowPort: 9090 }); // the allow moves from 8080 to 9090
    next.ipcache = [next.ipcache[0]!, { key: { prefix: "198.18.50.0/24" }, value: { identity: 1500, tenant: 1 } }]; // NODE gone, a prefix added
    next.endpoint = [{ key: next.endpoint[0]!.key, value: { identity: 1001, tenant: 2 } }]; // value change only
    calls = [];
    const r = engine.apply(next);
    expect(r.maps).toEqual({
      ipcache: { upserts: 1, deletes: 1 },
      endpoint: { upserts: 1, deletes: 0 },
      policy: { upserts: 1, deletes: 1 },
      svc: { upserts: 0, deletes: 0 },
      lb_slot: { upserts: 0, deletes: 0 },
      backend: { upserts: 0, deletes: 0 },
      audit: { upserts: 0, deletes: 0 },
      steer: { upserts: 0, deletes: 0 },
      l7: { upserts: 0, deletes: 0 },
    });
    expect(calls).toEqual([
      { map: "endpoint", op: "update", count: 1 },
      { map: "ipcache", op: "update", count: 1 },
      { map: "policy", op: "update", count: 1 },
      { map: "policy", op: "delete", count: 1 },
      { map: "ipcache", op: "delete", count: 1 },
    ]);
    expectKernelHolds(next);
  });

  it("writes a direction's catch-all after its rules and deletes it before them", () => {
    const k = maps.policy.keySize;
    const batches: { op: "update" | "delete"; selection: boolean[] }[] = [];
    const record = (op: "update" | "delete", keys: Uint8Array) =>
      batches.push({ op, selection: Array.from({ length: keys.length / k }, (_, i) => isSelectionKey(keys, i * k)) });
    const recording: MapTargets = {
      ...targets,
      policy: {
        dump: () => targets.policy.dump(),
        updateBatch: (keys, values) => (record("update", keys), targets.policy.updateBatch(keys, values)),
        deleteBatch: (keys) => (record("delete", keys), targets.policy.deleteBatch(keys)),
      },
    };
    const e = new ApplyEngine(recording);
    const state = nodeState();
    e.apply(state);
    e.apply({ ...state, policy: [] });
    expect(batches.map((b) => b.op)).toEqual(["update", "delete"]);
    const [written, deleted] = batches.map((b) => b.selection) as [boolean[], boolean[]];
    for (const s of [written, deleted]) expect(new Set(s)).toEqual(new Set([true, false]));
    expect(written.indexOf(true)).toBe(written.lastIndexOf(false) + 1);
    expect(deleted.indexOf(false)).toBe(deleted.lastIndexOf(true) + 1);
    expectKernelHolds({ ...state, policy: [] });
  });

  it("writes steering before the mtls policy entries that rely on it, and deletes it after them", () => {
    const state = nodeState();
    const local = state.endpoint[0]!.value.identity;
    const steer = [
      { key: { localIdentity: local, remoteIdentity: 0, port: 0, protocol: 0, direction: "egress" as const }, value: { action: "default-deny" as const, ruleId: 0 } },
      { key: { localIdentity: local, remoteIdentity: 1, port: 8080, protocol: protocols.tcp, direction: "egress" as const }, value: { action: "allow" as const, ruleId: 7, mtls: true as const } },
    ];
    const policy = state.policy.map((e) => (e.value.action === "allow" ? { ...e, value: { ...e.value, mtls: true as const } } : e));
    engine.apply({ ...state, policy, steer });
    expect(calls.map((c) => `${c.op} ${c.map}`).filter((c) => c.endsWith(" steer") || c.endsWith(" policy"))).toEqual(["update steer", "update policy"]);
    expectKernelHolds({ ...state, policy, steer });
    calls = [];
    engine.apply({ ...state, policy: [], steer: [] });
    expect(calls.map((c) => `${c.op} ${c.map}`).filter((c) => c.endsWith(" steer") || c.endsWith(" policy"))).toEqual(["delete policy", "delete steer"]);
    expectKernelHolds({ ...state, policy: [], steer: [] });
  });

  it("swaps a service's table in an order that never names a missing entry", () => {
    engine.apply(nodeState());
    // Backend 1 leaves, backend 3 joins; the new table gets a fresh id and the old one goes.
    const next = nodeState({ tableId: 2, backends: [{ backendId: 2, address: "198.18.30.2", weight: 1 }, { backendId: 3, address: "198.18.30.3", weight: 1 }] });
    calls = [];
    engine.apply(next);
    expect(calls).toEqual([
      { map: "backend", op: "update", count: 1 },
      { map: "lb_slot", op: "update", count: 16 },
      { map: "svc", op: "update", count: 1 },
      { map: "lb_slot", op: "delete", count: 16 },
      { map: "backend", op: "delete", count: 1 },
    ]);
    expectKernelHolds(next);
  });

  it("leaves maps that the desired state does not mention alone, and empties a map given []", () => {
    engine.apply(nodeState());
    const r = engine.apply({ policy: [] });
    expect(Object.keys(r.maps)).toEqual(["policy"]);
    expect(kernelEntries(targets.policy, "policy")).toEqual([]);
    expect(kernelEntries(targets.svc, "svc")).toHaveLength(1);
  });

  it("repairs a failure half-way on the next apply", () => {
    engine.apply(nodeState());
    const next = nodeState({ tableId: 2, allowPort: 9090 });
    // The lb_slot batch fails after the backends were written: the old table still serves.
    const failing = new ApplyEngine({
      ...targets,
      lb_slot: { ...targets.lb_slot, dump: () => targets.lb_slot.dump(), deleteBatch: (k) => targets.lb_slot.deleteBatch(k), updateBatch: () => { throw new Error("failed to update 16 entries of map weft_lb_slot: injected"); } },
    });
    expect(() => failing.apply(next)).toThrow(/injected/);
    expect(kernelEntries(targets.svc, "svc")[0]!.value.tableId).toBe(1);
    expect(kernelEntries(targets.policy, "policy")).toEqual(expect.arrayContaining([...nodeState().policy])); // nothing after the failure ran
    const repaired = engine.apply(next);
    expect(repaired.maps.lb_slot).toEqual({ upserts: 16, deletes: 16 });
    expectKernelHolds(next);
    expect(engine.apply(next).upserts).toBe(0);
  });

  it("repairs entries changed behind its back (it reads the kernel, not a cache)", () => {
    const state = nodeState();
    engine.apply(state);
    const { keys, values } = encodeEntries("policy", [{ key: { localIdentity: 4242, remoteIdentity: 0, port: 22, protocol: protocols.tcp, direction: "ingress" }, value: { action: "allow", ruleId: 1 } }]);
    targets.policy.updateBatch(keys, values);
    targets.backend.deleteBatch(encodeEntries("backend", [state.backend[0]!]).keys);
    const r = engine.apply(state);
    expect(r.maps.policy).toEqual({ upserts: 0, deletes: 1 });
    expect(r.maps.backend).toEqual({ upserts: 1, deletes: 0 });
    expectKernelHolds(state);
  });

  it("refuses a malformed desired state before writing anything", () => {
    const state = nodeState();
    engine.apply(state);
    calls = [];
    const dup = { ...state, backend: [...state.backend, { key: state.backend[0]!.key, value: { address: "198.18.30.9", port: 1 } }] };
    expect(() => engine.apply(dup)).toThrow(/^failed to plan map backend: desired entries 0 and 2 have the same key$/);
    expect(() => engine.apply({ ...state, svc: [{ key: { vip: "198.18.40.1", port: 70000, protocol: 6 }, value: { tableId: 1, slots: 16 } }] })).toThrow(
      /^failed to encode map svc: .*port/,
    );
    expect(() => engine.apply({ ct: [] } as never)).toThrow(/^failed to plan map ct: it is written by the datapath/);
    expect(calls).toEqual([]);
    expectKernelHolds(state);
  });
});
