// SPDX-License-Identifier: Apache-2.0
/**
 * The transport's stream outcomes (src/transport/outcomes.ts) as flow
 * events of hook "transport", so they are kept, aggregated, counted and
 * shipped exactly like the kernel's: a carried stream is a pass with reason
 * transport-carried (forwarded), a refused stream or handshake a drop with
 * reason transport-refused. The transport's finer reason (forbidden,
 * unknown_ca, ...) stays in its own metrics: the flow contract's reasons
 * are the ABI's.
 *
 * Time: an event carries CLOCK_MONOTONIC nanoseconds like the kernel's, so
 * the collector's clock turns it into wall time the same way; the outcome's
 * wall-clock end is taken back to that clock here.
 */
import type { FlowEvent, Identity } from "@weft/codec";
import type { TransportOutcome } from "../transport/control-schema.ts";

const TCP = 6;
const U32_MAX = 0xffffffff;
const NO_ADDRESS = "0.0.0.0";

export interface OutcomeClock {
  /** CLOCK_MONOTONIC now, in ns (process.hrtime.bigint). */
  monotonicNs(): bigint;
  /** Wall clock now, in ms (Date.now). */
  nowMs(): number;
}

export const systemOutcomeClock: OutcomeClock = { monotonicNs: process.hrtime.bigint, nowMs: Date.now };

export function outcomeEvents(outcomes: readonly TransportOutcome[], identify: (address: string) => Identity, clock: OutcomeClock = systemOutcomeClock): FlowEvent[] {
  const monotonic = clock.monotonicNs();
  const now = clock.nowMs();
  return outcomes.map((o) => {
    const carried = o.result === "carried";
    const src = o.source.address ?? NO_ADDRESS;
    const dst = o.destination?.address ?? NO_ADDRESS;
    const sourceIds = o.source.address ? identify(o.source.address) : { identity: 0, tenant: 0 };
    const destinationIds = o.destination ? identify(o.destination.address) : { identity: 0, tenant: 0 };
    const agoNs = BigInt(Math.max(0, now - o.end)) * 1_000_000n;
    return {
      timeNs: monotonic > agoNs ? monotonic - agoNs : 0n,
      cookie: 0n,
      source: { address: src, port: o.source.port ?? 0, identity: sourceIds.identity, tenant: sourceIds.tenant },
      destination: { address: dst, port: o.destination?.port ?? 0, identity: destinationIds.identity, tenant: destinationIds.tenant },
      protocol: TCP,
      hook: "transport",
      reason: carried ? "transport-carried" : "transport-refused",
      verdict: carried ? "pass" : "drop",
      ruleId: 0,
      originalDestination: null,
      ifindex: 0,
      // Both ways: what the stream carried (the ABI's length is a u32).
      length: Math.min(U32_MAX, o.bytes.toPeer + o.bytes.fromPeer),
    };
  });
}
