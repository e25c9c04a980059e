// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's requests on the agent's /metrics. Cardinality is bounded by
 * the document: tenant and service come from the frontend the record
 * names, route from that frontend's rules; anything the document does not
 * name (a record of a document just replaced, no frontend) has "" there.
 * Series of services and routes a new document no longer names are
 * removed, so route churn over months does not pile them up. Why the
 * proxy refused a request (the record's `refused`) is one of the reasons
 * render.ts writes, anything else "other".
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { AccessRecord } from "./access-log.ts";
import type { L7Document } from "./document.ts";

const LABELS = ["tenant", "service", "route"] as const;
/** Seconds: from a cache hit on loopback to the 30 s default timeout. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export const codeClass = (status: number) => (status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : "none");
const CODE_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
/** The refusals render.ts, traffic-render.ts and proxy-errors.ts write ("": a backend was asked). */
const REFUSALS = ["", "forbidden", "bad-request", "no-frontend", "no-backend", "no-servers", "rate-limited", "overflow", "other"];
export const refusalOf = (refused: string) => (REFUSALS.includes(refused) ? refused : "other");
const serviceKey = (l: { tenant: string; service: string }) => `${l.tenant}\n${l.service}`;
const seriesKey = (l: { tenant: string; service: string; route: string }) => `${l.tenant}\n${l.service}\n${l.route}`;

export class L7Metrics {
  private readonly requests: Counter<"tenant" | "service" | "route" | "code_class" | "refused">;
  private readonly ejections: Counter<"tenant" | "service">;
  private readonly ejectedServices = new Map<string, { tenant: string; service: string }>();
  private readonly duration: Histogram<"tenant" | "service" | "route">;
  readonly up: Gauge;
  readonly restarts: Counter;
  readonly applies: Counter<"kind" | "result">;
  readonly unreadable: Counter;
  readonly recordsDropped: Counter<"stage">;
  /** Frontend name -> tenant, service and the routes its rules name. */
  private names = new Map<string, { tenant: string; service: string; routes: Set<string> }>();
  /** Every (tenant, service, route) a series was made for, by its key. */
  private readonly series = new Map<string, { tenant: string; service: string; route: string }>();

  /**
   * `droppedLogs`: the records the serving worker dropped and has not
   * announced in its record ring yet (the announced ones are in
   * `recordsDropped`), null while none runs; `ejected`: the backends
   * outlier ejection holds out now, per service (outlier.ts).
   */
  constructor(
    registry: Registry,
    droppedLogs: () => Promise<number | null> = async () => null,
    ejected: () => { tenant: string; service: string; ejected: number }[] = () => [],
  ) {
    const registers = [registry];
    new Gauge({
      name: "weft_agent_l7_dropped_log_records",
      help: "Access records the serving HAProxy worker dropped (its record ring was full: the agent read too slowly) that it has not yet announced; announced ones are in weft_agent_l7_records_dropped_total",
      registers,
      async collect() {
        this.set((await droppedLogs().catch(() => null)) ?? 0);
      },
    });
    this.recordsDropped = new Counter({
      name: "weft_agent_l7_records_dropped_total",
      help: 'Request records lost: stage "proxy", dropped by HAProxy when its record ring was full (as it announces them); stage "agent", read but left out of flows and spans because the agent\'s batch was full',
      labelNames: ["stage"],
      registers,
    });
    for (const stage of ["proxy", "agent"]) this.recordsDropped.inc({ stage }, 0);
    this.requests = new Counter({
      name: "weft_http_requests_total",
      help: "Requests through the node's L7 proxy, by frontend service, route (route/rule), status class and why the proxy refused it (\"\": a backend was asked)",
      labelNames: [...LABELS, "code_class", "refused"],
      registers,
    });
    this.ejections = new Counter({ name: "weft_http_outlier_ejections_total", help: "Backends the node's proxy took out of a service's rotation for failing in a row (trafficPolicy outlierDetection)", labelNames: ["tenant", "service"], registers });
    new Gauge({
      name: "weft_http_ejected_backends",
      help: "Backends of a service the node's proxy holds out of rotation now (trafficPolicy outlierDetection)",
      labelNames: ["tenant", "service"],
      registers,
      collect() {
        this.reset();
        for (const c of ejected()) this.set({ tenant: c.tenant, service: c.service }, c.ejected);
      },
    });
    this.duration = new Histogram({ name: "weft_http_request_duration_seconds", help: "Time from a request's first byte to its answer's last, at the node's L7 proxy", labelNames: LABELS, buckets: BUCKETS, registers });
    this.up = new Gauge({ name: "weft_agent_l7_up", help: "1 while the node's L7 proxy runs and serves the applied document, else 0", registers });
    this.up.set(0);
    this.restarts = new Counter({ name: "weft_agent_l7_restarts_total", help: "Times the L7 proxy was started again after it exited or failed to start", registers });
    this.applies = new Counter({ name: "weft_agent_l7_applies_total", help: "L7 documents applied to the proxy, by how (reload, weights, start) and result", labelNames: ["kind", "result"], registers });
    this.unreadable = new Counter({ name: "weft_agent_l7_unreadable_log_lines_total", help: "Records from the proxy the agent could not read (cut, or not the format it renders), and connections to its record socket that sent something else", registers });
  }

  /** The names the next records are counted under. */
  follow(doc: L7Document): void {
    this.names = new Map(doc.frontends.map((f) => [f.name, { tenant: f.tenant, service: f.service, routes: new Set(f.rules.map((r) => `${r.route}/${r.rule}`)) }]));
    const named = new Set([...this.names.values()].flatMap((f) => ["", ...f.routes].map((route) => seriesKey({ tenant: f.tenant, service: f.service, route }))));
    named.add(seriesKey({ tenant: "", service: "", route: "" }));
    const services = new Set([...this.names.values()].map(serviceKey));
    for (const [key, labels] of this.ejectedServices) {
      if (services.has(key)) continue;
      this.ejections.remove(labels);
      this.ejectedServices.delete(key);
    }
    for (const [key, labels] of this.series) {
      if (named.has(key)) continue;
      for (const code_class of CODE_CLASSES) for (const refused of REFUSALS) this.requests.remove({ ...labels, code_class, refused });
      this.duration.remove(labels);
      this.series.delete(key);
    }
  }

  record(r: AccessRecord): void {
    const f = this.names.get(r.frontend);
    const labels = { tenant: f?.tenant ?? "", service: f?.service ?? "", route: f?.routes.has(r.route) ? r.route : "" };
    this.series.set(seriesKey(labels), labels);
    this.requests.inc({ ...labels, code_class: codeClass(r.status), refused: refusalOf(r.refused) });
    if (r.durationMs >= 0) this.duration.observe(labels, r.durationMs / 1000);
  }

  /** One outlier ejection of a backend of `tenant`/`service`. */
  ejection(labels: { tenant: string; service: string }): void {
    this.ejectedServices.set(serviceKey(labels), labels);
    this.ejections.inc(labels);
  }
}
