// SPDX-License-Identifier: Apache-2.0
/**
 * The maps the agent owns and the order it writes them in. Everything else
 * in the ABI (ct, sock_rev, metrics) is written by the BPF programs and is
 * never diffed, flushed or written by the agent.
 */
import { layouts, maps, type MapId } from "@weft/codec";
import type { MapPlan } from "./plan.ts";

/** The maps the API's compiler produces entries for, the same nine as its DATAPATH_MAPS. */
export const MANAGED_MAPS = ["ipcache", "endpoint", "policy", "svc", "lb_slot", "backend", "audit", "steer", "l7"] as const;
export type ManagedMap = (typeof MANAGED_MAPS)[number];

export function isManagedMap(id: string): id is ManagedMap {
  return (MANAGED_MAPS as readonly string[]).includes(id);
}

/**
 * Upserts, in this order, so that whatever the datapath reads between two
 * batches names only entries that already exist:
 *  - backend before lb_slot (a slot names a backend id), lb_slot before svc
 *    (a service value names a table and its slot count: the count goes last,
 *    after every slot it covers is written);
 *  - endpoint and ipcache before policy (a new identity resolves before the
 *    entries that mention it are consulted);
 *  - steer before policy: a policy entry with mtls makes the receiving node
 *    drop plaintext from other nodes, so the senders' steering (and this
 *    node's return path through the transport) is in place first;
 *  - l7 after svc, and deleted before it: a frontend turning L7 (or back)
 *    has both entries for a moment, and the socket LB, which sees svc
 *    first, keeps sending it straight to a backend as before; it never has
 *    neither.
 * Any interleaving of the two families is safe; services go first because a
 * connect() that finds no backend is refused, while a policy entry that is a
 * moment late only delays the change it brings.
 */
export const UPSERT_ORDER: readonly ManagedMap[] = ["backend", "lb_slot", "svc", "l7", "endpoint", "ipcache", "steer", "policy", "audit"];

/**
 * Deletes, after every upsert, in the reverse dependency order: a service
 * stops naming a table before the table's slots go, slots stop naming a
 * backend before the backend goes; policy entries go before the identities
 * they mention stop resolving; steer entries go after the policy entries
 * whose mtls flag asked for them.
 */
export const DELETE_ORDER: readonly ManagedMap[] = ["l7", "svc", "lb_slot", "backend", "audit", "policy", "steer", "ipcache", "endpoint"];

const policyKey = layouts["struct weft_policy_key"]!;
/** The key bytes a catch-all (any peer, any port, any protocol) has at zero. */
const wildcardBytes = policyKey.fields
  .filter((f) => f.name === "remote_identity" || f.name === "dport" || f.name === "protocol")
  .flatMap((f) => Array.from({ length: f.size }, (_, b) => f.offset + b));

/** Whether the policy key at `offset` is a catch-all: the entry that makes its (local, direction) selected. */
export function isSelectionKey(keys: Uint8Array, offset: number): boolean {
  for (const b of wildcardBytes) if (keys[offset + b] !== 0) return false;
  return true;
}

/**
 * Within the policy map (and audit and steer, which share its key), a direction's catch-all is written after its rules
 * and deleted before them. The datapath takes a missing catch-all for an
 * unselected direction (bpf/weft_policy.bpf.c [R7]), so while a batch is
 * half-applied a direction that becomes selected keeps passing until all its
 * rules are in, and one that stops being selected passes at once; neither
 * sees a default-deny without the allows that go with it, which would drop
 * packets of live connections. The kernel applies a batch entry by entry,
 * in order.
 */
export function orderPolicyPlan(plan: MapPlan): MapPlan {
  const { keySize: k, valueSize: v } = maps.policy;
  const order = (keys: Uint8Array, count: number, selectionFirst: boolean): Int32Array => {
    const selection = new Uint8Array(count);
    for (let i = 0; i < count; i++) selection[i] = isSelectionKey(keys, i * k) ? 1 : 0;
    const idx = new Int32Array(count);
    let n = 0;
    for (const wanted of selectionFirst ? [1, 0] : [0, 1]) for (let i = 0; i < count; i++) if (selection[i] === wanted) idx[n++] = i;
    return idx;
  };
  // Entries keep their relative order, so most of them move in long runs: one copy per run.
  const gather = (from: Uint8Array, size: number, idx: Int32Array): Uint8Array => {
    const out = new Uint8Array(idx.length * size);
    for (let n = 0; n < idx.length; ) {
      let end = n + 1;
      while (end < idx.length && idx[end] === idx[end - 1]! + 1) end++;
      out.set(from.subarray(idx[n]! * size, (idx[end - 1]! + 1) * size), n * size);
      n = end;
    }
    return out;
  };
  const up = order(plan.upserts.keys, plan.upserts.count, false);
  const del = order(plan.deletes.keys, plan.deletes.count, true);
  return {
    upserts: { keys: gather(plan.upserts.keys, k, up), values: gather(plan.upserts.values, v, up), count: plan.upserts.count },
    deletes: { keys: gather(plan.deletes.keys, k, del), count: plan.deletes.count },
  };
}
