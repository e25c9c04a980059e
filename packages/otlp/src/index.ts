// SPDX-License-Identifier: Apache-2.0
export { formatTraceparent, newSpanId, newTraceId, parseTraceparent, SAMPLED, type TraceContext } from "./trace-context.ts";
export { msToNs, type AttributeValue, type Span } from "./span.ts";
export { encodeExportRequest, EXPORT_REQUEST, EXPORT_RESPONSE, otlpProtoRoot, type SpanSource } from "./encode.ts";
export { SpanExporter, tracesUrl, type DropReason, type SpanExporterOptions } from "./exporter.ts";
