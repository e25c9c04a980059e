// SPDX-License-Identifier: Apache-2.0
// The L7 proxy's traces (issue 21) with the real HAProxy on loopback (no
// kernel: each frontend's "VIP" is a plain extra listener, as in
// l7-proxy.test.ts) and an OTLP receiver that decodes what the agent sends
// with the OpenTelemetry project's definitions. A request without a valid
// traceparent starts a trace; one with it continues it, the proxy's span a
// child of the caller's; the backend sees the proxy's span as its parent.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { L7DocumentAnswer } from "../../nodeagent/src/agent/client.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { ProxyTraces } from "../../nodeagent/src/l7/traces.ts";
import { OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { until, untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();
const WEB = { address: "127.0.0.20", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
const INTRUDER = { address: "127.0.0.21", tenant: "globex", spiffeId: "spiffe://globex.test/ns/x/sa/intruder" };
const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** One request from `caller`'s address; a fresh connection each. */
function call(caller: { address: string }, port: number, path: string, headers: Record<string, string | string[]> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, localAddress: caller.address, path, headers, agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end();
  });
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

describe.skipIf(NO_HAPROXY)("the L7 proxy's spans (real HAProxy, loopback, an OTLP receiver)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-traces-"));
  const registry = new Registry();
  const seen = new Map<string, IncomingHttpHeaders>();
  let backend: Server;
  let receiver: OtlpReceiver;
  let driver: L7Driver;
  let traces: ProxyTraces;
  let web: number, listen: number;

  /** What the backend got for a request to `path` (each test its own), and the span the receiver got for it. */
  async function exchange(path: string, headers: Record<string, string | string[]> = {}, caller = WEB): Promise<{ status: number; backendSaw: IncomingHttpHeaders | undefined; span: ReceivedSpan }> {
    const status = await call(caller, web, path, headers);
    const span = await until(`the span of ${path}`, 10_000, () => receiver.spans.find((s) => s.attributes["url.path"] === path.split("?")[0]));
    return { status, backendSaw: seen.get(path), span };
  }

  beforeAll(async () => {
    backend = createServer((req, res) => {
      seen.set(req.url ?? "", req.headers);
      req.resume();
      res.writeHead(req.url?.startsWith("/fail") ? 503 : 200).end("ok");
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
    receiver = await new OtlpReceiver().start();
    [web, listen] = [await freePort(), await freePort()];
    const doc: L7Document = {
      proxyAddress: "127.0.0.1",
      frontends: [
        {
          name: "f-web",
          tenant: "acme",
          service: "web",
          vip: "127.0.0.1",
          port: web,
          rules: [{ route: "pages", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/" } }], backends: [{ backend: "b-web", weight: 1 }] }],
          defaultBackend: "b-web",
          authorization: { governed: false, entries: [] },
        },
      ],
      backends: [{ name: "b-web", servers: [{ name: "w-1", address: "127.0.0.1", port: (backend.address() as AddressInfo).port, weight: 1 }] }],
      callers: [WEB, INTRUDER],
    };
    traces = new ProxyTraces({ endpoint: receiver.endpoint, node: "node-1", registry, flushMs: 100 });
    driver = new L7Driver({
      binary: HAPROXY,
      stateDir,
      document: async (etag): Promise<L7DocumentAnswer> => (etag === '"1"' ? { kind: "unchanged" } : { kind: "document", etag: '"1"', body: structuredClone(doc) }),
      registry,
      records: traces.records,
      pollMs: 200,
      listen: { address: "127.0.0.1", port: listen },
      extraBinds: [`127.0.0.1:${web}`],
      log: (level, msg, fields) => process.env.L7_DEBUG && console.log(level, msg, fields),
    });
    driver.start();
    await untilHolds("the proxy running", () => driver.status(), (s) => s.state === "running", 20_000);
  }, 30_000);

  afterAll(async () => {
    await driver?.stop();
    await traces?.close();
    await receiver?.close();
    backend?.closeAllConnections();
    await new Promise((r) => backend?.close(r));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("starts a trace for a request without traceparent: the backend's parent is the proxy's span, a root", async () => {
    const { status, backendSaw, span } = await exchange("/new?token=secret", { tracestate: "vendor=stale" });
    expect(status).toBe(200);
    const [, traceId, parent, flags] = TRACEPARENT.exec(String(backendSaw?.traceparent))!;
    expect({ traceId, parent, flags }).toEqual({ traceId: span.traceId, parent: span.spanId, flags: "01" });
    expect(span.parentSpanId).toBe("");
    // A tracestate without a traceparent belongs to no trace this one continues.
    expect(backendSaw?.tracestate).toBeUndefined();
    expect(span).toMatchObject({
      name: "GET pages/0",
      kind: "SPAN_KIND_SERVER",
      status: { code: "STATUS_CODE_UNSET" },
      resource: { "service.name": "weft-proxy", "host.name": "node-1" },
      attributes: {
        "http.request.method": "GET",
        // The path only: a query (which may carry a token) is never in a span.
        "url.path": "/new",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "server.port": web,
        "network.peer.address": WEB.address,
        "weft.source.identity": WEB.spiffeId,
        "weft.tenant": "acme",
        "weft.service": "web",
        "weft.route": "pages/0",
        "weft.backend": "b-web",
      },
    });
    expect(span.endTimeUnixNano).toBeGreaterThanOrEqual(span.startTimeUnixNano);
    expect(Number(span.startTimeUnixNano / 1_000_000n)).toBeGreaterThan(Date.now() - 60_000);
  });

  it("continues a caller's trace: same trace id, the caller's span the parent, tracestate unchanged, the flags kept", async () => {
    const { backendSaw, span } = await exchange("/continued", { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-00`, tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" });
    expect(span).toMatchObject({ traceId: CALLER_TRACE, parentSpanId: CALLER_SPAN });
    expect(span.spanId).not.toBe(CALLER_SPAN);
    expect(backendSaw?.traceparent).toBe(`00-${CALLER_TRACE}-${span.spanId}-00`);
    expect(backendSaw?.tracestate).toBe("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  });

  it.each([
    ["upper case", `00-${CALLER_TRACE.toUpperCase()}-${CALLER_SPAN}-01`],
    ["an unknown version", `01-${CALLER_TRACE}-${CALLER_SPAN}-01`],
    ["an all-zero trace id", `00-${"0".repeat(32)}-${CALLER_SPAN}-01`],
    ["an all-zero parent id", `00-${CALLER_TRACE}-${"0".repeat(16)}-01`],
    ["a short trace id", `00-${CALLER_TRACE.slice(2)}-${CALLER_SPAN}-01`],
    ["JSON that would break the record", `00-${CALLER_TRACE}-${CALLER_SPAN}-01","status":1`],
    ["two headers", [`00-${CALLER_TRACE}-${CALLER_SPAN}-01`, `00-${CALLER_TRACE}-${CALLER_SPAN}-01`]],
  ])("treats a traceparent with %s as absent: a new trace, the tracestate dropped", async (what, traceparent) => {
    const path = `/invalid-${what.replace(/\W+/g, "-")}`;
    const { backendSaw, span } = await exchange(path, { traceparent, tracestate: "vendor=x" });
    expect(span.traceId).not.toBe(CALLER_TRACE);
    expect(span.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(span.parentSpanId).toBe("");
    expect(backendSaw?.traceparent).toBe(`00-${span.traceId}-${span.spanId}-01`);
    expect(backendSaw?.tracestate).toBeUndefined();
  });

  it("marks a refused request and a backend's 5xx as errors", async () => {
    const refused = await exchange("/refused", { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` }, INTRUDER);
    expect(refused.status).toBe(403);
    expect(refused.backendSaw).toBeUndefined();
    expect(refused.span).toMatchObject({ traceId: CALLER_TRACE, parentSpanId: CALLER_SPAN, name: "GET", status: { code: "STATUS_CODE_ERROR", message: "refused: forbidden" } });
    expect(refused.span.attributes).toMatchObject({ "http.response.status_code": 403, "weft.refused": "forbidden", "weft.source.identity": INTRUDER.spiffeId });
    const failed = await exchange("/fail");
    expect(failed.span.status).toEqual({ code: "STATUS_CODE_ERROR", message: "answered 503" });
  });

  it("counts exported spans on /metrics, none dropped", async () => {
    // The receiver holds a batch before the exporter, answered, counts it: wait for the count to catch up.
    const exportedNow = async () => Number(/^weft_agent_l7_spans_exported_total (\d+)$/m.exec(await registry.metrics())?.[1]);
    const exported = await untilHolds("every received span to be counted", exportedNow, (n) => n >= receiver.spans.length, 5_000, 20);
    expect(exported).toBeGreaterThanOrEqual(11);
    const text = await registry.metrics();
    expect(text).not.toMatch(/^weft_agent_l7_spans_dropped_total\{/m);
  });
});
