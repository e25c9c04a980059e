/**
 * What the API counts of the flows agents upload (per replica; Prometheus
 * sums replicas). Labels are closed sets (verdicts, where events were lost,
 * outcomes): no node, tenant or identity names, whose number has no bound.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { FlowBatch } from "./specs.ts";

export class FlowMetrics {
  private readonly flows: Counter<"verdict">;
  private readonly aggregates: Counter<"verdict">;
  private readonly lost: Counter<"where">;
  private readonly batches: Counter<"outcome">;
  readonly streams: Gauge;

  constructor(registry: Registry) {
    this.flows = new Counter({ name: "weft_flows_received_total", help: "Sampled flows stored from agents' batches, by verdict", labelNames: ["verdict"], registers: [registry] });
    this.aggregates = new Counter({
      name: "weft_flow_events_aggregated_total",
      help: "Flow events the agents counted in the aggregates they uploaded (the aggregates' counts), by verdict",
      labelNames: ["verdict"],
      registers: [registry],
    });
    this.lost = new Counter({
      name: "weft_flow_events_lost_total",
      help: "Flow events the agents report lost: in the kernel (rate limit, ring buffer full) or in the agent (buffer full)",
      labelNames: ["where"],
      registers: [registry],
    });
    this.batches = new Counter({ name: "weft_flow_batches_total", help: "Flow batches uploaded, by outcome (stored, duplicate, refused)", labelNames: ["outcome"], registers: [registry] });
    this.streams = new Gauge({ name: "weft_flow_streams", help: "Open flow follow streams on this replica", registers: [registry] });
    for (const where of ["kernel", "agent"]) this.lost.inc({ where }, 0);
    for (const outcome of ["stored", "duplicate", "refused"]) this.batches.inc({ outcome }, 0);
  }

  stored(batch: FlowBatch): void {
    this.batches.inc({ outcome: "stored" });
    for (const f of batch.flows) this.flows.inc({ verdict: f.verdict });
    for (const a of batch.aggregates) this.aggregates.inc({ verdict: a.verdict }, a.count);
    if (batch.lost.kernel > 0) this.lost.inc({ where: "kernel" }, batch.lost.kernel);
    if (batch.lost.agent > 0) this.lost.inc({ where: "agent" }, batch.lost.agent);
  }

  duplicate(): void {
    this.batches.inc({ outcome: "duplicate" });
  }

  refused(): void {
    this.batches.inc({ outcome: "refused" });
  }
}
