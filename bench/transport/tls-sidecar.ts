/**
 * The Istio-sidecar topology's proxy, one per pod, inside the pod's network
 * namespace: HAProxy (Debian 2.6) in tcp mode, one process, one thread,
 * holding the pod's SVID and its tenant's bundle.
 *   outbound 127.0.0.1:15001 -> the peer pod's inbound, originating TLS 1.3
 *            with the pod's certificate as client certificate, verifying
 *            the peer's chain against the bundle;
 *   inbound  <pod address>:15006 -> 127.0.0.1:<app port>, terminating TLS
 *            1.3 and requiring a client certificate the bundle vouches for.
 * (Istio's ports; the node's transport listens on 15001 in the NODE's
 * namespace, never in a pod's.) Both listeners in one process, as a real
 * sidecar has, so its memory is a real sidecar's.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchCleanup } from "../support/cleanup.ts";
import { inNetns, startDaemon, type Daemon } from "../support/netns.ts";
import { SIDECAR_CONNECTIONS } from "../support/proxies.ts";
import type { SvidFiles } from "./svid-files.ts";

export const SIDECAR_OUTBOUND_PORT = 15001;
export const SIDECAR_INBOUND_PORT = 15006;

export interface TlsSidecar extends Daemon {
  /** HAProxy's `show info` (its stats socket): SslFrontendSessionReuse_pct says how many inbound handshakes were resumptions. */
  info(): Promise<Record<string, string>>;
}

export interface TlsSidecarSpec {
  netns: string;
  /** The pod's own address: where the inbound listener binds. */
  podAddress: string;
  svid: SvidFiles;
  /** The application's port on 127.0.0.1 behind the inbound listener. */
  appPort: number;
  /** Where the outbound listener connects: the peer pod's address (its inbound port). */
  peerAddress: string;
}

/** haproxy.cfg for one pod's sidecar. */
export function tlsSidecarConfig(s: TlsSidecarSpec, statsSocket: string): string {
  const tls = `crt ${s.svid.haproxyPem} ca-file ${s.svid.bundlePem} verify required`;
  return `global
  maxconn ${SIDECAR_CONNECTIONS}
  nbthread 1
  stats socket ${statsSocket} mode 600
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
listen outbound
  bind 127.0.0.1:${SIDECAR_OUTBOUND_PORT}
  server peer ${s.peerAddress}:${SIDECAR_INBOUND_PORT} ssl ${tls}
listen inbound
  bind ${s.podAddress}:${SIDECAR_INBOUND_PORT} ssl ${tls}
  server app 127.0.0.1:${s.appPort}
`;
}

function listening(ns: string, port: number): boolean {
  try {
    return execFileSync("ss", ["-N", ns, "-ltnH", `sport = :${port}`], { encoding: "utf8" }).trim() !== "";
  } catch {
    return false;
  }
}

/** Starts the pod's sidecar (stopped on cleanup); resolves once both listeners are up. */
export async function tlsSidecar(cleanup: BenchCleanup, s: TlsSidecarSpec): Promise<TlsSidecar> {
  const dir = mkdtempSync(join(tmpdir(), "wbench-tls-sidecar-"));
  cleanup.track("dirs", dir);
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, "haproxy.cfg");
  const stats = join(dir, "stats.sock");
  writeFileSync(cfg, tlsSidecarConfig(s, stats));
  // -db: foreground, no master-worker: the process we started is the proxy.
  const daemon = await startDaemon(cleanup, `haproxy TLS sidecar in ${s.netns}`, [...inNetns(s.netns), "haproxy", "-db", "-f", cfg], {
    ready: () => listening(s.netns, SIDECAR_OUTBOUND_PORT) && listening(s.netns, SIDECAR_INBOUND_PORT),
  });
  return { ...daemon, info: () => showInfo(stats) };
}

/** `show info` over HAProxy's stats socket, as name -> value. */
function showInfo(socket: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    let out = "";
    const conn = connect(socket, () => conn.end("show info\n"));
    conn.setTimeout(5_000, () => conn.destroy(new Error(`no answer on ${socket} in 5 s`)));
    conn.on("data", (d: Buffer) => (out += String(d)));
    conn.on("error", reject);
    conn.on("close", () => resolve(Object.fromEntries(out.split("\n").filter((l) => l.includes(": ")).map((l) => [l.slice(0, l.indexOf(": ")), l.slice(l.indexOf(": ") + 2)]))));
  });
}
