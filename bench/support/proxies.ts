/**
 * HTTP backends and sidecar proxies for the datapath benchmarks, each one
 * process inside a network namespace, configured in a temporary directory
 * and stopped on cleanup:
 * - the backend: nginx (Debian nginx-light or nginx) answering a small 200,
 *   or a tiny Node http server when nginx is not installed;
 * - sidecars: haproxy in tcp mode (Debian haproxy), nginx with the stream
 *   module (Debian libnginx-mod-stream), one process, one thread each,
 *   configured for SIDECAR_CONNECTIONS connections.
 * Nothing here installs anything: `availability()` says which Debian
 * package to install for what is missing.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchCleanup } from "./cleanup.ts";
import { inNetns, startDaemon, type Daemon } from "./netns.ts";

export const NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";
export const BODY = "weft bench\n";

function has(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
    return true;
  } catch (err) {
    // wrk --version exits 1 after printing its version; a missing command is ENOENT.
    return (err as { code?: string }).code !== "ENOENT";
  }
}

export interface Availability {
  wrk: boolean;
  nginx: boolean;
  haproxy: boolean;
  nginxStream: boolean;
  /** one line per missing tool: what it is for and the Debian package that brings it */
  missing: string[];
}

export function availability(): Availability {
  const wrk = has("wrk", ["--version"]);
  const nginx = has("nginx", ["-v"]);
  const haproxy = has("haproxy", ["-v"]);
  const nginxStream = nginx && existsSync(NGINX_STREAM_MODULE);
  const missing: string[] = [];
  if (!wrk) missing.push("wrk (the load generator): apt-get install wrk");
  if (!nginx) missing.push("nginx (the fast HTTP backend; a Node server stands in, slower): apt-get install nginx-light");
  if (!haproxy) missing.push("haproxy (the tcp-mode sidecar baseline): apt-get install haproxy");
  if (!nginxStream) missing.push(`nginx stream module ${NGINX_STREAM_MODULE} (the nginx-stream sidecar baseline): apt-get install nginx-light libnginx-mod-stream`);
  return { wrk, nginx, haproxy, nginxStream, missing };
}

function confDir(cleanup: BenchCleanup, label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `wbench-${label}-`));
  cleanup.track("dirs", dir);
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** True once something listens on TCP `port` inside `ns`. */
function listening(ns: string, port: number): boolean {
  try {
    return execFileSync("ss", ["-N", ns, "-ltnH", `sport = :${port}`], { encoding: "utf8" }).trim() !== "";
  } catch {
    return false;
  }
}

/** nginx without a master process (one worker, the process we started), logs to stderr at error level only. */
function nginxConfig(dir: string, body: string, opts: { top?: string; connections: number }): string {
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `${t}_temp_path ${dir}/${t};`).join(" ");
  return `${opts.top ?? ""}
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr error;
events { worker_connections ${opts.connections}; }
${body.replace("TEMP_PATHS", temp)}
`;
}

export interface Backend extends Daemon {
  kind: "nginx" | "node";
}

/** An HTTP server on 0.0.0.0:port inside `ns` answering 200 with BODY to every request, keep-alive allowed. */
export async function httpBackend(cleanup: BenchCleanup, ns: string, port: number, prefer: "nginx" | "node" = "nginx"): Promise<Backend> {
  if (prefer === "nginx") {
    const dir = confDir(cleanup, "nginx");
    const conf = join(dir, "nginx.conf");
    writeFileSync(
      conf,
      nginxConfig(
        dir,
        `http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  TEMP_PATHS
  server {
    listen ${port} backlog=4096;
    location / { default_type text/plain; return 200 ${JSON.stringify(BODY)}; }
  }
}`,
        { connections: 16384 },
      ),
    );
    const d = await startDaemon(cleanup, `nginx backend in ${ns}`, [...inNetns(ns), "nginx", "-e", "stderr", "-p", `${dir}/`, "-c", conf], {
      ready: () => listening(ns, port),
    });
    return { ...d, kind: "nginx" };
  }
  const script = `const b=${JSON.stringify(BODY)};const s=require("node:http").createServer((q,r)=>{r.writeHead(200,{"content-type":"text/plain","content-length":b.length});r.end(b)});s.keepAliveTimeout=120000;s.listen(${port},"0.0.0.0")`;
  const d = await startDaemon(cleanup, `node backend in ${ns}`, [...inNetns(ns), process.execPath, "-e", script], { ready: () => listening(ns, port) });
  return { ...d, kind: "node" };
}

export type SidecarKind = "haproxy" | "nginx-stream";

/**
 * Connections a sidecar is configured for: a pod's proxy sized for a pod
 * (nginx's own default is 512, Debian's config 768), not for the node. Both
 * proxies preallocate per-connection structures, so this shows in their RSS.
 */
export const SIDECAR_CONNECTIONS = 1024;

/**
 * A per-pod TCP proxy in the pod's namespace: listens on
 * listenAddress:listenPort (127.0.0.1: the client's outbound sidecar; the
 * pod's address: a server's inbound one) and forwards every connection to
 * target:targetPort, one process, one thread.
 */
export async function sidecar(
  cleanup: BenchCleanup,
  kind: SidecarKind,
  ns: string,
  listenPort: number,
  target: string,
  targetPort: number,
  listenAddress = "127.0.0.1",
): Promise<Daemon> {
  const dir = confDir(cleanup, kind);
  if (kind === "haproxy") {
    const cfg = join(dir, "haproxy.cfg");
    writeFileSync(
      cfg,
      `global
  maxconn ${SIDECAR_CONNECTIONS}
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend sidecar
  bind ${listenAddress}:${listenPort}
  default_backend upstream
backend upstream
  server backend ${target}:${targetPort}
`,
    );
    // -db: foreground, no master-worker: the process we started is the proxy.
    return startDaemon(cleanup, `haproxy sidecar in ${ns}`, [...inNetns(ns), "haproxy", "-db", "-f", cfg], { ready: () => listening(ns, listenPort) });
  }
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    nginxConfig(
      dir,
      `stream {
  server {
    listen ${listenAddress}:${listenPort} backlog=4096;
    proxy_pass ${target}:${targetPort};
  }
}`,
      { top: `load_module ${NGINX_STREAM_MODULE};`, connections: SIDECAR_CONNECTIONS },
    ),
  );
  return startDaemon(cleanup, `nginx-stream sidecar in ${ns}`, [...inNetns(ns), "nginx", "-e", "stderr", "-p", `${dir}/`, "-c", conf], { ready: () => listening(ns, listenPort) });
}
