/**
 * bench:l7's sidecar baseline: the Istio-sidecar topology with a real L7
 * proxy in each pod, HAProxy (Debian 2.6) in http mode, plain HTTP (no TLS:
 * the L7 work only), one process, one thread, configured for a pod
 * (SIDECAR_CONNECTIONS), in the pod's network namespace:
 *   outbound 127.0.0.1:15001: the caller's side. Strips every x-weft-*
 *            header the app sent, picks a route by a random draw (as the
 *            node proxy picks a weighted backend ref) and forwards to the
 *            peer pod's inbound, one retry on a failed connect;
 *   inbound  <pod address>:15006: the callee's side. Strips x-weft-*,
 *            authorizes the caller by its source address (403
 *            problem+json to any other), tells the app who called
 *            (x-forwarded-client-cert, as Istio's inbound sidecar does),
 *            forwards to the app on 127.0.0.1.
 * Each side takes part in the request's W3C trace as the node proxy does
 * (render-trace.ts: continue a valid traceparent or start a trace, a new
 * span id, traceparent set toward the server), as an Envoy sidecar makes a
 * span on each side. With `tls` (bench:l7's BENCH_L7_MTLS pair), the hop
 * between the two is mutual TLS 1.3: the outbound presents the pod's
 * certificate and verifies the peer's against the CA, the inbound requires a
 * client certificate the CA signed (Istio's sidecars' mTLS; OpenSSL 3.0's
 * default group, X25519: HAProxy 2.6 here has no ML-KEM).
 * Both with `http-reuse always` toward their server and
 * one JSON record per request, written the way the node proxy writes its
 * records (render.ts recordRing: a ring forwarded to a unix socket, which
 * the bench reads and drops), so each sidecar pays for its logging what
 * the node proxy pays (an Envoy batches its access log writes too). Both
 * listeners in one process, as a real sidecar has, so its memory is a real
 * sidecar's.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { RecordSocket } from "../../nodeagent/src/l7/record-socket.ts";
import { RECORD_LOG_TARGET, recordRing } from "../../nodeagent/src/l7/render.ts";
import { TRACE_CONTEXT_LINES, TRACE_LOG_FIELDS } from "../../nodeagent/src/l7/render-trace.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchCleanup } from "../support/cleanup.ts";
import { listening } from "../support/listening.ts";
import { inNetns, startDaemon, type Daemon } from "../support/netns.ts";
import { SIDECAR_CONNECTIONS } from "../support/proxies.ts";

export const SIDECAR_OUTBOUND_PORT = 15001;
export const SIDECAR_INBOUND_PORT = 15006;

export interface HttpSidecarSpec {
  netns: string;
  /** The pod's own address: where the inbound listener binds. */
  podAddress: string;
  /** The application's port on 127.0.0.1 behind the inbound listener. */
  appPort: number;
  /** Where the outbound listener forwards: the peer pod's address (its inbound port). */
  peerAddress: string;
  /** The callers the inbound lets in, by source address (the pods a policy allows). */
  allowedSources: string[];
  /** The unix socket its records go to (httpSidecar listens on it). */
  recordSocket: string;
  /** Its listeners' ports (default SIDECAR_OUTBOUND_PORT, SIDECAR_INBOUND_PORT); the outbound connects to the peer's inbound port. */
  ports?: { outbound: number; inbound: number };
  /** Mutual TLS 1.3 between the sidecars: the pod's certificate and key (haproxy `crt`) and the CA both sides trust. */
  tls?: { crt: string; caFile: string };
}

/** One JSON object per request: who, where, what, how it ended (the fields the node proxy's records carry). */
const LOG_FORMAT = [
  `"startMs":%Ts%ms`,
  `"src":"%ci"`,
  `"srcPort":%cp`,
  `"frontend":"%f"`,
  `"route":"%[var(txn.route)]"`,
  `"backend":"%b"`,
  `"server":"%s"`,
  `"serverAddress":"%si"`,
  `"serverPort":%sp`,
  `"status":%ST`,
  `"durationMs":%Ta`,
  `"retries":%rc`,
  `"bytesIn":%U`,
  `"bytesOut":%B`,
  `"method":"%HM"`,
  `"path":"%[var(txn.path),json(utf8s)]"`,
  ...TRACE_LOG_FIELDS,
].join(",");

