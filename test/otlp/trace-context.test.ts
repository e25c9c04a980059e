// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from "@weft/otlp";

const VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

describe("traceparent (W3C Trace Context, version 00)", () => {
  it("reads a valid header and writes it back the same", () => {
    const c = parseTraceparent(VALID);
    expect(c).toEqual({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", flags: "01" });
    expect(formatTraceparent(c!)).toBe(VALID);
    expect(parseTraceparent(VALID.replace(/-01$/, "-00"))?.flags).toBe("00");
  });

  it.each([
    ["absent", undefined],
    ["empty", ""],
    ["upper case", VALID.toUpperCase()],
    ["another version", VALID.replace(/^00/, "01")],
    ["version ff", VALID.replace(/^00/, "ff")],
    ["all-zero trace id", `00-${"0".repeat(32)}-b7ad6b7169203331-01`],
    ["all-zero span id", `00-0af7651916cd43dd8448eb211c80319c-${"0".repeat(16)}-01`],
    ["a short trace id", "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01"],
    ["a non-hex digit", VALID.replace("b7ad", "b7ag")],
    ["trailing text", `${VALID}-extra`],
    ["two headers joined", `${VALID}, ${VALID}`],
    ["an array", [VALID, VALID]],
  ])("treats %s as absent", (_what, header) => {
    expect(parseTraceparent(header as string | string[] | undefined)).toBeNull();
  });

  it("mints random ids of the right length that are never all zeros", () => {
    const traces = new Set(Array.from({ length: 200 }, newTraceId));
    const spans = new Set(Array.from({ length: 200 }, newSpanId));
    expect(traces.size).toBe(200);
    expect(spans.size).toBe(200);
    for (const t of traces) expect(parseTraceparent(`00-${t}-b7ad6b7169203331-01`)).not.toBeNull();
    for (const s of spans) expect(parseTraceparent(`00-0af7651916cd43dd8448eb211c80319c-${s}-01`)).not.toBeNull();
  });
});
