/**
 * Who may hold which IPv4 address: pure rules, no database.
 *
 * Service VIPs come from WEFT_SERVICE_CIDR, workload addresses from their
 * node's block of WEFT_POD_CIDR, except its first address (the node's L7
 * proxy address, compiler/l7.ts); addresses that mean something to every host
 * (loopback, link-local, multicast, unspecified, broadcast) belong to nobody.
 * A VIP or workload address compiles into the maps of nodes shared with other
 * tenants, where the socket load balancer redirects connections to it: a
 * tenant naming 169.254.169.254 or 127.0.0.1 would capture the host's and
 * other tenants' traffic.
 */
import { formatIPv4, parseIPv4 } from "@weft/codec";
import { proxyAddressOf } from "../compiler/l7.ts";
import { contains, formatPrefix, parsePrefix, type Prefix } from "../compiler/select.ts";
import type { Config } from "../config.ts";

/** The defaults, in one place: configFromEnv sets them, inProcessConfig (tests) leaves them undefined. */
export const DEFAULT_SERVICE_CIDR = "198.19.0.0/16";
export const DEFAULT_POD_CIDR = "10.0.0.0/8";
export const DEFAULT_POD_CIDR_NODE_PREFIX = 24;

export interface AddressPlan {
  serviceCidr: string;
  podCidr: string;
  podCidrNodePrefix: number;
}

export const addressPlanOf = (config: Pick<Config, "serviceCidr" | "podCidr" | "podCidrNodePrefix">): AddressPlan => ({
  serviceCidr: config.serviceCidr ?? DEFAULT_SERVICE_CIDR,
  podCidr: config.podCidr ?? DEFAULT_POD_CIDR,
  podCidrNodePrefix: config.podCidrNodePrefix ?? DEFAULT_POD_CIDR_NODE_PREFIX,
});

/** A dotted quad as an unsigned 32-bit number; null when it is not one. */
export function ipv4ToNumber(text: string): number | null {
  try {
    return parseIPv4(text);
  } catch {
    return null;
  }
}

const sizeOf = (p: Prefix): number => 2 ** (32 - p.len);
const holds = (p: Prefix, address: number): boolean => contains(p, { addr: address, len: 32 });

/** Ranges no tenant may hold, anywhere (RFC 6890): they mean something to every host. */
const SPECIAL_USE: ReadonlyArray<{ prefix: Prefix; what: string }> = [
  { prefix: parsePrefix("0.0.0.0/8"), what: "an unspecified (\"this network\") address" },
  { prefix: parsePrefix("127.0.0.0/8"), what: "a loopback address" },
  { prefix: parsePrefix("169.254.0.0/16"), what: "a link-local address (the cloud metadata service lives there)" },
  { prefix: parsePrefix("224.0.0.0/4"), what: "a multicast address" },
  { prefix: parsePrefix("255.255.255.255/32"), what: "the broadcast address" },
  { prefix: parsePrefix("240.0.0.0/4"), what: "a reserved address" },
];

/** Why no one may hold the address, or null when it is an ordinary unicast address. */
export function specialUse(address: number): string | null {
  return SPECIAL_USE.find((s) => holds(s.prefix, address))?.what ?? null;
}

/** Why the address may not be used inside this range (outside it, or its network or broadcast address), or null. */
function outsideHosts(address: number, range: Prefix, rangeText: string, rangeName: string): string | null {
  if (!holds(range, address)) return `must be inside ${rangeText} (${rangeName})`;
  const last = range.addr + sizeOf(range) - 1;
  if (sizeOf(range) >= 4 && (address === range.addr || address === last)) {
    return `is the ${address === range.addr ? "network" : "broadcast"} address of ${rangeText} (${rangeName})`;
  }
  return null;
}

/** Why a service may not have this VIP, or null when it may (uniqueness is checked elsewhere). */
export function vipRefusal(vip: string, serviceCidr: string): string | null {
  const n = ipv4ToNumber(vip);
  if (n === null) return "must be an IPv4 address in dotted-quad form";
  const special = specialUse(n);
  if (special) return `is ${special}; no service may have it`;
  return outsideHosts(n, parsePrefix(serviceCidr), serviceCidr, "WEFT_SERVICE_CIDR");
}

/**
 * Why a workload on a node with this block may not have the address, or null
 * when it may. A node without a block (none could be assigned) accepts none.
 */
export function workloadAddressRefusal(address: string, nodeBlock: string | null, node: string): string | null {
  const n = ipv4ToNumber(address);
  if (n === null) return "must be an IPv4 address in dotted-quad form";
  const special = specialUse(n);
  if (special) return `is ${special}; no workload may have it`;
  if (nodeBlock === null) return `node "${node}" has no pod CIDR block yet`;
  const block = parsePrefix(nodeBlock);
  const outside = outsideHosts(n, block, nodeBlock, `node "${node}"'s pod CIDR block`);
  if (outside !== null) return outside;
  // The node's L7 proxy connects to backends from it: a workload holding it would be taken for the proxy.
  if (formatIPv4(n) === proxyAddressOf(nodeBlock)) return `is node "${node}"'s L7 proxy address (the first address of its pod CIDR block); no workload may have it`;
  return null;
}

/**
 * The lowest block of the pod CIDR not in `taken` (stored blocks as text,
 * e.g. "10.0.3.0/24"), or null when every block is taken. Linear in the
 * number of blocks: 65,536 for a /8 split into /24s.
 */
export function firstFreeBlock(plan: Pick<AddressPlan, "podCidr" | "podCidrNodePrefix">, taken: Iterable<string>): string | null {
  const pool = parsePrefix(plan.podCidr);
  const blockSize = 2 ** (32 - plan.podCidrNodePrefix);
  const used = new Set<number>();
  for (const t of taken) {
    const p = parsePrefix(t);
    // Only blocks of this pool's shape count; anything else (a pool since reconfigured) is left alone,
    // but an overlapping block of another size still makes its addresses unavailable.
    for (let b = p.addr - (p.addr % blockSize); b < p.addr + sizeOf(p); b += blockSize) used.add(b);
  }
  for (let b = pool.addr; b < pool.addr + sizeOf(pool); b += blockSize) {
    if (!used.has(b)) return formatPrefix({ addr: b, len: plan.podCidrNodePrefix });
  }
  return null;
}
