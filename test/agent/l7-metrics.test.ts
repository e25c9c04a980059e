// SPDX-License-Identifier: Apache-2.0
// The proxy's requests on /metrics (nodeagent/src/l7/metrics.ts): labels
// come from the document only, so a client cannot mint series (a route or
// frontend the document does not name folds into ""), and series of routes
// a new document dropped are removed. The proxy's refusals are counted by
// reason (rate-limited, overflow: a trafficPolicy), from a fixed set.
// The agent counts per record in plain arrays and publishes on scrape: what
// a scrape shows is what prom-client's own Counter and Histogram, fed one
// record at a time as the agent did before, show for the same records.
import fc from "fast-check";
import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import { codeClass, L7Metrics } from "../../nodeagent/src/l7/metrics.ts";
import { richDocument } from "./l7-fixtures.ts";

const record = (o: Partial<AccessRecord>): AccessRecord => ({
  startMs: 0,
  src: "198.18.0.10",
  srcPort: 40000,
  caller: "",
  frontend: "f-1-80",
  service: "acme/api",
  vip: "198.19.0.10",
  vport: 80,
  route: "canary/1",
  backend: "b-1-1-0",
  server: "w-11",
  serverAddress: "198.18.1.11",
  serverPort: 8080,
  status: 200,
  durationMs: 3,
  retries: 0,
  bytesIn: 10,
  bytesOut: 20,
  method: "GET",
  path: "/api",
  traceId: "",
  spanId: "",
  parentSpanId: "",
  refused: "",
  ...o,
});

describe("the proxy's request metrics", () => {
  it("labels by the document's names, folds the rest into '', and forgets routes a new document drops", async () => {
    const registry = new Registry();
    const m = new L7Metrics(registry);
    m.follow(richDocument());
    m.record(record({}));
    m.record(record({ route: "made-up-by-a-client/7", status: 503 }));
    m.record(record({ frontend: "f-unknown", status: -1 }));
    m.record(record({ route: "", server: "<NOSRV>", serverPort: 0, status: 429, refused: "rate-limited" }));
    m.record(record({ route: "", server: "<NOSRV>", serverPort: 0, status: 503, refused: "overflow" }));
    m.record(record({ route: "", server: "<NOSRV>", serverPort: 0, status: 503, refused: "made-up-reason" }));
    let text = await registry.metrics();
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="canary\/1",code_class="2xx",refused=""\} 1$/m);
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="",code_class="5xx",refused=""\} 1$/m);
    expect(text).toMatch(/^weft_http_requests_total\{tenant="",service="",route="",code_class="none",refused=""\} 1$/m);
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="",code_class="4xx",refused="rate-limited"\} 1$/m);
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="",code_class="5xx",refused="overflow"\} 1$/m);
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="",code_class="5xx",refused="other"\} 1$/m);
    expect(text).not.toMatch(/made-up/);
    expect(text).toMatch(/^weft_http_request_duration_seconds_bucket\{le="0.005",tenant="acme",service="api",route="canary\/1"\} 1$/m);

    const next = richDocument();
    next.frontends[0]!.rules = next.frontends[0]!.rules.filter((r) => r.route !== "canary");
    m.follow(next);
    text = await registry.metrics();
    expect(text).not.toMatch(/route="canary\/1"/);
    // The service's own series stay: it is still in the document.
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="",code_class="5xx",refused=""\} 1$/m);
    expect(text).toMatch(/^weft_http_requests_total\{tenant="acme",service="api",route="",code_class="4xx",refused="rate-limited"\} 1$/m);
  });

  it("counts outlier ejections and ejected backends per service, and forgets a service a new document drops", async () => {
    const registry = new Registry();
    let ejected = [{ tenant: "acme", service: "api", ejected: 1 }];
    const m = new L7Metrics(registry, async () => null, () => ejected);
    m.follow(richDocument());
    m.ejection({ tenant: "acme", service: "api" });
    m.ejection({ tenant: "acme", service: "api" });
    let text = await registry.metrics();
    expect(text).toMatch(/^weft_http_outlier_ejections_total\{tenant="acme",service="api"\} 2$/m);
    expect(text).toMatch(/^weft_http_ejected_backends\{tenant="acme",service="api"\} 1$/m);
    ejected = [];
    const next = richDocument();
    next.frontends.splice(0, 1);
    m.follow(next);
    text = await registry.metrics();
    expect(text).not.toMatch(/service="api"/);
  });

  it("publishes on scrape exactly what prom-client's own metrics fed record by record show, across document changes", async () => {
    const doc = richDocument();
    const next = richDocument();
    next.frontends[0]!.rules = next.frontends[0]!.rules.filter((r) => r.route !== "canary");
    const arbitraryRecord = fc.record({
      frontend: fc.constantFrom("f-1-80", "f-2-8080", "f-unknown", ""),
      route: fc.constantFrom("canary/0", "canary/1", "empty/0", "", "made-up/1"),
      status: fc.oneof(fc.constantFrom(-1, 0, 99, 100, 200, 302, 404, 429, 503, 599, 600), fc.integer({ min: -1, max: 700 })),
      refused: fc.constantFrom("", "forbidden", "bad-request", "no-frontend", "no-backend", "no-servers", "rate-limited", "overflow", "other", "made-up"),
      // Every bucket bound in ms, either side of it, and past the last.
      durationMs: fc.oneof(fc.constantFrom(-1, 0, 1, 2, 3, 5, 6, 10, 11, 25, 26, 50, 100, 101, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 30_001), fc.integer({ min: -1, max: 40_000 })),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(arbitraryRecord, { maxLength: 60 }), fc.array(arbitraryRecord, { maxLength: 60 }), async (before, after) => {
        const registry = new Registry();
        const m = new L7Metrics(registry);
        const oracle = new PerRecordMetrics();
        for (const [d, records] of [[doc, before], [next, after]] as const) {
          m.follow(d);
          oracle.follow(d);
          for (const o of records) {
            m.record(record(o));
            oracle.record(record(o));
          }
          expect(exposition(await registry.metrics())).toEqual(exposition(await oracle.registry.metrics()));
        }
      }),
      { numRuns: 200 },
    );
  });

  it("classes status codes, -1 (no answer) as none", () => {
    expect([100, 204, 301, 403, 503, 599, 600, -1, 0].map(codeClass)).toEqual(["1xx", "2xx", "3xx", "4xx", "5xx", "5xx", "none", "none", "none"]);
  });
});

