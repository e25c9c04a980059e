// Operator-provided certificate files (WEFT_TLS_CERT, WEFT_TLS_KEY) are
// re-read when they change, as certbot or cert-manager replace them: the
// server presents the new pair without a restart, and a half-replaced pair
// (a new certificate, the old key) keeps the current one with a warning.
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, type WeftApp } from "../../api/src/app.ts";
import { testConfig } from "../support/api.ts";
import { untilHolds } from "../support/until.ts";

const execFileAsync = promisify(execFile);

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8", timeout: 30_000 });
  expect(r.status, r.stderr).toBe(0);
}

/** The serial of the certificate presented to a client trusting only `ca`: a handshake that verifies. */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ca }, () => {
      const serial = new X509Certificate(socket.getPeerCertificate().raw).serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on("error", reject);
  });
}

describe("TLS from files, reloaded in place", () => {
  let dir: string;
  let app: WeftApp;
  let port: number;
  const logs: string[] = [];
  const f = (n: string) => join(dir, n);
  /** A key and a certificate for localhost signed by the test CA, as PEM text. */
  const issue = (name: string): { cert: string; key: string; serial: string } => {
    openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f(`${name}.key`), "-out", f(`${name}.csr`), "-subj", "/CN=localhost"]);
    openssl(["x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f(`${name}.pem`), "-days", "1", "-extfile", f("ext.cnf")]);
    const cert = readFileSync(f(`${name}.pem`), "utf8");
    return { cert, key: readFileSync(f(`${name}.key`), "utf8"), serial: new X509Certificate(cert).serialNumber };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-tls-reload-"));
    writeFileSync(f("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-subj", "/CN=reload test CA", "-days", "1"]);
    const first = issue("first");
    writeFileSync(f("tls.pem"), first.cert);
    writeFileSync(f("tls.key"), first.key);
    app = await buildApp(
      testConfig("pglite", { tls: { source: "files", certFile: f("tls.pem"), keyFile: f("tls.key") }, tlsFileCheckMs: 100, logLevel: "info" }),
      { logStream: { write: (line: string) => logs.push(line) } },
    );
    await app.listen({ port: 0, host: "127.0.0.1" });
    port = (app.server.address() as { port: number }).port;
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("serves the new pair once both files are replaced, keeping the old one while they do not fit", async () => {
    const ca = readFileSync(f("ca.pem"), "utf8");
    const first = new X509Certificate(readFileSync(f("tls.pem"))).serialNumber;
    expect(await servedSerial(port, ca)).toBe(first);

    const second = issue("second");
    writeFileSync(f("tls.pem"), second.cert);
    await untilHolds("the warning about a pair that does not fit", () => logs.join(""), (l) => /TLS: keeping the current certificate: WEFT_TLS_CERT and WEFT_TLS_KEY do not make a TLS key pair/.test(l), 10_000, 50);
    expect(await servedSerial(port, ca)).toBe(first);

    writeFileSync(f("tls.key"), second.key);
    await untilHolds("the new certificate served", () => servedSerial(port, ca), (s) => s === second.serial, 10_000, 50);
    expect(logs.join("")).toMatch(/TLS: reloaded WEFT_TLS_CERT and WEFT_TLS_KEY/);
    // The API still answers over the new certificate (curl run asynchronously: the server is in this process).
    const health = await execFileAsync("curl", ["-sS", "--fail", "--max-time", "10", "--cacert", f("ca.pem"), `https://localhost:${port}/healthz`]);
    expect(health.stdout).toBe('{"status":"ok"}');
  }, 60_000);
});
