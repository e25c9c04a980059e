// SPDX-License-Identifier: Apache-2.0
/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/), version 00:
 * `traceparent: 00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`,
 * lower case. A header that is not exactly that, or whose trace id or span
 * id is all zeros, is invalid, and an invalid one is treated as absent: the
 * receiver starts a new trace.
 */
import { randomBytes } from "node:crypto";

export interface TraceContext {
  traceId: string;
  /** The span of the caller: the parent of the receiver's span. */
  spanId: string;
  flags: string;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/** The caller's context from a traceparent header (Node gives a repeated header joined by ", ": invalid), or null. */
export function parseTraceparent(header: string | readonly string[] | undefined): TraceContext | null {
  if (typeof header !== "string") return null;
  const m = TRACEPARENT.exec(header.trim());
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return null;
  return { traceId: m[1]!, spanId: m[2]!, flags: m[3]! };
}

export const newTraceId = (): string => nonZeroHex(16);
export const newSpanId = (): string => nonZeroHex(8);

function nonZeroHex(bytes: number): string {
  for (;;) {
    const hex = randomBytes(bytes).toString("hex");
    if (/[^0]/.test(hex)) return hex;
  }
}

/** Sampled: a trace this side starts is recorded. */
export const SAMPLED = "01";

export const formatTraceparent = (c: TraceContext): string => `00-${c.traceId}-${c.spanId}-${c.flags}`;
