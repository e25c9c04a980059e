// SPDX-License-Identifier: Apache-2.0
/**
 * The outbound side: accepts connections the kernel redirected, finds their
 * origin (never from the connection's own bytes), and carries each as one
 * HBONE stream — `CONNECT <destination ip:port>` on a pooled mutual-TLS
 * HTTP/2 session that presents the SOURCE workload's SVID. A connection
 * whose origin, source SVID or destination is unknown is closed: there is
 * no plaintext path around the transport.
 */
import { constants } from "node:http2";
import { createServer, isIPv4, type Server, type Socket } from "node:net";
import type { Endpoint } from "./endpoint.ts";
import type { TransportMetrics, StreamResult } from "./metrics.ts";
import type { OriginResolver } from "./origins.ts";
import type { OutcomeBuffer, OutcomeStart } from "./outcomes.ts";
import type { SessionPool } from "./pool.ts";
import { countInto, splice } from "./splice.ts";
import type { LocalIdentity, TransportState } from "./state.ts";

/** What a refusing peer's status says about the stream. */
function refusal(status: number): StreamResult {
  if (status === 403) return "forbidden";
  if (status === 400 || status === 405 || status === 421) return "bad_request";
  return "upstream_failed";
}

interface CarryDeps {
  state: () => TransportState;
  pool: SessionPool;
  metrics: TransportMetrics;
  outcomes: OutcomeBuffer;
}

/** Who a connection is carried for and where: or why it is refused. */
type Resolution = { source: LocalIdentity; sourceAddress: string | null; destination: Endpoint } | { refused: StreamResult };

/**
 * Carries each connection the resolver places as one HBONE stream, or
 * closes it with the resolver's reason. `resolve` gets the outcome so far
 * to add what it learns (the source address) even when it refuses.
 */
function carrier(deps: CarryDeps, resolve: (sock: Socket, state: TransportState, outcome: OutcomeStart) => Resolution): (sock: Socket) => void {
  const { metrics, outcomes } = deps;
  return (sock) => {
    const start = Date.now();
    const bytes = { toPeer: 0, fromPeer: 0 };
    // What is known of the connection so far, for its outcome: the workload's socket until the origin says more.
    const outcome: OutcomeStart = {
      direction: "outbound",
      handshake: false,
      source: sock.remoteAddress && isIPv4(sock.remoteAddress) ? { address: sock.remoteAddress, port: sock.remotePort! } : {},
      start,
    };
    const refuse = (result: StreamResult) => {
      metrics.stream("outbound", result);
      outcomes.record({ ...outcome, result, bytes });
      sock.destroy();
    };
    sock.on("error", () => sock.destroy());
    const state = deps.state();
    const resolved = resolve(sock, state, outcome);
    if ("refused" in resolved) return refuse(resolved.refused);
    const { source, sourceAddress, destination } = resolved;
    outcome.source.spiffeId = source.id.id;
    const remote = state.remoteByAddress.get(destination.address);
    const bundle = remote && state.bundles.get(remote.id.trustDomain);
    if (!remote || !bundle) return refuse("unknown_destination");

    let stream;
    try {
      stream = deps.pool.request(source, remote, bundle, {
        [constants.HTTP2_HEADER_METHOD]: "CONNECT",
        [constants.HTTP2_HEADER_AUTHORITY]: `${destination.address}:${destination.port}`,
        // HBONE (ztunnel) names the original source this way; the receiver believes it only for addresses the peer's SPIFFE ID owns.
        ...(sourceAddress === null ? {} : { forwarded: `for=${sourceAddress}` }),
      });
    } catch {
      return refuse("transport_failed");
    }
    // The client's first bytes go with the CONNECT, not a round trip later (after the peer's 200): a new
    // connection then costs one fabric round trip and one TLS write less. The peer holds them unread
    // until its delivery connects (its stream window bounds how many) and drops them when it refuses.
    let answer: "pending" | "carried" | "refused" = "pending";
    // Bytes count (in the metrics and the outcome) once the peer took the stream: a refused one carried none.
    let early = 0;
    const count = countInto(bytes, (way, n) => metrics.carried("outbound", way, n));
    splice(sock, stream, (way, n) => (answer === "carried" ? count(way, n) : (early += n)), () => {
      if (answer !== "carried") return;
      metrics.streamClosed("outbound");
      outcomes.record({ ...outcome, result: "carried", bytes });
    });
    sock.resume();
    stream.once("response", (headers) => {
      const status = Number(headers[constants.HTTP2_HEADER_STATUS]);
      if (status !== 200) {
        answer = "refused";
        stream.close();
        return refuse(refusal(status));
      }
      answer = "carried";
      metrics.stream("outbound", "carried");
      metrics.streamOpened("outbound");
      // Only the client's bytes can precede the answer: HTTP/2 sends no DATA before a response's HEADERS.
      if (early) count("to_peer", early);
    });
    const failed = () => {
      if (answer !== "pending") return;
      answer = "refused";
      refuse("transport_failed");
    };
    stream.on("error", failed);
    stream.once("close", failed);
  };
}

/** The listener the kernel steers workloads' connections to: each carried as its source workload. */
export function outboundListener(deps: CarryDeps & { origins: OriginResolver }): Server {
  const carry = carrier(deps, (sock, state, outcome) => {
    const origin = deps.origins.resolve(sock);
    if (!origin) return { refused: "no_origin" };
    outcome.source.address = origin.source;
    outcome.destination = origin.destination;
    const source = state.localByAddress.get(origin.source);
    return source ? { source, sourceAddress: origin.source, destination: origin.destination } : { refused: "unknown_source" };
  });
  return createServer({ allowHalfOpen: true, pauseOnConnect: true }, carry);
}

/**
 * The listener of one target of the node's L7 proxy (proxy-targets.ts): each
 * connection carried as the proxy, with its SVID of the target's trust
 * domain, and no source address (the receiver delivers from its own proxy's).
 */
export function proxyTargetListener(deps: CarryDeps, target: Endpoint): Server {
  const carry = carrier(deps, (_sock, state, outcome) => {
    outcome.destination = target;
    if (!state.proxyTargets.has(`${target.address}:${target.port}`)) return { refused: "unknown_destination" };
    const remote = state.remoteByAddress.get(target.address);
    const source = remote && state.proxyByTrustDomain.get(remote.id.trustDomain);
    if (source && state.proxyAddress !== null) outcome.source.address = state.proxyAddress;
    return !remote ? { refused: "unknown_destination" } : !source ? { refused: "unknown_source" } : { source, sourceAddress: null, destination: target };
  });
  return createServer({ allowHalfOpen: true, pauseOnConnect: true }, carry);
}
