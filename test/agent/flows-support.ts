/** Flow events as the codec decodes them from the ring, and as the ring holds them, for the flows unit tests. */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { constants, flowEventSize, layouts, parseIPv4, reasons, verdictOf, type FlowEvent, type Reason } from "@weft/codec";
import { AGGREGATES_MAX, IntervalAggregator, SAMPLES_MAX } from "../../nodeagent/src/flows/aggregate.ts";
import { flowOf, samplesOf } from "../../nodeagent/src/flows/flow.ts";
import { ApiClient, type FlowBatch } from "../../nodeagent/src/agent/client.ts";

/** A local server standing in for the API's flows route: every batch posted is kept, each answered 202. */
export async function flowBatchReceiver(): Promise<{ received: FlowBatch[]; client: ApiClient; close: () => Promise<void> }> {
  const received: FlowBatch[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString()) as FlowBatch);
      res.writeHead(202).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, "c");
  return { received, client, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

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

const hookCodes = { ingress: constants.HOOK_INGRESS, egress: constants.HOOK_EGRESS, sock: constants.HOOK_SOCK, transport: constants.HOOK_TRANSPORT, l7: constants.HOOK_L7 } as const;

/**
 * Events as the programs write them into the ring (struct weft_flow_event,
 * back to back), laid out from the codec's own layout table; the flows
 * model test checks decodeFlowEvents gives them back unchanged.
 */
export function encodeEvents(events: readonly FlowEvent[]): Uint8Array {
  const out = new Uint8Array(events.length * flowEventSize);
  const view = new DataView(out.buffer);
  events.forEach((e, i) => {
    const values: Record<string, number | bigint> = {
      time_ns: e.timeNs,
      cookie: e.cookie,
      saddr: parseIPv4(e.source.address),
      daddr: parseIPv4(e.destination.address),
      sport: e.source.port,
      dport: e.destination.port,
      protocol: e.protocol,
      hook: hookCodes[e.hook],
      reason: reasons[e.reason],
      src_identity: e.source.identity,
      src_tenant: e.source.tenant,
      dst_identity: e.destination.identity,
      dst_tenant: e.destination.tenant,
      rule_id: e.ruleId,
      orig_daddr: e.originalDestination ? parseIPv4(e.originalDestination.address) : 0,
      orig_dport: e.originalDestination?.port ?? 0,
      ifindex: e.ifindex,
      len: e.length,
    };
    for (const f of layouts["struct weft_flow_event"]!.fields) {
      if (f.kind === "pad") continue;
      const at = i * flowEventSize + f.offset;
      const v = values[f.name];
      if (v === undefined) throw new Error(`encodeEvents: no value for ${f.name}`);
      if (f.kind === "u64") view.setBigUint64(at, v as bigint, true);
      else if (f.kind === "u8") view.setUint8(at, Number(v));
      else if (f.kind === "u16") view.setUint16(at, Number(v), true);
      else if (f.kind === "u32") view.setUint32(at, Number(v), true);
      else if (f.kind === "be16") view.setUint16(at, Number(v), false);
      else view.setUint32(at, Number(v) >>> 0, false);
    }
  });
  return out;
}

/** An interval aggregator on the fixed clock. */
export function aggregator(startMs: number, limits = { aggregates: AGGREGATES_MAX, samples: SAMPLES_MAX }): IntervalAggregator {
  return new IntervalAggregator(startMs, (records) => samplesOf(records, fixedClock), limits);
}

/** Adds an event as the drain loop does: the flow, and its record. */
export function addEvent(agg: IntervalAggregator, e: FlowEvent): void {
  agg.add(flowOf(e, fixedClock), encodeEvents([e]));
}
