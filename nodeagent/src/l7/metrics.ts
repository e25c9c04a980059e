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
 *
 * Requests and durations are counted per record in plain arrays of the
 * series the document names (resolved when it is followed), and handed to
 * prom-client only when /metrics is scraped: prom-client hashes a metric's
 * labels on every inc and observe, twice per proxied request, which was a
 * fifth of the agent's CPU per record (bench:l7-records).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { AccessRecord } from "./access-log.ts";
import { bucketOf, registerBucketHistogram } from "./bucket-histogram.ts";
import type { L7Document } from "./document.ts";

/** The records' milliseconds: from a cache hit on loopback to the 30 s default timeout. */
const BUCKETS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000];
/** The same in seconds, as published (x / 1000 is the double nearest to the decimal, so `le` reads "0.0025"); an integer n ms falls in the bucket n / 1000 s does. */
const BUCKETS = BUCKETS_MS.map((ms) => ms / 1000);

export const codeClass = (status: number) => (status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : "none");
const CODE_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const NO_CLASS = CODE_CLASSES.length - 1;
const codeClassIndex = (status: number) => (status >= 100 && status <= 599 ? Math.floor(status / 100) - 1 : NO_CLASS);
/** The refusals render.ts, traffic-render.ts and proxy-errors.ts write ("": a backend was asked). */
const REFUSALS = ["", "forbidden", "bad-request", "no-frontend", "no-backend", "no-servers", "rate-limited", "overflow", "other"];
const OTHER = REFUSALS.length - 1;
function refusalIndex(refused: string): number {
  const i = REFUSALS.indexOf(refused);
  return i < 0 ? OTHER : i;
}
export const refusalOf = (refused: string) => REFUSALS[refusalIndex(refused)]!;

type SeriesLabels = { tenant: string; service: string; route: string };
const serviceKey = (l: { tenant: string; service: string }) => `${l.tenant}\n${l.service}`;
const seriesKey = (l: SeriesLabels) => `${l.tenant}\n${l.service}\n${l.route}`;

/**
 * One (tenant, service, route)'s requests as counted per record: by status
 * class and refusal, and their durations by bucket. Plain numbers in
 * arrays made once per series: a record costs a few increments, and
 * prom-client hears of them only when /metrics is scraped.
 */
class Series {
  /** [code class][refusal], flattened. */
  readonly requests = new Float64Array(CODE_CLASSES.length * REFUSALS.length);
  readonly buckets = new Float64Array(BUCKETS.length + 1);
  sumMs = 0;
  count = 0;
  constructor(readonly labels: Readonly<SeriesLabels>) {}

  get sum(): number {
    return this.sumMs / 1000;
  }

  add(status: number, refused: string, durationMs: number): void {
    this.requests[codeClassIndex(status) * REFUSALS.length + refusalIndex(refused)]!++;
    if (durationMs < 0) return;
    this.buckets[bucketOf(BUCKETS_MS, durationMs)]!++;
    this.sumMs += durationMs;
    this.count++;
  }
}

/** A frontend of the document: the series of each route its rules name, and of its requests no route named. */
interface FrontendSeries {
  routes: Map<string, Series>;
  unrouted: Series;
}

export class L7Metrics {
  private readonly ejections: Counter<"tenant" | "service">;
  private readonly ejectedServices = new Map<string, { tenant: string; service: string }>();
  readonly up: Gauge;
  readonly restarts: Counter;
  readonly applies: Counter<"kind" | "result">;
  readonly unreadable: Counter;
  readonly recordsDropped: Counter<"stage">;
  /** Frontend name -> its series, resolved when a document is followed. */
  private frontends = new Map<string, FrontendSeries>();
  /** Records of a frontend the document does not name. */
  private readonly unnamed = new Series({ tenant: "", service: "", route: "" });
  /** Every series the document names, by its labels' key: a frontend renamed keeps counting into its service's series. */
  private series = new Map<string, Series>([[seriesKey(this.unnamed.labels), this.unnamed]]);

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
    const series = () => this.series.values();
    new Counter({
      name: "weft_http_requests_total",
      help: "Requests through the node's L7 proxy, by frontend service, route (route/rule), status class and why the proxy refused it (\"\": a backend was asked)",
      labelNames: ["tenant", "service", "route", "code_class", "refused"],
      registers,
      // Published from the series' counts at each scrape: the series the document no longer names are gone with them.
      collect() {
        this.reset();
        for (const s of series()) {
          for (const [i, n] of s.requests.entries()) {
            if (n > 0) this.inc({ ...s.labels, code_class: CODE_CLASSES[Math.floor(i / REFUSALS.length)]!, refused: REFUSALS[i % REFUSALS.length]! }, n);
          }
        }
      },
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
    registerBucketHistogram(registry, { name: "weft_http_request_duration_seconds", help: "Time from a request's first byte to its answer's last, at the node's L7 proxy", bounds: BUCKETS, series });
    this.up = new Gauge({ name: "weft_agent_l7_up", help: "1 while the node's L7 proxy runs and serves the applied document, else 0", registers });
    this.up.set(0);
    this.restarts = new Counter({ name: "weft_agent_l7_restarts_total", help: "Times the L7 proxy was started again after it exited or failed to start", registers });
    this.applies = new Counter({ name: "weft_agent_l7_applies_total", help: "L7 documents applied to the proxy, by how (reload, weights, start) and result", labelNames: ["kind", "result"], registers });
    this.unreadable = new Counter({ name: "weft_agent_l7_unreadable_log_lines_total", help: "Records from the proxy the agent could not read (cut, or not the format it renders), and connections to its record socket that sent something else", registers });
  }

  /** The names the next records are counted under. */
  follow(doc: L7Document): void {
    const kept = new Map<string, Series>([[seriesKey(this.unnamed.labels), this.unnamed]]);
    const seriesOf = (labels: SeriesLabels) => {
      const key = seriesKey(labels);
      const s = kept.get(key) ?? this.series.get(key) ?? new Series(labels);
      kept.set(key, s);
      return s;
    };
    this.frontends = new Map(
      doc.frontends.map((f) => {
        const routes = new Map(f.rules.map((r) => `${r.route}/${r.rule}`).map((route) => [route, seriesOf({ tenant: f.tenant, service: f.service, route })]));
        return [f.name, { routes, unrouted: seriesOf({ tenant: f.tenant, service: f.service, route: "" }) }];
      }),
    );
    // Series of services and routes the document no longer names are dropped, counts and all.
    this.series = kept;
    const services = new Set(doc.frontends.map(serviceKey));
    for (const [key, labels] of this.ejectedServices) {
      if (services.has(key)) continue;
      this.ejections.remove(labels);
      this.ejectedServices.delete(key);
    }
  }

  record(r: AccessRecord): void {
    const f = this.frontends.get(r.frontend);
    const s = f ? (f.routes.get(r.route) ?? f.unrouted) : this.unnamed;
    s.add(r.status, r.refused, r.durationMs);
  }

  /** One outlier ejection of a backend of `tenant`/`service`. */
  ejection(labels: { tenant: string; service: string }): void {
    this.ejectedServices.set(serviceKey(labels), labels);
    this.ejections.inc(labels);
  }
}
