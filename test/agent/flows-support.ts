/** Flow events as the codec decodes them from the ring, for the flows unit tests. */
import { verdictOf, type FlowEvent, type Reason } from "@weft/codec";

let nextNs = 1_000_000_000n;

/** A tc ingress event: 198.18.1.2:40000 (identity 11, tenant 1) -> 198.18.2.2:8080 (identity 22, tenant 1), TCP, 60 bytes. */
export function event(over: Partial<Omit<FlowEvent, "source" | "destination">> & { reason?: Reason; source?: Partial<FlowEvent["source"]>; destination?: Partial<FlowEvent["destination"]> } = {}): FlowEvent {
  const reason = over.reason ?? "default-deny";
  nextNs += 1_000_000n;
  return {
    timeNs: nextNs,
    cookie: 0n,
    protocol: 6,
    hook: "ingress",
    ruleId: 0,
    originalDestination: null,
    ifindex: 7,
    length: 60,
    ...over,
    reason,
    verdict: verdictOf(reason),
    source: { address: "198.18.1.2", port: 40000, identity: 11, tenant: 1, ...over.source },
    destination: { address: "198.18.2.2", port: 8080, identity: 22, tenant: 1, ...over.destination },
  };
}

/** CLOCK_MONOTONIC 0 is this wall time, exactly. */
export const fixedClock = { wallMs: (ns: bigint) => Date.UTC(2026, 11, 6, 12) + Number(ns / 1_000_000n) };
