/**
 * Who may hold which IPv4 address: pure rules, no database.
 *
 * Service VIPs come from WEFT_SERVICE_CIDR, workload addresses from their
 * node's block of WEFT_POD_CIDR; addresses that mean something to every host
 * (loopback, link-local, multicast, unspecified, broadcast) belong to nobody.
 * A VIP or workload address compiles into the maps of nodes shared with other
 * tenants, where the socket load balancer redirects connections to it: a
 * tenant naming 169.254.169.254 or 127.0.0.1 would capture the host's and
 * other tenants' traffic.
 */
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

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** A dotted quad as an unsigned 32-bit number; null when it is not one. */
export function ipv4ToNumber(text: string): number | null {
  const m = DOTTED.exec(text);
  if (!m) return null;
  const octets = m.slice(1, 5).map(Number);
  if (octets.some((o) => o > 255)) return null;
  return octets.reduce((a, o) => a * 256 + o, 0);
}

export const numberToIpv4 = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

export interface Prefix {
  /** The first address, as a number. */
  base: number;
  length: number;
  /** How many addresses it spans. */
  size: number;
}

/** "10.1.2.0/24" as numbers; throws on a malformed prefix (configuration and stored blocks are checked before). */
export function parsePrefix(cidr: string): Prefix {
  const [addr, len] = cidr.split("/");
  const base = addr === undefined ? null : ipv4ToNumber(addr);
  const length = Number(len);
  if (base === null || !Number.isInteger(length) || length < 0 || length > 32) throw new Error(`not an IPv4 prefix: "${cidr}"`);
  const size = 2 ** (32 - length);
  return { base: base - (base % size), length, size };
}

export const formatPrefix = (p: Pick<Prefix, "base" | "length">): string => `${numberToIpv4(p.base)}/${p.length}`;

export const contains = (p: Prefix, address: number): boolean => address >= p.base && address < p.base + p.size;

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
  return SPECIAL_USE.find((s) => contains(s.prefix, address))?.what ?? null;
}

/** Why the address may not be used inside this range (outside it, or its network or broadcast address), or null. */
function outsideHosts(address: number, range: Prefix, rangeText: string, rangeName: string): string | null {
  if (!contains(range, address)) return `must be inside ${rangeText} (${rangeName})`;
  if (range.size >= 4 && (address === range.base || address === range.base + range.size - 1)) {
    return `is the ${address === range.base ? "network" : "broadcast"} address of ${rangeText} (${rangeName})`;
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
  return outsideHosts(n, parsePrefix(nodeBlock), nodeBlock, `node "${node}"'s pod CIDR block`);
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
    for (let b = p.base - (p.base % blockSize); b < p.base + p.size; b += blockSize) used.add(b);
  }
  for (let b = pool.base; b < pool.base + pool.size; b += blockSize) {
    if (!used.has(b)) return formatPrefix({ base: b, length: plan.podCidrNodePrefix });
  }
  return null;
}
