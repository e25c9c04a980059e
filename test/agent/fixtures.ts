/** Desired states for the agent tests, shaped as the API's compiler produces them. */
import { decodeEntries, protocols, type Entry, type MapId } from "@weft/codec";
import { buildLbTable, lbSlotEntries } from "../../api/src/compiler/lb-table.ts";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import type { DesiredEntries, MapTarget, ManagedMap } from "../../nodeagent/src/apply/index.ts";

export const W = { address: "198.18.20.2", identity: 1001, tenant: 1 };
export const NODE = { address: "198.18.20.1" };

/** A small node: one workload, two peers, a service with a weighted table. */
export function nodeState(opts: { tableId?: number; backends?: { backendId: number; address: string; weight: number }[]; allowPort?: number } = {}): Required<DesiredEntries> {
  const tableId = opts.tableId ?? 1;
  const backends = opts.backends ?? [
    { backendId: 1, address: "198.18.30.1", weight: 3 },
    { backendId: 2, address: "198.18.30.2", weight: 1 },
  ];
  const table = buildLbTable(backends.map((b) => ({ backendId: b.backendId, weight: b.weight })), 16);
  const policy: Entry<"policy">[] = [
    { key: { localIdentity: W.identity, remoteIdentity: 0, port: 0, protocol: 0, direction: "egress" }, value: { action: "default-deny", ruleId: 0 } },
    { key: { localIdentity: W.identity, remoteIdentity: 1, port: opts.allowPort ?? 8080, protocol: protocols.tcp, direction: "egress" }, value: { action: "allow", ruleId: 7 } },
    { key: { localIdentity: W.identity, remoteIdentity: 0, port: 0, protocol: 0, direction: "ingress" }, value: { action: "default-deny", ruleId: 0 } },
  ];
  return {
    endpoint: [{ key: { address: W.address }, value: { identity: W.identity, tenant: W.tenant } }],
    ipcache: [
      { key: { prefix: `${W.address}/32` }, value: { identity: W.identity, tenant: W.tenant } },
      { key: { prefix: `${NODE.address}/32` }, value: { identity: 1, tenant: 0 } },
    ],
    policy: normalizePolicy(policy),
    audit: [],
    steer: [],
    l7: [],
    backend: backends.map((b) => ({ key: { backendId: b.backendId }, value: { address: b.address, port: 8080 } })),
    lb_slot: lbSlotEntries(tableId, table),
    svc: [{ key: { vip: "198.18.40.1", port: 80, protocol: protocols.tcp }, value: { tableId, slots: table.length } }],
  };
}

/** Entries of a map in a canonical order, for comparing states. */
export function canonical<M extends MapId>(entries: readonly Entry<M>[]): string[] {
  return entries.map((e) => JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).sort();
}

export function kernelEntries<M extends ManagedMap>(target: MapTarget, id: M): Entry<M>[] {
  const { keys, values } = target.dump();
  return decodeEntries(id, keys, values);
}
