// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's spans (issue 21): HAProxy 2.6 exports none, so the agent
 * mints one SERVER span per access record, with the ids the proxy put in
 * the record (render-trace.ts), and exports them over OTLP/HTTP
 * (--otlp-endpoint) as service.name weft-proxy, host.name the node. Off the
 * record path: spans only queue (@weft/otlp's exporter batches, retries and
 * drops when full), and what is exported or dropped is counted on /metrics.
 */
import { Counter, type Registry } from "prom-client";
import { msToNs, newSpanId, newTraceId, SpanExporter, type AttributeValue, type Span } from "@weft/otlp";
import type { AccessRecord } from "./access-log.ts";

/**
 * One record as a span, named "METHOD route/rule" (the route is the
 * low-cardinality name OpenTelemetry asks for; the path is an attribute).
 * A record without ids (a request HAProxy refused before its rules ran: a
 * bad request, a timeout) gets new ones: its span is a root.
 */
export function spanOfRecord(r: AccessRecord): Span {
  const [tenant, service] = r.service ? r.service.split("/") : ["", ""];
  const attributes: Record<string, AttributeValue> = {
    "http.request.method": r.method,
    "url.path": r.path,
    "server.address": r.vip,
    "server.port": r.vport,
    "network.peer.address": r.src,
    "network.peer.port": r.srcPort,
  };
  if (r.status > 0) attributes["http.response.status_code"] = r.status;
  const weft: Record<string, string | number> = { "weft.source.identity": r.caller, "weft.tenant": tenant ?? "", "weft.service": service ?? "", "weft.route": r.route, "weft.backend": r.backend, "weft.refused": r.refused, "weft.retries": r.retries };
  for (const [key, value] of Object.entries(weft)) if (value !== "" && value !== 0) attributes[key] = value;
  const error = r.refused ? `refused: ${r.refused}` : r.status >= 500 ? `answered ${r.status}` : r.status < 0 ? "no answer was sent" : undefined;
  const startNs = msToNs(r.startMs);
  return {
    traceId: r.traceId || newTraceId(),
    spanId: r.spanId || newSpanId(),
    ...(r.parentSpanId ? { parentSpanId: r.parentSpanId } : {}),
    name: r.route ? `${r.method} ${r.route}` : r.method,
    kind: "server",
    startNs,
    endNs: startNs + msToNs(Math.max(0, r.durationMs)),
    attributes,
    ...(error ? { error } : {}),
  };
}

export interface ProxyTracesOptions {
  endpoint: string;
  node: string;
  registry: Registry;
  /** Tests: a shorter flush interval. */
  flushMs?: number;
  onError?: (error: string) => void;
}

export class ProxyTraces {
  private readonly exporter: SpanExporter;
  private readonly dropped: Counter<"reason">;

  constructor(o: ProxyTracesOptions) {
    const registers = [o.registry];
    const exported = new Counter({ name: "weft_agent_l7_spans_exported_total", help: "Spans of the node's L7 proxy the OTLP receiver took", registers });
    this.dropped = new Counter({ name: "weft_agent_l7_spans_dropped_total", help: "Spans of the node's L7 proxy never exported, by why (queue-full, refused, retries-exhausted, closed, record-backlog)", labelNames: ["reason"], registers });
    const failed = new Counter({ name: "weft_agent_l7_span_export_failures_total", help: "Exports to the OTLP receiver that failed (tried again when retryable)", registers });
    this.exporter = new SpanExporter({
      endpoint: o.endpoint,
      source: { resource: { "service.name": "weft-proxy", "host.name": o.node }, scope: { name: "weft-agent" } },
      ...(o.flushMs !== undefined ? { flushMs: o.flushMs } : {}),
      exported: (n) => exported.inc(n),
      dropped: (n, reason) => this.dropped.inc({ reason }, n),
      failed: (error) => {
        failed.inc();
        o.onError?.(error);
      },
    });
  }

  /** The driver's batch of records (L7DriverOptions.records), with how many it left out. */
  records = (batch: readonly AccessRecord[], lost: number): void => {
    if (lost > 0) this.dropped.inc({ reason: "record-backlog" }, lost);
    for (const r of batch) this.exporter.add(spanOfRecord(r));
  };

  close(): Promise<void> {
    return this.exporter.close();
  }
}
