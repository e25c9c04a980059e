/**
 * bench:transport-engine — which engine carries the node-to-node mTLS
 * transport (issue #18), measured on loopback before choosing:
 *
 *   wrk -> engine out -> (TLS 1.3, mutual) -> engine in -> nginx backend
 *
 * - node:    Node's http2 over TLS 1.3, X25519MLKEM768; every accepted
 *            connection is one CONNECT stream on ONE pooled TLS connection
 *            (HBONE's shape); two processes, one per side.
 * - haproxy: HAProxy 2.6 (Debian) in tcp mode on both sides, originating and
 *            terminating mutual TLS 1.3 (X25519: Debian's OpenSSL 3.0 has no
 *            ML-KEM; 2.6 has no `curves` on server lines, so the client side
 *            offers OpenSSL's default groups, X25519 first). HAProxy 2.6 cannot originate HTTP/2 CONNECT tunnels,
 *            so this is one TLS connection per carried connection: a new
 *            connection pays a full handshake (with HAProxy's session reuse).
 *            One thread each, like the Node engine.
 * - direct:  wrk -> nginx, plaintext: the floor.
 *
 * Keep-alive (wrk's connections reused) and new connection (Connection:
 * close: every request a new carried connection). Rounds alternate the
 * order; req/s and CPU per request (utime+stime of the two engine processes
 * from /proc/PID/stat) are medians over rounds, ratios to direct are taken
 * within each round. RSS of both engine processes after the run.
 * Env: ROUNDS (3), SECONDS (4), CONNECTIONS (32).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { cpuSeconds } from "../api/cpu.ts";
import { withCleanup, type BenchCleanup } from "../support/cleanup.ts";
import { drive, table } from "../support/load.ts";
import { rssKiB, startDaemon, type Daemon } from "../support/netns.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 4);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const MODES = ["keep-alive", "new connection"] as const;
type Mode = (typeof MODES)[number];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(true));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(false)));
  });
}

/** A CA and two leaf SVIDs (client, server) made with openssl, in `dir`. */
function mintCertificates(dir: string): void {
  const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/O=bench/CN=bench ca"]);
  for (const who of ["client", "server"]) {
    run(["req", "-new", ...ec, "-keyout", `${who}.key`, "-out", `${who}.csr`, "-subj", "/O=bench"]);
    writeFileSync(join(dir, `${who}.ext`), `subjectAltName=URI:spiffe://bench.test/ns/b/sa/${who}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    run(["x509", "-req", "-in", `${who}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", `${who}.ext`, "-out", `${who}.pem`]);
    writeFileSync(join(dir, `${who}.bundle`), execFileSync("cat", [`${who}.pem`, `${who}.key`], { cwd: dir }));
  }
}

function nginxBackend(cleanup: BenchCleanup, dir: string, port: number): Promise<Daemon> {
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:${port} backlog=4096; location / { default_type text/plain; return 200 "weft bench\\n"; } }
}
`,
  );
  return startDaemon(cleanup, "nginx backend", ["nginx", "-p", `${dir}/`, "-c", conf], { ready: () => listening(port) });
}

function haproxyPair(cleanup: BenchCleanup, dir: string, outPort: number, inPort: number, backendPort: number): Promise<Daemon[]> {
  const common = `global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`;
  const side = (name: string, body: string, port: number) => {
    const cfg = join(dir, `haproxy-${name}.cfg`);
    writeFileSync(cfg, common + body);
    return startDaemon(cleanup, `haproxy ${name}`, ["haproxy", "-db", "-f", cfg], { ready: () => listening(port) });
  };
  return Promise.all([
    side(
      "out",
      `listen out
  bind 127.0.0.1:${outPort}
  server in 127.0.0.1:${inPort} ssl crt ${dir}/client.bundle ca-file ${dir}/ca.pem verify required\n`,
      outPort,
    ),
    side(
      "in",
      `listen in
  bind 127.0.0.1:${inPort} ssl crt ${dir}/server.bundle ca-file ${dir}/ca.pem verify required curves X25519
  server backend 127.0.0.1:${backendPort}\n`,
      inPort,
    ),
  ]);
}

async function nodePair(cleanup: BenchCleanup, dir: string, outPort: number, inPort: number, backendPort: number): Promise<Daemon[]> {
  const engine = join(import.meta.dirname, "node-engine.ts");
  const start = (role: string, port: number, target: number) =>
    startDaemon(cleanup, `node engine ${role}`, [process.execPath, engine, role, String(port), String(target), dir], {
      ready: (out) => out.includes("ready"),
      env: { ...process.env, BACKEND_PORT: String(backendPort) },
    });
  const inbound = await start("in", inPort, backendPort);
  return [await start("out", outPort, inPort), inbound];
}

interface Path {
  name: string;
  port: number;
  processes: Daemon[];
}

interface Sample {
  path: string;
  mode: Mode;
  round: number;
  rps: number;
  cpuUsPerRequest: number;
}

await withCleanup("bench:transport-engine", async (cleanup) => {
  const dir = mkdtempSync(join(tmpdir(), "wbench-transport-"));
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  mintCertificates(dir);
  const [backendPort, nodeOut, nodeIn, haOut, haIn] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  await nginxBackend(cleanup, dir, backendPort);
  const paths: Path[] = [
    { name: "direct", port: backendPort, processes: [] },
    { name: "node", port: nodeOut, processes: await nodePair(cleanup, dir, nodeOut, nodeIn, backendPort) },
    { name: "haproxy", port: haOut, processes: await haproxyPair(cleanup, dir, haOut, haIn, backendPort) },
  ];
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(" ")}; ${ROUNDS} rounds x ${SECONDS} s, ${CONNECTIONS} connections`);
  const samples: Sample[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so no path always runs first (warm caches, a neighbour's burst).
    const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
    for (const mode of MODES) {
      for (const p of order) {
        const cpuBefore = p.processes.reduce((s, d) => s + cpuSeconds(d.pid), 0);
        const r = await drive(`http://127.0.0.1:${p.port}/`, mode === "new connection" ? { connection: "close" } : {}, { connections: CONNECTIONS, seconds: SECONDS });
        const cpu = p.processes.reduce((s, d) => s + cpuSeconds(d.pid), 0) - cpuBefore;
        const requests = r.requests ?? r.requestsPerSecond * SECONDS;
        samples.push({ path: p.name, mode, round, rps: r.requestsPerSecond, cpuUsPerRequest: (cpu * 1e6) / requests });
        if (r.socketErrors) console.log(`  ${p.name} ${mode} round ${round}: ${r.socketErrors}`);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: (string | number)[][] = [["path", "mode", "req/s", "req/s vs direct", "engine CPU µs/req", "RSS MiB (both sides)"]];
  for (const mode of MODES) {
    for (const p of paths) {
      const mine = samples.filter((s) => s.path === p.name && s.mode === mode);
      const ratios = mine.map((s) => s.rps / samples.find((d) => d.path === "direct" && d.mode === mode && d.round === s.round)!.rps);
      const rss = p.processes.reduce((s, d) => s + (rssKiB(d.pid) ?? 0), 0);
      rows.push([
        p.name,
        mode,
        Math.round(median(mine.map((s) => s.rps))),
        median(ratios).toFixed(2),
        p.processes.length ? median(mine.map((s) => s.cpuUsPerRequest)).toFixed(1) : "-",
        p.processes.length ? (rss / 1024).toFixed(1) : "-",
      ]);
    }
  }
  console.log(table(rows));
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
});
