// SPDX-License-Identifier: Apache-2.0
/**
 * The node's block of WEFT_POD_CIDR (`podCidr` on the API's Node): every
 * address of a workload on this node lies inside it. The API checks that on
 * every workload write; the agent checks it again before host routing names
 * a veth for an address (defence in depth: a wrong or compromised desired
 * state must not make this node's BPF deliver traffic for an address that
 * belongs to another node's block).
 */

import { parseIPv4 } from "@weft/codec";

export interface PodCidr {
  /** As the API spells it, e.g. "10.0.3.0/24". */
  cidr: string;
  base: number;
  size: number;
}

/** A dotted quad as an unsigned 32-bit number (the codec's parser); null when it is not one. */
function ipv4ToNumber(text: string): number | null {
  try {
    return parseIPv4(text);
  } catch {
    return null;
  }
}

/** "10.0.3.0/24" (host bits must be zero, as the API assigns blocks), or null when it is not an IPv4 prefix. */
export function parsePodCidr(cidr: string): PodCidr | null {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(cidr);
  if (!m) return null;
  const base = ipv4ToNumber(m[1]!);
  const length = Number(m[2]);
  if (base === null || length > 32) return null;
  const size = 2 ** (32 - length);
  if (base % size !== 0) return null;
  return { cidr, base, size };
}

/** Whether `address` (a dotted quad) lies inside the block; anything that is not an IPv4 address does not. */
export function inPodCidr(block: PodCidr, address: string): boolean {
  const n = ipv4ToNumber(address);
  return n !== null && n >= block.base && n < block.base + block.size;
}
