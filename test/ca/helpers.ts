// Shared test fixtures for the CA: a temp dir, openssl, CSRs made the way a
// workload would make them, and a CaService on an in-memory store with a
// clock the test moves.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { connect, createServer, type PeerCertificate } from "node:tls";
import { Kek } from "../../api/src/ca/kek.ts";
import { CaService } from "../../api/src/ca/service.ts";
import { MemoryCaStore } from "./memory-store.ts";

export function tempDir(): { dir: string; file: (name: string, content?: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "weft-ca-"));
  return {
    dir,
    file: (name, content) => {
      const p = join(dir, name);
      if (content !== undefined) writeFileSync(p, content);
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function openssl(args: string[]): string {
  return execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs openssl and returns exit status and combined output instead of throwing. */
export function opensslStatus(args: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: openssl(args) };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

/** The lines of an `openssl x509 -text` section, e.g. "X509v3 Key Usage: critical" and its value. */
export function extension(text: string, name: string): { header: string; value: string } | null {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => l.trim().startsWith(`${name}:`));
  if (i < 0) return null;
  return { header: lines[i]!.trim(), value: (lines[i + 1] ?? "").trim() };
}

export type KeySpec = "ec-p256" | "ec-p384" | "rsa-1024" | "rsa-2048" | "ed25519";

/** A private key (PEM path) and a CSR for it, made with openssl req like a workload would. */
export function makeCsr(
  dir: string,
  opts: { key?: KeySpec; uri?: string | string[]; subject?: string; name?: string } = {},
): { keyPath: string; csrPem: string } {
  const name = opts.name ?? `w-${randomBytes(4).toString("hex")}`;
  const keyPath = join(dir, `${name}.key`);
  const spec = opts.key ?? "ec-p256";
  const genArgs: Record<KeySpec, string[]> = {
    "ec-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "rsa-1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "rsa-2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    ed25519: ["-algorithm", "ED25519"],
  };
  openssl(["genpkey", ...genArgs[spec], "-out", keyPath]);
  const uris = opts.uri === undefined ? [] : Array.isArray(opts.uri) ? opts.uri : [opts.uri];
  const san = uris.length ? ["-addext", `subjectAltName=${uris.map((u) => `URI:${u}`).join(",")}`] : [];
  const csrPath = join(dir, `${name}.csr`);
  openssl(["req", "-new", "-key", keyPath, "-subj", opts.subject ?? "/O=workload/CN=ignored", ...san, "-out", csrPath]);
  return { keyPath, csrPem: readFileSync(csrPath, "utf8") };
}

export class TestClock {
  constructor(public t = Date.UTC(2030, 0, 1, 12, 0, 0)) {}
  now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Who the tests act as, for the audit rows a real store would write. */
export const CALLER = { actor: "test", requestId: "test" } as const;

export function newService(opts: { caTtlMs?: number; clock?: TestClock } = {}) {
  const clock = opts.clock ?? new TestClock(Date.now());
  const store = new MemoryCaStore();
  const kek = new Kek(randomBytes(32));
  const ca = new CaService({ store, kek, clock: clock.now, ...(opts.caTtlMs !== undefined && { caTtlMs: opts.caTtlMs }) });
  return { ca, store, kek, clock };
}

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;

/** The SPIFFE ID in a peer certificate's URI SAN. */
export const uriSan = (c: PeerCertificate): string | undefined => /URI:([^,]+)/.exec(c.subjectaltname ?? "")?.[1];

/**
 * A TLS 1.3 server holding an SVID, trusting only `bundle` and requiring a
 * client certificate; it answers "hello" and records each client's SPIFFE
 * ID, or why it refused the client. `dial` connects with client credentials
 * and resolves on close with what the client saw; TLS 1.3 reports the
 * server's refusal of a client certificate after the client's side of the
 * handshake, as an alert.
 */
export async function mtlsServer(server: { key: Buffer; cert: string }, bundle: string, serverId: string) {
  const seenByServer: string[] = [];
  const refusals: (Error | undefined)[] = [];
  const srv = createServer({ ...server, ca: bundle, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, (s) => {
    seenByServer.push(uriSan(s.getPeerCertificate())!);
    s.end("hello");
  });
  srv.on("tlsClientError", (_e, s) => refusals.push(s.authorizationError));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  const dial = (creds: { key: Buffer; cert: string }) =>
    new Promise<{ peerId: string | undefined; data: string; error: Error | undefined }>((resolve) => {
      const sock = connect({
        host: "127.0.0.1",
        port,
        ...creds,
        ca: bundle,
        rejectUnauthorized: true,
        // SPIFFE peers authenticate by SPIFFE ID, not DNS name: the URI SAN replaces the hostname check.
        checkServerIdentity: (_h, cert) => (uriSan(cert) === serverId ? undefined : new Error(`unexpected server ${uriSan(cert)}`)),
      });
      let data = "";
      let error: Error | undefined;
      let peerId: string | undefined;
      sock.on("secureConnect", () => (peerId = uriSan(sock.getPeerCertificate())));
      sock.on("data", (d) => (data += d));
      sock.on("error", (e) => (error = e));
      sock.on("close", () => resolve({ peerId, data, error }));
    });
  const close = () => new Promise<void>((r) => srv.close(() => r()));
  return { seenByServer, refusals, dial, close };
}