/**
 * The requests and durations as the agent counted them before it kept its
 * own counts (prom-client's metrics, one inc and one observe per record,
 * series removed when a document stops naming them): the oracle.
 */
class PerRecordMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: "weft_http_requests_total", help: "h", labelNames: ["tenant", "service", "route", "code_class", "refused"], registers: [this.registry] });
  private readonly duration = new Histogram({ name: "weft_http_request_duration_seconds", help: "h", labelNames: ["tenant", "service", "route"], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  private names = new Map<string, { tenant: string; service: string; routes: Set<string> }>();
  private readonly series = new Map<string, { tenant: string; service: string; route: string }>();
  private static readonly REFUSALS = ["", "forbidden", "bad-request", "no-frontend", "no-backend", "no-servers", "rate-limited", "overflow", "other"];

  follow(doc: ReturnType<typeof richDocument>): void {
    this.names = new Map(doc.frontends.map((f) => [f.name, { tenant: f.tenant, service: f.service, routes: new Set(f.rules.map((r) => `${r.route}/${r.rule}`)) }]));
    const named = new Set([...this.names.values()].flatMap((f) => ["", ...f.routes].map((route) => `${f.tenant}\n${f.service}\n${route}`)));
    named.add("\n\n");
    for (const [key, labels] of this.series) {
      if (named.has(key)) continue;
      for (const code_class of ["1xx", "2xx", "3xx", "4xx", "5xx", "none"]) for (const refused of PerRecordMetrics.REFUSALS) this.requests.remove({ ...labels, code_class, refused });
      this.duration.remove(labels);
      this.series.delete(key);
    }
  }

  record(r: AccessRecord): void {
    const f = this.names.get(r.frontend);
    const labels = { tenant: f?.tenant ?? "", service: f?.service ?? "", route: f?.routes.has(r.route) ? r.route : "" };
    this.series.set(`${labels.tenant}\n${labels.service}\n${labels.route}`, labels);
    this.requests.inc({ ...labels, code_class: codeClass(r.status), refused: PerRecordMetrics.REFUSALS.includes(r.refused) ? r.refused : "other" });
    if (r.durationMs >= 0) this.duration.observe(labels, r.durationMs / 1000);
  }
}

/**
 * The request and duration lines of an exposition, in order of their text
 * (series may come in another order), each _sum rounded to the microsecond:
 * prom-client adds up seconds in floating point, the agent milliseconds.
 */
function exposition(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => /^weft_http_request(s_total|_duration_seconds_\w+)\{/.test(l))
    .map((l) => (l.startsWith("weft_http_request_duration_seconds_sum") ? l.replace(/ (\S+)$/, (_, v: string) => ` ${Number(v).toFixed(6)}`) : l))
    .sort();
}
