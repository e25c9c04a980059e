// SPDX-License-Identifier: Apache-2.0
// The API's own spans (WEFT_OTLP_ENDPOINT, issue 21), sent to an OTLP
// receiver that decodes them with the OpenTelemetry project's definitions:
// a child of the caller's span when it sent a valid traceparent, else a
// root; named by the route template; no token, header or query in them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configFromEnv, ConfigError } from "../../api/src/config.ts";
import type { WeftApp } from "../../api/src/app.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bearer, operator, OPERATOR_TOKEN, startApi, tenantWithToken } from "../support/api.ts";
import { startApiProcess } from "../support/api-process.ts";
import { OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { until } from "../support/until.ts";

const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

describe("the API's request spans", () => {
  let receiver: OtlpReceiver;
  let app: WeftApp;
  let tenant: string, token: string;

  beforeAll(async () => {
    receiver = await new OtlpReceiver().start();
    app = await startApi("pglite", { otlpEndpoint: receiver.endpoint });
    ({ tenant, token } = await tenantWithToken(app, ["read"]));
  });
  afterAll(async () => {
    await app?.close();
    await receiver?.close();
  });

  const spanOf = (path: string): Promise<ReceivedSpan> => until(`the span of ${path}`, 10_000, () => receiver.spans.find((s) => s.attributes["url.path"] === path));

  it("continues the caller's trace, names the span by its route template, and records neither the query nor the token", async () => {
    const path = `/v1/tenants/${tenant}/services`;
    const res = await app.inject({ method: "GET", url: `${path}?limit=5`, headers: { ...bearer(token), traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` } });
    expect(res.statusCode).toBe(200);
    const span = await spanOf(path);
    expect(span).toMatchObject({
      traceId: CALLER_TRACE,
      parentSpanId: CALLER_SPAN,
      name: "GET /v1/tenants/:tenant/services",
      kind: "SPAN_KIND_SERVER",
      status: { code: "STATUS_CODE_UNSET" },
      resource: { "service.name": "weft-api" },
      attributes: { "http.request.method": "GET", "http.route": "/v1/tenants/:tenant/services", "url.path": path, "http.response.status_code": 200 },
    });
    expect(span.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(span.spanId).not.toBe(CALLER_SPAN);
    expect(span.endTimeUnixNano).toBeGreaterThanOrEqual(span.startTimeUnixNano);
    expect(JSON.stringify(span, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain(token);
  });

  it("starts a trace when the traceparent is absent or invalid; a refusal is a 4xx, not an error", async () => {
    const path = `/v1/tenants/${tenant}/workloads`;
    const res = await app.inject({ method: "GET", url: path, headers: { traceparent: `00-${"0".repeat(32)}-${CALLER_SPAN}-01` } });
    expect(res.statusCode).toBe(401);
    const span = await spanOf(path);
    expect(span.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(span.traceId).not.toBe("0".repeat(32));
    expect(span.parentSpanId).toBe("");
    expect(span).toMatchObject({ attributes: { "http.response.status_code": 401 }, status: { code: "STATUS_CODE_UNSET" } });
  });

  it("names a request no route matched by its method only", async () => {
    await app.inject({ method: "GET", url: "/no/such/route" });
    const span = await spanOf("/no/such/route");
    expect(span.name).toBe("GET");
    expect(span.attributes).not.toHaveProperty("http.route");
  });
});

describe("the API process (api/src/server.ts) with WEFT_OTLP_ENDPOINT", () => {
  it("exports its spans there, and the spans still waiting when it stops", async () => {
    const receiver = await new OtlpReceiver().start();
    const dataDir = mkdtempSync(join(tmpdir(), "weft-api-tracing-"));
    const api = await startApiProcess({ WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, WEFT_DATA_DIR: dataDir, WEFT_OTLP_ENDPOINT: receiver.endpoint });
    try {
      const res = await fetch(`${api.base}/v1/tenants`, { headers: { ...operator, traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` } });
      expect(res.status).toBe(200);
      // Stopped at once: the span is sent on the way out, not lost with the batch that waited.
      await api.stop();
      const span = receiver.spans.find((s) => s.traceId === CALLER_TRACE);
      expect(span).toMatchObject({ parentSpanId: CALLER_SPAN, name: "GET /v1/tenants", resource: { "service.name": "weft-api" }, attributes: { "http.response.status_code": 200 } });
    } finally {
      await api.stop();
      await receiver.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe("WEFT_OTLP_ENDPOINT", () => {
  const env = { WEFT_OPERATOR_TOKEN: "weft_op_test-operator-token-0123456789" };
  it("is off when unset and takes only an http(s) URL without credentials", () => {
    expect(configFromEnv(env)).not.toHaveProperty("otlpEndpoint");
    expect(configFromEnv({ ...env, WEFT_OTLP_ENDPOINT: "http://collector:4318" }).otlpEndpoint).toBe("http://collector:4318");
    for (const bad of ["collector", "ftp://collector", "http://u:p@collector"]) {
      expect(() => configFromEnv({ ...env, WEFT_OTLP_ENDPOINT: bad }), bad).toThrow(ConfigError);
    }
  });
});
