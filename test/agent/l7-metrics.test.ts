// SPDX-License-Identifier: Apache-2.0
// The proxy's requests on /metrics (nodeagent/src/l7/metrics.ts): labels
// come from the document only, so a client cannot mint series (a route or
// frontend the document does not name folds into ""), and series of routes
// a new document dropped are removed. The proxy's refusals are counted by
// reason (rate-limited, overflow: a trafficPolicy), from a fixed set.
import { Registry } from "prom-client";
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

  it("classes status codes, -1 (no answer) as none", () => {
    expect([100, 204, 301, 403, 503, 599, 600, -1, 0].map(codeClass)).toEqual(["1xx", "2xx", "3xx", "4xx", "5xx", "5xx", "none", "none", "none"]);
  });
});
