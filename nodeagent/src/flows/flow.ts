// SPDX-License-Identifier: Apache-2.0
/**
 * A kernel flow event as the agent keeps and ships it: wall-clock time, the
 * verdict in the API's words, both endpoints. The shapes are the upload
 * contract's (FLOWS_CONTRACT in src/agent/client.ts), so what GET /flows
 * shows an operator on the node is exactly what the API receives.
 */
import { decodeFlowEvents, type FlowEvent, type Reason } from "@weft/codec";
import type { FlowSample } from "../agent/client.ts";
import type { MonotonicClock } from "./clock.ts";

/** The verdicts the API stores: the kernel's pass split by why it passed. */
export type FlowVerdict = "forwarded" | "dropped" | "audit" | "translated";

/**
 * audit: a rule in audit mode would have dropped it (it passed); translated:
 * the socket LB sent it to a backend; any other pass: forwarded; drop: dropped.
 */
export function flowVerdict(verdict: FlowEvent["verdict"], reason: Reason): FlowVerdict {
  if (verdict === "drop") return "dropped";
  if (reason === "audit") return "audit";
  if (reason === "lb-translated") return "translated";
  return "forwarded";
}

/** A sample as shipped, plus what aggregation needs and the contract leaves out. */
export interface Flow {
  sample: FlowSample;
  /** The sample's verdict, typed. */
  verdict: FlowVerdict;
  /** Packet length in bytes (0 from the socket hook). */
  bytes: number;
}

/** What the interval's aggregates and the counters read of a flow: its sample without the time. */
export interface CountedFlow {
  sample: Omit<FlowSample, "time">;
  verdict: FlowVerdict;
  bytes: number;
}

/**
 * A flow as aggregation counts it. The time is formatted only for the
 * samples shipped or shown (samplesOf, from the bytes kept): a Date and an
 * ISO string per event were a large part of the agent's CPU per flow.
 */
export function countedFlowOf(event: FlowEvent): CountedFlow {
  const verdict = flowVerdict(event.verdict, event.reason);
  const sample = {
    hook: event.hook,
    verdict,
    reason: event.reason,
    ruleId: event.ruleId,
    protocol: event.protocol,
    // The decoded event's own objects: it is dropped right after, and a copy per event is garbage at thousands a second.
    src: event.source,
    dst: event.destination,
    ...(event.originalDestination ? { originalDst: event.originalDestination } : {}),
  };
  return { sample, verdict, bytes: event.length };
}

export function flowOf(event: FlowEvent, clock: MonotonicClock): Flow {
  const counted = countedFlowOf(event);
  return { ...counted, sample: { time: new Date(clock.wallMs(event.timeNs)).toISOString(), ...counted.sample } };
}

/** Drops and audits: what an operator asks about first, kept before allowed flows when samples must be cut. */
export const isNotable = (s: Pick<FlowSample, "verdict">): boolean => s.verdict === "dropped" || s.verdict === "audit";

/** Records as the ring holds them, back to back, as samples. */
export function samplesOf(records: Uint8Array, clock: MonotonicClock): FlowSample[] {
  return decodeFlowEvents(records).map((e) => flowOf(e, clock).sample);
}
