// SPDX-License-Identifier: Apache-2.0
/**
 * The flow metrics on the agent's Prometheus registry. Labels are bounded
 * by the ABI and the contract, never by traffic: verdict (4) x reason (20)
 * x hook (4) at most. Identities, tenants, addresses and ports are not
 * labels: each value would be a series of its own for as long as the agent
 * lives, so one scan across a /16 or a tenant churning identities would
 * grow the agent's memory and every Prometheus server scraping it without
 * bound. Who-talks-to-whom is what the aggregates shipped to the API (and
 * GET /flows on the node) answer.
 *
 * These count the events the agent received: under the kernel's rate limit
 * that is fewer than the packets (weft_datapath_packets counts every packet
 * by hook and reason); weft_flow_events_lost_total says how many fewer.
 */
import type { Hook, Reason } from "@weft/codec";
import { Counter, Gauge, type Registry } from "prom-client";
import type { FlowVerdict } from "./flow.ts";

/** Why an event did not reach the API: the kernel's bucket, the kernel's full ring, the agent's bounds, a batch the API refused. */
export type LostCause = "rate_limited" | "ring_full" | "agent_buffer" | "upload";
/** accepted (202), duplicate (200: a retry of a stored batch), failed (kept, retried), rejected (a 4xx other than 429: dropped). */
export type UploadResult = "accepted" | "duplicate" | "failed" | "rejected";

export class FlowMetrics {
  private readonly flows: Counter<"verdict" | "reason" | "hook">;
  private readonly drops: Counter<"reason">;
  private readonly lostEvents: Counter<"cause">;
  private readonly batches: Counter<"result">;
  private readonly pending: Gauge;
  private readonly buffered: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.flows = new Counter({ name: "weft_flows_total", help: "Flow events received from the datapath, by verdict, reason and hook", labelNames: ["verdict", "reason", "hook"], registers });
    this.drops = new Counter({ name: "weft_drops_total", help: "Drop events received from the datapath, by reason", labelNames: ["reason"], registers });
    this.lostEvents = new Counter({
      name: "weft_flow_events_lost_total",
      help: "Flow events lost: refused by the kernel's rate limit (rate_limited) or its full ring (ring_full), dropped by the agent's bounds (agent_buffer) or in a batch the API refused (upload)",
      labelNames: ["cause"],
      registers,
    });
    this.batches = new Counter({ name: "weft_flow_upload_batches_total", help: "Flow batch uploads to the API by result (failed ones are retried)", labelNames: ["result"], registers });
    this.pending = new Gauge({ name: "weft_flow_upload_pending_batches", help: "Flow batches waiting to be uploaded (one at a time; bounded)", registers });
    this.buffered = new Gauge({ name: "weft_flow_buffer_flows", help: "Flows kept in the agent's buffer for GET /flows", registers });
    // Every cause and result from the start: a rate of 0 reads differently from a series that does not exist.
    for (const cause of ["rate_limited", "ring_full", "agent_buffer", "upload"] as const) this.lostEvents.inc({ cause }, 0);
    for (const result of ["accepted", "duplicate", "failed", "rejected"] as const) this.batches.inc({ result }, 0);
  }

  /** `n` flows of one verdict, reason and hook (the collector counts a batch's before telling these). */
  flow(verdict: FlowVerdict, reason: Reason, hook: Hook, n = 1): void {
    this.flows.inc({ verdict, reason, hook }, n);
    if (verdict === "dropped") this.drops.inc({ reason }, n);
  }

  lost(cause: LostCause, n: number): void {
    if (n > 0) this.lostEvents.inc({ cause }, n);
  }

  batch(result: UploadResult): void {
    this.batches.inc({ result });
  }

  pendingBatches(n: number): void {
    this.pending.set(n);
  }

  bufferedFlows(n: number): void {
    this.buffered.set(n);
  }
}
