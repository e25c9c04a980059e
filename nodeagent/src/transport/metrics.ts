// SPDX-License-Identifier: Apache-2.0
/**
 * The transport's Prometheus metrics. Labels are bounded by code, never by
 * traffic: direction (2), key-exchange group (the few OpenSSL names), result
 * and reason (fixed sets below). Identities, addresses and peers are not
 * labels (see src/flows/metrics.ts for why).
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { SvidRejection } from "./spiffe.ts";

export type Direction = "outbound" | "inbound";

/** Why a TLS connection did not come up or was closed right after its handshake. */
export type HandshakeFailure =
  | SvidRejection
  | "cross_tenant"
  | "no_certificate"
  | "unknown_server_name"
  | "unknown_ca"
  | "server_identity"
  | "tls_error";

/** How a carried connection (one CONNECT stream) ended before carrying bytes, or that it did. */
export type StreamResult =
  | "carried"
  | "no_origin"
  | "unknown_source"
  | "unknown_destination"
  | "forbidden"
  | "bad_request"
  | "upstream_failed"
  | "transport_failed";

export class TransportMetrics {
  readonly registry = new Registry();
  private readonly connections: Counter<"direction" | "group">;
  private readonly openConnections: Gauge<"direction">;
  private readonly handshakeFailures: Counter<"direction" | "reason">;
  private readonly streams: Counter<"direction" | "result">;
  private readonly openStreams: Gauge<"direction">;
  private readonly bytes: Counter<"direction" | "way">;
  private readonly configuredGauge: Gauge<"part">;

  constructor() {
    const registers = [this.registry];
    this.connections = new Counter({
      name: "weft_transport_connections_total",
      help: "Mutual TLS connections established between node transports, by direction and negotiated key-exchange group",
      labelNames: ["direction", "group"],
      registers,
    });
    this.openConnections = new Gauge({ name: "weft_transport_connections_open", help: "Mutual TLS connections open, by direction", labelNames: ["direction"], registers });
    this.handshakeFailures = new Counter({
      name: "weft_transport_handshake_failures_total",
      help: "TLS connections refused during or right after the handshake, by direction and reason",
      labelNames: ["direction", "reason"],
      registers,
    });
    this.streams = new Counter({
      name: "weft_transport_streams_total",
      help: "Carried connections (HTTP/2 CONNECT streams), by direction and how they ended before carrying or that they carried",
      labelNames: ["direction", "result"],
      registers,
    });
    this.openStreams = new Gauge({ name: "weft_transport_streams_open", help: "Carried connections open, by direction", labelNames: ["direction"], registers });
    this.bytes = new Counter({
      name: "weft_transport_bytes_total",
      help: "Payload bytes carried, by direction and way (to_peer: read from the local side, from_peer: written to it)",
      labelNames: ["direction", "way"],
      registers,
    });
    this.configuredGauge = new Gauge({
      name: "weft_transport_configured",
      help: "What the running configuration holds: local workloads, trust bundles, remote workloads, allowed pairs",
      labelNames: ["part"],
      registers,
    });
    for (const part of ["workloads", "bundles", "remotes", "allow"] as const) this.configuredGauge.set({ part }, 0);
    for (const direction of ["outbound", "inbound"] as const) {
      this.openConnections.set({ direction }, 0);
      this.openStreams.set({ direction }, 0);
      for (const way of ["to_peer", "from_peer"] as const) this.bytes.inc({ direction, way }, 0);
    }
  }

  configured(counts: Record<"workloads" | "bundles" | "remotes" | "allow", number>): void {
    for (const [part, n] of Object.entries(counts)) this.configuredGauge.set({ part }, n);
  }
  connectionUp(direction: Direction, group: string): void {
    this.connections.inc({ direction, group });
    this.openConnections.inc({ direction });
  }
  connectionDown(direction: Direction): void {
    this.openConnections.dec({ direction });
  }
  handshakeFailed(direction: Direction, reason: HandshakeFailure): void {
    this.handshakeFailures.inc({ direction, reason });
  }
  stream(direction: Direction, result: StreamResult): void {
    this.streams.inc({ direction, result });
  }
  streamOpened(direction: Direction): void {
    this.openStreams.inc({ direction });
  }
  streamClosed(direction: Direction): void {
    this.openStreams.dec({ direction });
  }
  carried(direction: Direction, way: "to_peer" | "from_peer", n: number): void {
    this.bytes.inc({ direction, way }, n);
  }
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** A handshake error's reason, from OpenSSL's verify code or alert text. */
export function handshakeReason(err: Error & { code?: string }): HandshakeFailure {
  const text = `${err.code ?? ""} ${err.message}`;
  if (/CERT_HAS_EXPIRED|certificate expired/i.test(text)) return "expired";
  if (/CERT_NOT_YET_VALID|not yet valid/i.test(text)) return "not_yet_valid";
  if (/UNABLE_TO_GET_ISSUER|SELF_SIGNED|unknown ca|UNABLE_TO_VERIFY_LEAF/i.test(text)) return "unknown_ca";
  if (/did not return a certificate|PEER_DID_NOT_RETURN|certificate required/i.test(text)) return "no_certificate";
  if (/unrecognized name|no suitable|NO_SHARED_CIPHER|no shared cipher/i.test(text)) return "unknown_server_name";
  return "tls_error";
}

/** OpenSSL's verify result for a peer chain (X509_V_ERR_* names as Node reports them) as a reason. */
export function verifyErrorReason(code: string): HandshakeFailure {
  if (code === "CERT_HAS_EXPIRED") return "expired";
  if (code === "CERT_NOT_YET_VALID") return "not_yet_valid";
  if (/ISSUER|SELF_SIGNED|UNABLE_TO_VERIFY_LEAF/.test(code)) return "unknown_ca";
  return "untrusted_chain";
}
