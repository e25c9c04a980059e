/** Selectors and prefixes: the small predicates every part builder shares. */
import { formatIPv4, parseIPv4 } from "@weft/codec";
import type { IdentityRow, IdentitySelector } from "./types.ts";

/** {} selects every identity of the tenant; both fields given must both match. */
export function selects(selector: IdentitySelector, identity: IdentityRow): boolean {
  if (selector.identity !== undefined && selector.identity !== identity.name) return false;
  if (selector.labels !== undefined) {
    for (const [k, v] of Object.entries(selector.labels)) if (identity.labels[k] !== v) return false;
  }
  return true;
}

export interface Prefix {
  /** network address, host bits zero, as an unsigned 32-bit number */
  addr: number;
  len: number;
}

export const maskOf = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/**
 * Parses "a.b.c.d/len" (or a bare address, /32). Host bits must be zero: a
 * prefix with host bits set is almost always a typo, and silently masking it
 * would select addresses the user did not name.
 */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf("/");
  const addr = parseIPv4(slash < 0 ? text : text.slice(0, slash), "CIDR address");
  const lenText = slash < 0 ? "32" : text.slice(slash + 1);
  const len = Number(lenText);
  if (!/^\d{1,2}$/.test(lenText) || len > 32) throw new Error(`CIDR ${text}: prefix length must be 0..32`);
  if ((addr & ~maskOf(len)) >>> 0 !== 0) throw new Error(`CIDR ${text}: host bits beyond /${len} must be zero`);
  return { addr, len };
}

export const formatPrefix = (p: Prefix): string => `${formatIPv4(p.addr)}/${p.len}`;

/** The spelling every map and id table is keyed by ("10.0.0.0/8", never "10.0.0.0/08"). */
export const canonicalPrefix = (text: string): string => formatPrefix(parsePrefix(text));

/** outer contains inner: every address of inner is in outer. */
export const contains = (outer: Prefix, inner: Prefix): boolean =>
  outer.len <= inner.len && ((inner.addr & maskOf(outer.len)) >>> 0) === outer.addr;
