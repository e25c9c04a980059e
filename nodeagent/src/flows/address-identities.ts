// SPDX-License-Identifier: Apache-2.0
/**
 * Address -> (identity, tenant) the way the tc programs find it: the
 * longest ipcache prefix that holds the address. For flow events the agent
 * makes itself (the transport's), from the ipcache entries of the revision
 * the agent applied; 0/0 when no prefix holds it, as the kernel reports an
 * address it does not know.
 */
import { parseIPv4, type Entry, type Identity } from "@weft/codec";

export const UNKNOWN: Identity = Object.freeze({ identity: 0, tenant: 0 });

export class AddressIdentities {
  /** By prefix length, longest first: network (host order) -> identity. */
  private readonly byLength: [number, Map<number, Identity>][];

  constructor(ipcache: readonly Entry<"ipcache">[]) {
    const lengths = new Map<number, Map<number, Identity>>();
    for (const { key, value } of ipcache) {
      const slash = key.prefix.indexOf("/");
      const length = slash < 0 ? 32 : Number(key.prefix.slice(slash + 1));
      const network = parseIPv4(slash < 0 ? key.prefix : key.prefix.slice(0, slash));
      let networks = lengths.get(length);
      if (!networks) lengths.set(length, (networks = new Map()));
      networks.set(network, value);
    }
    this.byLength = [...lengths].sort((a, b) => b[0] - a[0]);
  }

  lookup(address: string): Identity {
    const a = parseIPv4(address);
    for (const [length, networks] of this.byLength) {
      const network = length === 0 ? 0 : (a & (0xffffffff << (32 - length))) >>> 0;
      const found = networks.get(network);
      if (found) return found;
    }
    return UNKNOWN;
  }
}

/** An index per ipcache entry list, made again only when the list changes (a new revision applied). */
export function identitiesOf(ipcache: () => readonly Entry<"ipcache">[] | null): (address: string) => Identity {
  let indexed: readonly Entry<"ipcache">[] | null = null;
  let index = new AddressIdentities([]);
  return (address) => {
    const current = ipcache();
    if (current !== indexed) {
      indexed = current;
      index = new AddressIdentities(current ?? []);
    }
    return index.lookup(address);
  };
}
