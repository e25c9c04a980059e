// SPDX-License-Identifier: Apache-2.0
/**
 * The API's own spans (WEFT_OTLP_ENDPOINT, issue 21): one SERVER span per
 * answered request, a child of the caller's span when it sent a valid W3C
 * traceparent, else a trace's root. Named by the route template
 * ("GET /v1/tenants/:tenant/services"), never the raw URL; url.path is the
 * path without its query, and no header is recorded (tokens travel in
 * Authorization). Spans queue and are exported in batches off the request
 * path (@weft/otlp's exporter): a slow or absent receiver never delays an
 * answer.
 */
import { hostname } from "node:os";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { msToNs, newSpanId, newTraceId, parseTraceparent, SpanExporter, type AttributeValue } from "@weft/otlp";

export const tracingPlugin = fp(
  async (app: FastifyInstance, opts: { endpoint: string }) => {
    const exporter = new SpanExporter({
      endpoint: opts.endpoint,
      source: { resource: { "service.name": "weft-api", "host.name": hostname() }, scope: { name: "weft-api" } },
      failed: (error) => app.log.warn({ error }, "failed to export the API's spans"),
    });
    app.addHook("onResponse", (request, reply, done) => {
      const parent = parseTraceparent(request.headers.traceparent);
      const route = request.routeOptions.url;
      const endNs = msToNs(Date.now());
      const attributes: Record<string, AttributeValue> = {
        "http.request.method": request.method,
        "url.path": request.url.split("?")[0]!,
        "http.response.status_code": reply.statusCode,
        "network.peer.address": request.socket.remoteAddress ?? "",
      };
      if (route) attributes["http.route"] = route;
      exporter.add({
        traceId: parent?.traceId ?? newTraceId(),
        spanId: newSpanId(),
        ...(parent ? { parentSpanId: parent.spanId } : {}),
        name: route ? `${request.method} ${route}` : request.method,
        kind: "server",
        startNs: endNs - BigInt(Math.round(reply.elapsedTime * 1_000_000)),
        endNs,
        attributes,
        ...(reply.statusCode >= 500 ? { error: `answered ${reply.statusCode}` } : {}),
      });
      done();
    });
    app.addHook("onClose", () => exporter.close());
  },
  { name: "weft-tracing" },
);
