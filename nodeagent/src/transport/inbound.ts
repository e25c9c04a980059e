// SPDX-License-Identifier: Apache-2.0
/**
 * The inbound side: an HTTP/2 server over mutual TLS 1.3 (port 15008 by
 * default, as Istio ambient's ztunnel) that presents the destination
 * workload's SVID (picked by the server name the client asks for) and
 * verifies the client's: OpenSSL checks the chain against the destination
 * trust domain's bundle (the server name picks the context), then verifySvid
 * anchors it by the client's own
 * SPIFFE ID (one URI SAN, its trust domain's bundle, validity). Each CONNECT
 * stream is then authorised: the destination must be the workload the
 * session was opened to, of the same trust domain as the peer (a tenant's
 * identity never reaches another tenant), and the (source, destination,
 * port) pair allowed; anything else is 403 or 421, and nothing is opened.
 */
import { constants, createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import { X509Certificate } from "node:crypto";
import { isIPv4, type Socket } from "node:net";
import type { DetailedPeerCertificate, TLSSocket } from "node:tls";
import { parseEndpoint, type Endpoint } from "./endpoint.ts";
import { handshakeReason, verifyErrorReason, type HandshakeFailure, type StreamResult, type TransportMetrics } from "./metrics.ts";
import type { OutcomeBuffer, OutcomeStart } from "./outcomes.ts";
import { isNodeProxy, verifySvid, type SpiffeId } from "./spiffe.ts";
import { countInto, splice } from "./splice.ts";
import type { LocalIdentity, TransportState } from "./state.ts";
import type { TlsPolicy } from "./tls-policy.ts";

const WINDOW = 4 << 20;
/** Streams one peer session may hold open at once: each opens a connection to a workload, so an authenticated peer cannot open unbounded ones. */
export const MAX_STREAMS_PER_SESSION = 1024;

/** Opens the connection to a local workload, from `source` when the original source address can be kept. */
export type Deliver = (destination: Endpoint, source: string | null) => Promise<Socket>;

interface Peer {
  id: SpiffeId;
  /** The local workload this session was opened to (by server name). */
  servedTo: LocalIdentity;
}

/** The certificates the client presented after its leaf (Node hangs each on the previous one's issuerCertificate). */
function presentedIntermediates(sock: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let cert: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  const seen = new Set<DetailedPeerCertificate>();
  while (cert && cert.raw && !seen.has(cert)) {
    seen.add(cert);
    if (seen.size > 1) out.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return out;
}

/** `for=<ipv4>` from an HBONE forwarded header; undefined when absent, null when malformed. */
function forwardedFor(header: string | string[] | undefined): string | null | undefined {
  if (header === undefined) return undefined;
  const m = /^for=("?)(\d{1,3}(?:\.\d{1,3}){3})\1$/.exec(String(header).trim());
  return m && isIPv4(m[2]!) ? m[2]! : null;
}

/** The peer node's side of a TLS socket, as a refused handshake's source. */
function peerSocket(sock: Socket): OutcomeStart["source"] {
  return sock.remoteAddress && isIPv4(sock.remoteAddress) ? { address: sock.remoteAddress, port: sock.remotePort! } : {};
}

/** The listener's side of a TLS socket, as a refused handshake's destination. */
function listenerSocket(sock: Socket): OutcomeStart["destination"] {
  return sock.localAddress && isIPv4(sock.localAddress) ? { address: sock.localAddress, port: sock.localPort! } : undefined;
}

export function inboundServer(deps: { state: () => TransportState; tls: TlsPolicy; metrics: TransportMetrics; outcomes: OutcomeBuffer; deliver: Deliver }): Http2SecureServer {
  const { metrics, outcomes } = deps;
  const handshakeFailed = (sock: Socket, reason: HandshakeFailure, spiffeId?: string) => {
    metrics.handshakeFailed("inbound", reason);
    const destination = listenerSocket(sock);
    outcomes.record({
      direction: "inbound",
      handshake: true,
      result: reason,
      source: { ...peerSocket(sock), ...(spiffeId ? { spiffeId } : {}) },
      ...(destination ? { destination } : {}),
      bytes: { toPeer: 0, fromPeer: 0 },
      start: Date.now(),
    });
  };
  const peers = new WeakMap<ServerHttp2Session, Peer>();
  const server = createSecureServer({
    ...deps.tls.contextOptions,
    requestCert: true,
    // Node would drop a client that fails OpenSSL's verification without a
    // word of why; the session handler below refuses it itself, before any
    // stream is read, and counts the reason.
    rejectUnauthorized: false,
    allowHTTP1: false,
    settings: { initialWindowSize: WINDOW, enablePush: false, maxConcurrentStreams: MAX_STREAMS_PER_SESSION },
    SNICallback: (name, cb) => {
      const served = deps.state().localByServerName.get(name);
      if (served) cb(null, served.serverContext);
      else cb(new Error("unknown server name"));
    },
  });

  server.on("tlsClientError", (err: Error & { code?: string }, sock: TLSSocket) => handshakeFailed(sock, /unknown server name/.test(err.message) ? "unknown_server_name" : handshakeReason(err)));

  server.on("session", (session: ServerHttp2Session) => {
    const sock = session.socket as TLSSocket;
    const state = deps.state();
    const servedTo = state.localByServerName.get((sock as TLSSocket & { servername?: string }).servername || "");
    const leaf = sock.getPeerX509Certificate();
    const proven = !leaf
      ? "no_certificate"
      : !sock.authorized
        ? verifyErrorReason(String(sock.authorizationError))
        : verifySvid(leaf, presentedIntermediates(sock), state.anchors());
    if (!servedTo || typeof proven === "string") {
      handshakeFailed(sock, !servedTo ? "unknown_server_name" : (proven as Exclude<typeof proven, SpiffeId>), typeof proven === "string" ? undefined : proven.id);
      session.destroy();
      return;
    }
    if (proven.trustDomain !== servedTo.id.trustDomain) {
      handshakeFailed(sock, "cross_tenant", proven.id);
      session.destroy();
      return;
    }
    session.setLocalWindowSize(WINDOW);
    peers.set(session, { id: proven, servedTo });
    metrics.connectionUp("inbound", deps.tls.onlyGroup ?? "unknown");
    session.once("close", () => metrics.connectionDown("inbound"));
    session.on("error", () => session.destroy());
  });

  server.on("stream", (stream: ServerHttp2Stream, headers) => {
    stream.on("error", () => stream.destroy());
    const bytes = { toPeer: 0, fromPeer: 0 };
    const outcome: OutcomeStart = { direction: "inbound", handshake: false, source: {}, start: Date.now() };
    const answer = (status: number, result: StreamResult) => {
      metrics.stream("inbound", result);
      outcomes.record({ ...outcome, result, bytes });
      if (!stream.destroyed && !stream.headersSent) stream.respond({ [constants.HTTP2_HEADER_STATUS]: status }, { endStream: true });
    };
    const peer = peers.get(stream.session as ServerHttp2Session);
    if (!peer) return stream.close(constants.NGHTTP2_REFUSED_STREAM);
    outcome.source.spiffeId = peer.id.id;
    if (headers[constants.HTTP2_HEADER_METHOD] !== "CONNECT") return answer(405, "bad_request");
    const target = parseEndpoint(headers[constants.HTTP2_HEADER_AUTHORITY] as string | undefined);
    const claimed = forwardedFor(headers.forwarded);
    if (!target || claimed === null) return answer(400, "bad_request");
    outcome.destination = target;
    const state = deps.state();
    const destination = state.localByAddress.get(target.address);
    // Another node's L7 proxy calls on its callers' behalf (issue 21): allowed by the proxy's own entries.
    const proxy = isNodeProxy(peer.id);
    const allowed = (d: LocalIdentity) => (proxy ? state.proxyAllows(d.id.id, target.port) : state.allows(peer.id.id, d.id.id, target.port));
    // Not here and not allowed answer alike: a peer learns nothing about addresses it may not reach.
    if (!destination || destination.id.trustDomain !== peer.id.trustDomain || !allowed(destination)) return answer(403, "forbidden");
    // By ID: a later configure makes new LocalIdentity objects for the same workloads.
    if (destination.id.id !== peer.servedTo.id.id) return answer(421, "bad_request");
    let source: string | null = null;
    if (proxy) {
      // From this node's proxy address, whatever the peer claims: the backend's tc knows a proxy by that address
      // (IDENTITY_PROXY) and, marked by the transport, lets it in where plaintext from the fabric is dropped.
      source = state.proxyAddress;
      outcome.source.address = source!;
    } else if (claimed !== undefined) {
      // The claimed source address is believed only when it is one of the peer identity's own addresses.
      if (state.remoteByAddress.get(claimed)?.id.id !== peer.id.id) return answer(403, "forbidden");
      source = claimed;
      outcome.source.address = claimed;
    }
    deps.deliver(target, source).then(
      (upstream) => {
        if (stream.destroyed) return upstream.destroy();
        stream.respond({ [constants.HTTP2_HEADER_STATUS]: 200 });
        metrics.stream("inbound", "carried");
        metrics.streamOpened("inbound");
        splice(upstream, stream, countInto(bytes, (way, n) => metrics.carried("inbound", way, n)), () => {
          metrics.streamClosed("inbound");
          outcomes.record({ ...outcome, result: "carried", bytes });
        });
      },
      () => answer(503, "upstream_failed"),
    );
  });
  return server;
}
