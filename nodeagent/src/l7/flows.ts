// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's access records as flow events of hook "l7", kept, counted
 * and shipped like the kernel's (the path transport outcomes take): a
 * request a backend answered is a pass with reason http-forwarded, one the
 * proxy answered itself (403, 503) a drop with reason http-refused. Source
 * is the caller, destination the server asked (the VIP when none was),
 * original destination the VIP and port the caller dialed.
 */
import type { FlowEvent, Identity } from "@weft/codec";
import { isIPv4 } from "node:net";
import { forwarded, type AccessRecord } from "./access-log.ts";
import { systemOutcomeClock, type OutcomeClock } from "../flows/transport-outcomes.ts";

const TCP = 6;
const U32_MAX = 0xffffffff;

export function accessEvents(records: readonly AccessRecord[], identify: (address: string) => Identity, clock: OutcomeClock = systemOutcomeClock): FlowEvent[] {
  const monotonic = clock.monotonicNs();
  const now = clock.nowMs();
  // A batch names few addresses (the node's callers, their servers, the VIPs): each is looked up once.
  const known = new Map<string, Identity>();
  const identityOf = (address: string) => {
    let id = known.get(address);
    if (!id) known.set(address, (id = identify(address)));
    return id;
  };
  return records.map((r) => {
    const passed = forwarded(r);
    // A server HAProxy names by no IPv4 address (a unix socket the intake could not place) stands as the VIP: a record never stops the batch.
    const dst = passed && isIPv4(r.serverAddress) ? { address: r.serverAddress, port: r.serverPort } : { address: r.vip, port: r.vport };
    const end = r.startMs + Math.max(0, r.durationMs);
    const agoNs = BigInt(Math.max(0, now - end)) * 1_000_000n;
    return {
      timeNs: monotonic > agoNs ? monotonic - agoNs : 0n,
      cookie: 0n,
      source: { address: r.src, port: r.srcPort, ...identityOf(r.src) },
      destination: { ...dst, ...identityOf(dst.address) },
      protocol: TCP,
      hook: "l7",
      reason: passed ? "http-forwarded" : "http-refused",
      verdict: passed ? "pass" : "drop",
      ruleId: 0,
      originalDestination: { address: r.vip, port: r.vport },
      ifindex: 0,
      length: Math.min(U32_MAX, Math.max(0, r.bytesIn) + Math.max(0, r.bytesOut)),
    };
  });
}
