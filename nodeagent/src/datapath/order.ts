// SPDX-License-Identifier: Apache-2.0
/**
 * The maps the agent owns and the order it writes them in. Everything else
 * in the ABI (ct, sock_rev, metrics) is written by the BPF programs and is
 * never diffed, flushed or written by the agent.
 */
import type { MapId } from "@weft/codec";

/** The maps the API's compiler produces entries for, the same six as its DATAPATH_MAPS. */
export const MANAGED_MAPS = ["ipcache", "endpoint", "policy", "svc", "lb_slot", "backend"] as const;
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
 *    entries that mention it are consulted).
 * Any interleaving of the two families is safe; services go first because a
 * connect() that finds no backend is refused, while a policy entry that is a
 * moment late only delays the change it brings.
 */
export const UPSERT_ORDER: readonly ManagedMap[] = ["backend", "lb_slot", "svc", "endpoint", "ipcache", "policy"];

/**
 * Deletes, after every upsert, in the reverse dependency order: a service
 * stops naming a table before the table's slots go, slots stop naming a
 * backend before the backend goes; policy entries go before the identities
 * they mention stop resolving.
 */
export const DELETE_ORDER: readonly ManagedMap[] = ["svc", "lb_slot", "backend", "policy", "ipcache", "endpoint"];