const FORBIDDEN = `{"type":"about:blank","title":"Forbidden","status":403,"detail":"this caller may not call this pod"}`;

const portsOf = (s: HttpSidecarSpec) => s.ports ?? { outbound: SIDECAR_OUTBOUND_PORT, inbound: SIDECAR_INBOUND_PORT };

/** haproxy.cfg for one pod's sidecar. */
export function httpSidecarConfig(s: HttpSidecarSpec): string {
  if (s.allowedSources.length === 0) throw new Error("httpSidecarConfig: at least one allowed source");
  const trace = TRACE_CONTEXT_LINES.map((l) => `  ${l}`).join("\n");
  const { outbound, inbound } = portsOf(s);
  const tls = s.tls ? ` ssl crt ${s.tls.crt} ca-file ${s.tls.caFile} verify required` : "";
  const tls13 = s.tls ? "\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n  ssl-default-server-options ssl-min-ver TLSv1.3" : "";
  return `global
  maxconn ${SIDECAR_CONNECTIONS}
  nbthread 1${tls13}
  log ${RECORD_LOG_TARGET} local0
${recordRing(s.recordSocket).join("\n")}
defaults
  mode http
  log global
  log-format '{${LOG_FORMAT}}'
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  http-reuse always
  option redispatch 1
frontend outbound
  bind 127.0.0.1:${outbound}
  http-request set-var(txn.path) path
${trace}
  http-request del-header x-weft- -m beg
  http-request set-var(txn.pick) rand
  http-request set-var(txn.route) str(default/0) if { var(txn.pick),mod(100) -m int 0:99 }
  use_backend peer if { var(txn.route) -m found }
  default_backend peer
backend peer
  retries 1
  retry-on conn-failure empty-response
  http-request disable-l7-retry if { method POST PATCH CONNECT }
  server peer ${s.peerAddress}:${inbound} weight 100${tls}
frontend inbound
  bind ${s.podAddress}:${inbound}${tls}
  http-request set-var(txn.path) path
${trace}
  http-request del-header x-weft- -m beg
  acl caller src ${s.allowedSources.join(" ")}
  http-request return status 403 content-type application/problem+json string '${FORBIDDEN}' unless caller
  http-request set-header x-forwarded-client-cert "By=spiffe://bench/pod;URI=spiffe://bench/%[src]"
  default_backend app
backend app
  server app 127.0.0.1:${s.appPort}
`;
}

export type HttpSidecar = Daemon & {
  /** Records read from its socket so far. */
  recordCount(): number;
  /** The last records read (at most RECENT_RECORDS), parsed. */
  recentRecords(): Record<string, unknown>[];
};

const RECENT_RECORDS = 100;

/** Starts the pod's sidecar and the socket its records go to (both stopped on cleanup); resolves once both listeners are up. */
export async function httpSidecar(cleanup: BenchCleanup, spec: Omit<HttpSidecarSpec, "recordSocket">): Promise<HttpSidecar> {
  const dir = mkdtempSync(join(tmpdir(), "wbench-http-sidecar-"));
  cleanup.track("dirs", dir);
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const s: HttpSidecarSpec = { ...spec, recordSocket: join(dir, "records.sock") };
  let count = 0;
  let recent: string[] = [];
  const socket = await RecordSocket.listen(
    s.recordSocket,
    (m) => {
      if (!m.startsWith("{")) return;
      count++;
      recent.push(m);
      if (recent.length > 2 * RECENT_RECORDS) recent = recent.slice(-RECENT_RECORDS);
    },
    (why) => console.error(`sidecar in ${s.netns}: ${why}`),
  );
  cleanup.add(`close the record socket of the sidecar in ${s.netns}`, () => socket.close());
  const cfg = join(dir, "haproxy.cfg");
  writeFileSync(cfg, httpSidecarConfig(s));
  // -db: foreground, no master-worker: the process we started is the proxy.
  const { outbound, inbound } = portsOf(s);
  const daemon = await startDaemon(cleanup, `haproxy HTTP${s.tls ? " mTLS" : ""} sidecar in ${s.netns}`, [...inNetns(s.netns), "haproxy", "-db", "-f", cfg], {
    ready: () => listening(s.netns, outbound) && listening(s.netns, inbound),
  });
  return Object.assign(daemon, { recordCount: () => count, recentRecords: () => recent.slice(-RECENT_RECORDS).map((r) => JSON.parse(r) as Record<string, unknown>) });
}
