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
import { createServer, type Server, type Socket } from "node:net";
import type { TransportMetrics, StreamResult } from "./metrics.ts";
import type { OriginResolver } from "./origins.ts";
import type { SessionPool } from "./pool.ts";
import { splice } from "./splice.ts";
import type { TransportState } from "./state.ts";

/** What a refusing peer's status says about the stream. */
function refusal(status: number): StreamResult {
  if (status === 403) return "forbidden";
  if (status === 400 || status === 405 || status === 421) return "bad_request";
  return "upstream_failed";
}

export function outboundListener(deps: {
  state: () => TransportState;
  origins: OriginResolver;
  pool: SessionPool;
  metrics: TransportMetrics;
}): Server {
  const { metrics } = deps;
  const refuse = (sock: Socket, result: StreamResult) => {
    metrics.stream("outbound", result);
    sock.destroy();
  };
  return createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
    sock.on("error", () => sock.destroy());
    const origin = deps.origins.resolve(sock);
    if (!origin) return refuse(sock, "no_origin");
    const state = deps.state();
    const source = state.localByAddress.get(origin.source);
    if (!source) return refuse(sock, "unknown_source");
    const remote = state.remoteByAddress.get(origin.destination.address);
    const bundle = remote && state.bundles.get(remote.id.trustDomain);
    if (!remote || !bundle) return refuse(sock, "unknown_destination");

    let stream;
    try {
      stream = deps.pool.session(source, remote, bundle).request(
        {
          [constants.HTTP2_HEADER_METHOD]: "CONNECT",
          [constants.HTTP2_HEADER_AUTHORITY]: `${origin.destination.address}:${origin.destination.port}`,
          // HBONE (ztunnel) names the original source this way; the receiver believes it only for addresses the peer's SPIFFE ID owns.
          forwarded: `for=${origin.source}`,
        },
        { endStream: false },
      );
    } catch {
      return refuse(sock, "transport_failed");
    }
    let answered = false;
    stream.once("response", (headers) => {
      answered = true;
      const status = Number(headers[constants.HTTP2_HEADER_STATUS]);
      if (status !== 200) {
        stream.close();
        return refuse(sock, refusal(status));
      }
      metrics.stream("outbound", "carried");
      metrics.streamOpened("outbound");
      splice(sock, stream, (way, n) => metrics.carried("outbound", way, n), () => metrics.streamClosed("outbound"));
      sock.resume();
    });
    const failed = () => {
      if (answered) return;
      answered = true;
      refuse(sock, "transport_failed");
    };
    stream.on("error", failed);
    stream.once("close", failed);
  });
}
