// SPDX-License-Identifier: Apache-2.0
/**
 * Pooled HTTP/2 mutual-TLS sessions to peer transports. A TLS connection
 * authenticates one client certificate and one server certificate, so a
 * session carries the streams of one (source identity, destination
 * identity, peer node) and is keyed by the versions of the SVID and bundle
 * it was made with: after a rotation new streams get a new session, and the
 * old one drains (no new streams; open ones run to their end). A key holds
 * more than one session only while the first is at the peer's stream limit.
 */
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from "node:tls";
import { isIPv4 } from "node:net";
import { MAX_STREAMS_PER_SESSION } from "./inbound.ts";
import { handshakeReason, type TransportMetrics } from "./metrics.ts";
import type { OutcomeBuffer } from "./outcomes.ts";
import { unconnectedSocket } from "./sockets.ts";
import { svidId } from "./spiffe.ts";
import { serverNameFor, type Bundle, type LocalIdentity, type RemoteIdentity, type TransportState } from "./state.ts";
import type { TlsPolicy } from "./tls-policy.ts";

/** A pooled session with no stream for this long is closed. */
export const IDLE_SESSION_MS = 60_000;
/** Flow-control window per stream and per session: a carried connection is a byte stream, not small requests. */
const WINDOW = 4 << 20;

interface Pooled {
  session: ClientHttp2Session;
  source: string;
  sourceVersion: string;
  destinationTrustDomain: string;
  bundleDigest: string;
  /** Streams open on it now: at the peer's limit a new one goes on another session of the same key. */
  streams: number;
}

/**
 * Streams one session carries at once before the next opens beside it: the
 * receiver's limit. Past it HTTP/2 would hold a new stream unanswered until
 * one closes, and a node proxy's session carries every caller of its node.
 */
const STREAMS_PER_SESSION = MAX_STREAMS_PER_SESSION;

export class SessionPool {
  /** By key, the sessions of that key (usually one). */
  private readonly sessions = new Map<string, Pooled[]>();

  private readonly tls: TlsPolicy;
  private readonly metrics: TransportMetrics;
  private readonly outcomes: OutcomeBuffer;
  /** SO_MARK of every connection to a peer transport (sockets.ts). */
  private readonly mark: number;

  constructor(tls: TlsPolicy, metrics: TransportMetrics, outcomes: OutcomeBuffer, mark: number) {
    this.tls = tls;
    this.metrics = metrics;
    this.outcomes = outcomes;
    this.mark = mark;
  }

  /** Opens one stream to `remote` as `source` on a pooled session with room for it. */
  request(source: LocalIdentity, remote: RemoteIdentity, bundle: Bundle, headers: OutgoingHttpHeaders): ClientHttp2Stream {
    const key = [source.id.id, source.version, `${remote.node.host}:${remote.node.port}`, remote.id.id, bundle.digest].join("\n");
    let list = this.sessions.get(key);
    if (list === undefined) this.sessions.set(key, (list = []));
    let pooled = list.find((p) => !p.session.closed && !p.session.destroyed && p.streams < STREAMS_PER_SESSION);
    if (pooled === undefined) {
      const session = this.open(source, remote, bundle);
      const added: Pooled = { session, source: source.id.id, sourceVersion: source.version, destinationTrustDomain: remote.id.trustDomain, bundleDigest: bundle.digest, streams: 0 };
      list.push(added);
      pooled = added;
      session.once("close", () => {
        const now = this.sessions.get(key);
        if (now === undefined) return;
        const rest = now.filter((p) => p !== added);
        if (rest.length > 0) this.sessions.set(key, rest);
        else this.sessions.delete(key);
      });
    }
    const stream = pooled.session.request(headers, { endStream: false });
    const counted = pooled;
    counted.streams++;
    stream.once("close", () => counted.streams--);
    return stream;
  }

  /** Drains every session made with an SVID or bundle `state` no longer holds. */
  retire(state: TransportState): void {
    for (const [key, list] of this.sessions) {
      const stale = list.filter((p) => !(state.local.get(p.source)?.version === p.sourceVersion && state.bundles.get(p.destinationTrustDomain)?.digest === p.bundleDigest));
      if (stale.length === 0) continue;
      const rest = list.filter((p) => !stale.includes(p));
      if (rest.length > 0) this.sessions.set(key, rest);
      else this.sessions.delete(key);
      for (const p of stale) p.session.close();
    }
  }

  closeAll(): void {
    for (const list of this.sessions.values()) for (const p of list) p.session.destroy();
    this.sessions.clear();
  }

  /** Sessions pooled now. */
  get size(): number {
    let n = 0;
    for (const list of this.sessions.values()) n += list.length;
    return n;
  }

  private open(source: LocalIdentity, remote: RemoteIdentity, bundle: Bundle): ClientHttp2Session {
    let identityError: "server_identity" | null = null;
    const tlsOptions = {
      ...this.tls.contextOptions,
      key: source.keyPem,
      cert: source.chainPem,
      ca: bundle.pem,
      servername: serverNameFor(remote.id.id),
      // http2.connect sets ALPN itself only on the sockets it makes.
      ALPNProtocols: ["h2"],
      // SPIFFE peers are named by their URI SAN, not a DNS name: the server must be the destination workload.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const id = svidId(new X509Certificate(cert.raw));
        if (typeof id !== "string" && id.id === remote.id.id) return undefined;
        identityError = "server_identity";
        return new Error(`the peer transport presented ${typeof id === "string" ? id : id.id}, not ${remote.id.id}`);
      },
    };
    const session = connect(`https://${remote.node.host}:${remote.node.port}`, {
      settings: { initialWindowSize: WINDOW, enablePush: false },
      // A socket of our own: marked, so the datapath never steers the transport's TLS back into it.
      createConnection: () => {
        const socket = unconnectedSocket({ mark: this.mark });
        socket.connect({ host: remote.node.host, port: remote.node.port });
        return tlsConnect({ ...tlsOptions, socket });
      },
    });
    let up = false;
    session.once("connect", () => {
      up = true;
      session.setLocalWindowSize(WINDOW);
      const group = (session.socket as TLSSocket).getEphemeralKeyInfo();
      this.metrics.connectionUp("outbound", group && "name" in group && group.name ? String(group.name) : "unknown");
    });
    const start = Date.now();
    session.on("error", (err: Error & { code?: string }) => {
      if (up) return;
      const reason = identityError ?? handshakeReason(err);
      this.metrics.handshakeFailed("outbound", reason);
      // The stream that asked for this session is refused too (transport_failed), with its addresses; this one names the peer node.
      this.outcomes.record({
        direction: "outbound",
        handshake: true,
        result: reason,
        source: { spiffeId: source.id.id },
        ...(isIPv4(remote.node.host) ? { destination: { address: remote.node.host, port: remote.node.port } } : {}),
        bytes: { toPeer: 0, fromPeer: 0 },
        start,
      });
    });
    session.once("close", () => up && this.metrics.connectionDown("outbound"));
    session.setTimeout(IDLE_SESSION_MS, () => session.close());
    return session;
  }
}
