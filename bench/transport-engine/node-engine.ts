/**
 * The Node engine as the bench measures it: Node's http2 and TLS with the
 * transport's own splicing (nodeagent/src/transport/splice.ts), one process
 * per side, without the transport's origin lookup (wrk cannot say where
 * each connection goes; the kernel will). `out` accepts plain TCP and carries each connection
 * as an HTTP/2 CONNECT stream over ONE pooled TLS 1.3 connection to `in`;
 * `in` requires a client certificate, opens the CONNECT target and pipes.
 * argv: role listenPort targetPort dir (dir holds ca.pem, client.pem/key, server.pem/key)
 */
import { connect as h2connect, constants, createSecureServer, type ClientHttp2Session } from "node:http2";
import { createConnection, createServer } from "node:net";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { splice } from "../../nodeagent/src/transport/splice.ts";

const [role, listenPort, targetPort, dir] = process.argv.slice(2) as [string, string, string, string];
const file = (n: string) => readFileSync(join(dir, n));
const tls = { ca: file("ca.pem"), minVersion: "TLSv1.3" as const, ecdhCurve: "X25519MLKEM768" };

if (role === "in") {
  const server = createSecureServer({ ...tls, key: file("server.key"), cert: file("server.pem"), requestCert: true, rejectUnauthorized: true });
  server.on("stream", (stream, headers) => {
    const [host, port] = String(headers[":authority"]).split(":");
    const upstream = createConnection({ host, port: Number(port), allowHalfOpen: true }, () => {
      stream.respond({ ":status": 200 });
      splice(upstream, stream, () => {}, () => {});
    });
    upstream.once("error", () => stream.close(constants.NGHTTP2_CONNECT_ERROR));
  });
  server.listen(Number(listenPort), "127.0.0.1", () => console.log("ready"));
} else {
  let session: ClientHttp2Session | null = null;
  const pooled = () => {
    if (session && !session.closed && !session.destroyed) return session;
    session = h2connect(`https://127.0.0.1:${targetPort}`, {
      ...tls,
      key: file("client.key"),
      cert: file("client.pem"),
      checkServerIdentity: () => undefined,
      settings: { initialWindowSize: 1 << 20 },
    });
    session.on("error", () => (session = null));
    return session;
  };
  createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
    const stream = pooled().request({ ":method": "CONNECT", ":authority": `127.0.0.1:${process.env.BACKEND_PORT}` });
    stream.once("response", () => {
      splice(sock, stream, () => {}, () => {});
      sock.resume();
    });
    stream.on("error", () => sock.destroy());
    sock.on("error", () => stream.destroy());
  }).listen(Number(listenPort), "127.0.0.1", () => console.log("ready"));
}
