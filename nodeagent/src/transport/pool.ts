// SPDX-License-Identifier: Apache-2.0
/**
 * Pooled HTTP/2 mutual-TLS sessions to peer transports. A TLS connection
 * authenticates one client certificate and one server certificate, so a
 * session carries the streams of one (source identity, destination
 * identity, peer node) and is keyed by the versions of the SVID and bundle
 * it was made with: after a rotation new streams get a new session, and the
 * old one drains (no new streams; open ones run to their end).
 */
import { connect, type ClientHttp2Session } from "node:http2";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from "node:tls";
import { isIPv4 } from "node:net";
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
}

export class SessionPool {
  private readonly sessions = new Map<string, Pooled>();

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

  session(source: LocalIdentity, remote: RemoteIdentity, bundle: Bundle): ClientHttp2Session {
    const key = [source.id.id, source.version, `${remote.node.host}:${remote.node.port}`, remote.id.id, bundle.digest].join("\n");
    const pooled = this.sessions.get(key);
    if (pooled && !pooled.session.closed && !pooled.session.destroyed) return pooled.session;
    const session = this.open(source, remote, bundle);
    this.sessions.set(key, { session, source: source.id.id, sourceVersion: source.version, destinationTrustDomain: remote.id.trustDomain, bundleDigest: bundle.digest });
    session.once("close", () => {
      if (this.sessions.get(key)?.session === session) this.sessions.delete(key);
    });
    return session;
  }

  /** Drains every session made with an SVID or bundle `state` no longer holds. */
  retire(state: TransportState): void {
    for (const [key, p] of this.sessions) {
      const current = state.local.get(p.source)?.version === p.sourceVersion && state.bundles.get(p.destinationTrustDomain)?.digest === p.bundleDigest;
      if (current) continue;
      this.sessions.delete(key);
      p.session.close();
    }
  }

  closeAll(): void {
    for (const p of this.sessions.values()) p.session.destroy();
    this.sessions.clear();
  }

  get size(): number {
    return this.sessions.size;
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
