// SPDX-License-Identifier: Apache-2.0
/**
 * Spans as an OTLP ExportTraceServiceRequest in protobuf (the body of an
 * OTLP/HTTP POST /v1/traces), encoded with the OpenTelemetry project's own
 * definitions (../proto, loaded once).
 */
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import type { AttributeValue, Span } from "./span.ts";

const PROTO_ROOT = fileURLToPath(new URL("../proto/", import.meta.url));
const SERVICE_PROTO = "opentelemetry/proto/collector/trace/v1/trace_service.proto";

let root: protobuf.Root | null = null;
/** The loaded definitions (tests decode with them too). */
export function otlpProtoRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  // Imports name files from the root of the proto tree.
  r.resolvePath = (_origin, target) => (target.startsWith("/") ? target : `${PROTO_ROOT}${target}`);
  r.loadSync(SERVICE_PROTO, { keepCase: false });
  return (root = r);
}

export const EXPORT_REQUEST = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest";
export const EXPORT_RESPONSE = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse";

/** Span.SpanKind and Status.StatusCode of trace.proto. */
const SPAN_KIND_SERVER = 2;
const STATUS_CODE_ERROR = 2;

/** Who made the spans: resource attributes (service.name, host.name) and the instrumentation scope. */
export interface SpanSource {
  resource: Readonly<Record<string, AttributeValue>>;
  scope: { name: string; version?: string };
}

/** A 64-bit unsigned as protobufjs's writer takes it without the `long` package: two 32-bit halves. */
const fixed64 = (n: bigint) => ({ low: Number(n & 0xffffffffn) | 0, high: Number((n >> 32n) & 0xffffffffn) | 0, unsigned: true });

function anyValue(v: AttributeValue): Record<string, unknown> {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  return Number.isSafeInteger(v) ? { intValue: v } : { doubleValue: v };
}

const keyValues = (attributes: Readonly<Record<string, AttributeValue>>) => Object.entries(attributes).map(([key, value]) => ({ key, value: anyValue(value) }));

const bytes = (hex: string) => Buffer.from(hex, "hex");

function otlpSpan(s: Span): Record<string, unknown> {
  return {
    traceId: bytes(s.traceId),
    spanId: bytes(s.spanId),
    ...(s.parentSpanId ? { parentSpanId: bytes(s.parentSpanId) } : {}),
    name: s.name,
    kind: SPAN_KIND_SERVER,
    startTimeUnixNano: fixed64(s.startNs),
    endTimeUnixNano: fixed64(s.endNs),
    attributes: keyValues(s.attributes),
    ...(s.error !== undefined ? { status: { code: STATUS_CODE_ERROR, message: s.error } } : {}),
  };
}

/** The protobuf body of one export of `spans`, all from `source`. */
export function encodeExportRequest(source: SpanSource, spans: readonly Span[]): Uint8Array {
  const type = otlpProtoRoot().lookupType(EXPORT_REQUEST);
  const message = {
    resourceSpans: [
      {
        resource: { attributes: keyValues(source.resource) },
        scopeSpans: [{ scope: { name: source.scope.name, ...(source.scope.version ? { version: source.scope.version } : {}) }, spans: spans.map(otlpSpan) }],
      },
    ],
  };
  // encode (not fromObject): fromObject would turn the 64-bit halves into a lossy number when `long` is absent.
  return type.encode(message).finish();
}
