// SPDX-License-Identifier: Apache-2.0
/**
 * An OTLP/HTTP trace receiver for tests: POST /v1/traces with an
 * application/x-protobuf ExportTraceServiceRequest, decoded with the
 * OpenTelemetry project's definitions (packages/otlp/proto). Each span is
 * kept as decoded, ids in hex; `answer` chooses the status of the next export.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { EXPORT_REQUEST, EXPORT_RESPONSE, otlpProtoRoot } from "@weft/otlp";

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root. */
  parentSpanId: string;
  name: string;
  kind: string;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, string | number | boolean>;
  status: { code: string; message: string };
  resource: Record<string, string | number | boolean>;
  scope: string;
}

interface DecodedValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
}
interface DecodedKeyValue {
  key: string;
  value: DecodedValue;
}
const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString("hex") : "");
const valueOf = (v: DecodedValue) => v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue!);
const attributesOf = (kvs: DecodedKeyValue[] | undefined) => Object.fromEntries((kvs ?? []).map((kv) => [kv.key, valueOf(kv.value)]));

/** An export body as the spans it holds. */
export function decodeExport(body: Uint8Array): ReceivedSpan[] {
  const type = otlpProtoRoot().lookupType(EXPORT_REQUEST);
  const o = type.toObject(type.decode(body), { longs: String, enums: String }) as {
    resourceSpans?: { resource?: { attributes?: DecodedKeyValue[] }; scopeSpans?: { scope?: { name: string }; spans?: Record<string, unknown>[] }[] }[];
  };
  const out: ReceivedSpan[] = [];
  for (const rs of o.resourceSpans ?? []) {
    const resource = attributesOf(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const status = (s.status ?? {}) as { code?: string; message?: string };
        out.push({
          traceId: hex(s.traceId as Uint8Array),
          spanId: hex(s.spanId as Uint8Array),
          parentSpanId: hex(s.parentSpanId as Uint8Array | undefined),
          name: s.name as string,
          kind: s.kind as string,
          startTimeUnixNano: BigInt(s.startTimeUnixNano as string),
          endTimeUnixNano: BigInt(s.endTimeUnixNano as string),
          attributes: attributesOf(s.attributes as DecodedKeyValue[] | undefined),
          status: { code: status.code ?? "STATUS_CODE_UNSET", message: status.message ?? "" },
          resource,
          scope: ss.scope?.name ?? "",
        });
      }
    }
  }
  return out;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Exports received, whatever was answered. */
  posts = 0;
  /** Statuses to answer the next exports with (then 200). */
  readonly answers: number[] = [];
  private server: Server = createServer();
  port = 0;

  async start(host = "127.0.0.1", port = 0): Promise<this> {
    this.server.on("request", (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.method !== "POST" || req.url !== "/v1/traces" || req.headers["content-type"] !== "application/x-protobuf") return res.writeHead(404).end();
        this.posts++;
        const status = this.answers.shift() ?? 200;
        if (status !== 200) return res.writeHead(status).end();
        this.spans.push(...decodeExport(Buffer.concat(chunks)));
        const response = otlpProtoRoot().lookupType(EXPORT_RESPONSE);
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end(response.encode({}).finish());
      });
    });
    await new Promise<void>((r) => this.server.listen(port, host, r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}
