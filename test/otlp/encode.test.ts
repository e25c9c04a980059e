// SPDX-License-Identifier: Apache-2.0
// The OTLP body decoded back with the OpenTelemetry project's definitions
// (by protobufjs, and by protoc: an implementation that is not ours), and the exporter against a real HTTP receiver: batching, retry with
// backoff on a retryable answer, a refusal dropped, a full queue dropped.
import { execFileSync } from "node:child_process";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { encodeExportRequest, msToNs, SpanExporter, tracesUrl, type DropReason, type Span } from "@weft/otlp";
import { decodeExport, OtlpReceiver } from "../support/otlp-receiver.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { until } from "../support/until.ts";

const PROTO_DIR = fileURLToPath(new URL("../../packages/otlp/proto/", import.meta.url));

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

/** A bytes field as protoc's text format writes it (C escapes, octal for the rest), as hex. */
function protocBytesHex(text: string): string {
  const named: Record<string, number> = { n: 10, r: 13, t: 9, '"': 34, "'": 39, "\\": 92 };
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== "\\") {
      out.push(text.charCodeAt(i));
      continue;
    }
    const octal = /^[0-7]{3}/.exec(text.slice(i + 1));
    if (octal) {
      out.push(parseInt(octal[0], 8));
      i += 3;
    } else out.push(named[text[++i]!]!);
  }
  return Buffer.from(out).toString("hex");
}

const PROTOC = skipWithout("protoc (an independent decoder of the OTLP body)", commandUnavailableReason("protoc", ["--version"], "apt-get install protobuf-compiler"));

describe.skipIf(PROTOC)("OTLP encoding, decoded by protoc (Google's implementation) with the same definitions", () => {
  it("reads the ids, the nanosecond times, the typed attributes and the status as written", () => {
    const body = encodeExportRequest(SOURCE, [span({ error: "answered 503" })]);
    const text = execFileSync("protoc", ["-I", PROTO_DIR, "--decode=opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest", "opentelemetry/proto/collector/trace/v1/trace_service.proto"], { input: body, encoding: "utf8" });
    const field = (name: string) => new RegExp(`^\\s*${name}: (.*)$`, "m").exec(text)?.[1];
    const bytesOf = (name: string) => protocBytesHex(field(name)?.slice(1, -1) ?? "");
    expect({ trace: bytesOf("trace_id"), span: bytesOf("span_id"), parent: bytesOf("parent_span_id") }).toEqual({ trace: "0af7651916cd43dd8448eb211c80319c", span: "00f067aa0ba902b7", parent: "b7ad6b7169203331" });
    expect({ start: field("start_time_unix_nano"), end: field("end_time_unix_nano"), kind: field("kind"), name: field("name") }).toEqual({ start: "1796000000123000000", end: "1796000000127567891", kind: "SPAN_KIND_SERVER", name: '"weft"' });
    expect(text).toMatch(/name: "GET \/api"/);
    expect(text).toMatch(/key: "http.response.status_code"\s*value \{\s*int_value: 200\s*\}/);
    expect(text).toMatch(/key: "weft.ok"\s*value \{\s*bool_value: true\s*\}/);
    expect(text).toMatch(/key: "ratio"\s*value \{\s*double_value: 0.5\s*\}/);
    expect(text).toMatch(/key: "service.name"\s*value \{\s*string_value: "weft-proxy"\s*\}/);
    expect(text).toMatch(/status \{\s*message: "answered 503"\s*code: STATUS_CODE_ERROR\s*\}/);
  });
});

describe("the span exporter", () => {
  let receiver: OtlpReceiver | null = null;
  let exporter: SpanExporter | null = null;
  afterEach(async () => {
    await exporter?.close();
    await receiver?.close();
    [exporter, receiver] = [null, null];
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

  it("close() tries a batch in backoff once more at once, and takes no span after", async () => {
    const r = (receiver = await new OtlpReceiver().start());
    r.answers.push(503);
    const c = counting();
    exporter = new SpanExporter({ endpoint: r.endpoint, source: SOURCE, flushMs: 20, backoff: { initialMs: 60_000, maxMs: 60_000 }, ...c });
    exporter.add(span());
    await until("the first export refused", 10_000, () => (r.posts === 1 ? true : undefined));
    const started = Date.now();
    await exporter.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(c.counts.exported).toBe(1);
    exporter.add(span());
    expect(c.counts.dropped).toEqual({ closed: 1 });
  });

  it("close() is bounded by closeMs against a receiver that never answers, and drops what is left", async () => {
    const silent = createTcpServer((socket) => socket.on("error", () => undefined));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const c = counting();
    exporter = new SpanExporter({ endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, source: SOURCE, batchMax: 2, flushMs: 60_000, timeoutMs: 60_000, closeMs: 300, ...c });
    for (let i = 0; i < 4; i++) exporter.add(span());
    const started = Date.now();
    await exporter.close();
    exporter = null;
    const took = Date.now() - started;
    silent.close();
    expect(took).toBeLessThan(3_000);
    expect(c.counts.exported).toBe(0);
    expect(Object.values(c.counts.dropped).reduce((a, b) => a + b, 0)).toBe(4);
  });
});
