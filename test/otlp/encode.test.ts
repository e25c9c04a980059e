// SPDX-License-Identifier: Apache-2.0
// The OTLP body decoded back with the OpenTelemetry project's definitions,
// and the exporter against a real HTTP receiver: batching, retry with
// backoff on a retryable answer, a refusal dropped, a full queue dropped.
import { afterEach, describe, expect, it } from "vitest";
import { encodeExportRequest, msToNs, SpanExporter, tracesUrl, type DropReason, type Span } from "@weft/otlp";
import { decodeExport, OtlpReceiver } from "../support/otlp-receiver.ts";
import { until } from "../support/until.ts";

const SOURCE = { resource: { "service.name": "weft-proxy", "host.name": "node-1" }, scope: { name: "weft", version: "0.1.0" } };
const span = (o: Partial<Span> = {}): Span => ({
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "00f067aa0ba902b7",
  parentSpanId: "b7ad6b7169203331",
  name: "GET /api",
  kind: "server",
  startNs: msToNs(1_796_000_000_123),
  endNs: msToNs(1_796_000_000_123) + 4_567_891n,
  attributes: { "http.request.method": "GET", "http.response.status_code": 200, "weft.ok": true, ratio: 0.5 },
  ...o,
});

describe("OTLP encoding", () => {
  it("decodes back to the same span: ids, kind, times to the nanosecond, typed attributes, resource and scope", () => {
    const [s, ...rest] = decodeExport(encodeExportRequest(SOURCE, [span()]));
    expect(rest).toEqual([]);
    expect(s).toEqual({
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "00f067aa0ba902b7",
      parentSpanId: "b7ad6b7169203331",
      name: "GET /api",
      kind: "SPAN_KIND_SERVER",
      startTimeUnixNano: 1_796_000_000_123_000_000n,
      endTimeUnixNano: 1_796_000_000_127_567_891n,
      attributes: { "http.request.method": "GET", "http.response.status_code": 200, "weft.ok": true, ratio: 0.5 },
      status: { code: "STATUS_CODE_UNSET", message: "" },
      resource: { "service.name": "weft-proxy", "host.name": "node-1" },
      scope: "weft",
    });
  });

  it("a root has no parent; a failed request's status is ERROR with its message", () => {
    const [s] = decodeExport(encodeExportRequest(SOURCE, [span({ parentSpanId: undefined, error: "503 from the backend" })]));
    expect(s!.parentSpanId).toBe("");
    expect(s!.status).toEqual({ code: "STATUS_CODE_ERROR", message: "503 from the backend" });
  });

  it("posts to /v1/traces of a base URL, or to the URL that already names it", () => {
    expect(tracesUrl("http://collector:4318").href).toBe("http://collector:4318/v1/traces");
    expect(tracesUrl("http://collector:4318/otlp/").href).toBe("http://collector:4318/otlp/v1/traces");
    expect(tracesUrl("https://collector/v1/traces").href).toBe("https://collector/v1/traces");
    expect(() => tracesUrl("ftp://collector")).toThrow(/not an http or https URL/);
    expect(() => tracesUrl("http://user:secret@collector")).toThrow(/^collector: credentials in the URL are not taken$/);
  });
});

describe("the span exporter", () => {
  let receiver: OtlpReceiver;
  let exporter: SpanExporter | null = null;
  afterEach(async () => {
    await exporter?.close();
    await receiver?.close();
  });

  const counting = () => {
    const counts = { exported: 0, dropped: {} as Partial<Record<DropReason, number>>, failed: [] as string[] };
    return {
      counts,
      exported: (n: number) => (counts.exported += n),
      dropped: (n: number, why: DropReason) => (counts.dropped[why] = (counts.dropped[why] ?? 0) + n),
      failed: (e: string) => counts.failed.push(e),
    };
  };

  it("sends a full batch at once and the rest on the timer", async () => {
    receiver = await new OtlpReceiver().start();
    const c = counting();
    exporter = new SpanExporter({ endpoint: receiver.endpoint, source: SOURCE, batchMax: 3, flushMs: 200, ...c });
    for (let i = 0; i < 4; i++) exporter.add(span({ spanId: `00000000000000${i}1` }));
    await until("c.counts.exported === 4", 10_000, () => (c.counts.exported === 4 ? true : undefined));
    expect(receiver.posts).toBe(2);
    expect(receiver.spans.map((s) => s.spanId).sort()).toEqual(["0000000000000001", "0000000000000011", "0000000000000021", "0000000000000031"]);
  });

  it("tries a retryable failure again with backoff; drops a refused batch; counts both", async () => {
    receiver = await new OtlpReceiver().start();
    receiver.answers.push(503, 429);
    const c = counting();
    exporter = new SpanExporter({ endpoint: receiver.endpoint, source: SOURCE, flushMs: 50, backoff: { initialMs: 20, maxMs: 40 }, ...c });
    exporter.add(span());
    await until("c.counts.exported === 1", 10_000, () => (c.counts.exported === 1 ? true : undefined));
    expect(receiver.posts).toBe(3);
    expect(c.counts.failed).toEqual([expect.stringMatching(/answered 503$/), expect.stringMatching(/answered 429$/)]);
    receiver.answers.push(400);
    exporter.add(span());
    await until("c.counts.dropped.refused === 1", 10_000, () => (c.counts.dropped.refused === 1 ? true : undefined));
    expect(receiver.spans).toHaveLength(1);
  });

  it("gives up after maxAttempts when the receiver is down, and a full queue drops instead of waiting", async () => {
    receiver = await new OtlpReceiver().start();
    const endpoint = receiver.endpoint;
    await receiver.close();
    const c = counting();
    exporter = new SpanExporter({ endpoint, source: SOURCE, queueMax: 2, flushMs: 30_000, maxAttempts: 2, backoff: { initialMs: 10, maxMs: 10 }, timeoutMs: 1_000, ...c });
    for (let i = 0; i < 5; i++) exporter.add(span());
    expect(c.counts.dropped["queue-full"]).toBe(3);
    exporter.flush();
    await until("two spans dropped after the retries", 10_000, () => (c.counts.dropped["retries-exhausted"] === 2 ? true : undefined));
    expect(c.counts.failed).toHaveLength(2);
    expect(c.counts.failed[0]).toMatch(/^failed to reach the OTLP receiver/);
  });
});
