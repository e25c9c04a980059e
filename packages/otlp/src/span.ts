// SPDX-License-Identifier: Apache-2.0
/** One finished span as Weft records it; encode.ts turns spans into OTLP. */

export type AttributeValue = string | number | boolean;

export interface Span {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  /** The caller's span (16 hex), absent for a trace's root. */
  parentSpanId?: string;
  name: string;
  /** Weft makes server spans only: each is one request some part of Weft answered. */
  kind: "server";
  startNs: bigint;
  endNs: bigint;
  attributes: Readonly<Record<string, AttributeValue>>;
  /** Set when the request failed (a 5xx, a refusal): the span's status is ERROR with this message. */
  error?: string;
}

/** Milliseconds since the epoch as nanoseconds. */
export const msToNs = (ms: number): bigint => BigInt(Math.round(ms * 1_000)) * 1_000n;
