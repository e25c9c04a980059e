/**
 * The peer bench/svid measures Weft against: CloudFlare's cfssl (Debian
 * golang-cfssl, 1.2) as `cfssl serve` with a P-256 CA made by openssl, no
 * authentication and no database, signing CSRs at POST /api/v1/cfssl/sign.
 * Nothing here installs anything: `cfsslMissing()` names the package.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CFSSL_SIGN_PATH = "/api/v1/cfssl/sign";

/** null when cfssl runs; else what to install. */
export function cfsslMissing(): string | null {
  try {
    execFileSync("cfssl", ["version"], { stdio: "ignore" });
    return null;
  } catch {
    return "cfssl (the peer CA bench/svid compares with): apt-get install golang-cfssl";
  }
}

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.once("error", reject);
  });
}

/** Starts `cfssl serve` on a loopback port with a fresh CA; stop() ends it and removes its files. */
export async function startCfssl(): Promise<{ child: ChildProcess; port: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "weft-bench-cfssl-"));
  const stopFiles = () => rmSync(dir, { recursive: true, force: true });
  try {
    const key = join(dir, "ca-key.pem");
    const cert = join(dir, "ca.pem");
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    execFileSync("openssl", ["req", "-x509", "-new", "-key", key, "-subj", "/O=bench/CN=cfssl bench CA", "-days", "2", "-sha256", "-out", cert]);
    // Leaves like Weft's: one hour, client and server authentication.
    const config = join(dir, "config.json");
    writeFileSync(config, JSON.stringify({ signing: { default: { expiry: "1h", usages: ["digital signature", "server auth", "client auth"] } } }));
    const port = await freePort();
    const child = spawn("cfssl", ["serve", "-address", "127.0.0.1", "-port", String(port), "-ca", cert, "-ca-key", key, "-config", config, "-loglevel", "5"], {
      stdio: ["ignore", "ignore", "ignore"],
    });
    const stop = () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }).finally(stopFiles);
    for (let i = 0; i < 100 && !(await canConnect(port)); i++) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!(await canConnect(port))) {
      await stop();
      throw new Error(`cfssl serve did not listen on 127.0.0.1:${port} within 10 s`);
    }
    return { child, port, stop };
  } catch (err) {
    stopFiles();
    throw err;
  }
}
