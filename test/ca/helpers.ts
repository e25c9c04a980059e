// Shared test fixtures for the CA: a temp dir, openssl, CSRs made the way a
// workload would make them, and a CaService on an in-memory store with a
// clock the test moves.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Kek } from "../../api/src/ca/kek.ts";
import { CaService, MemoryCaStore } from "../../api/src/ca/service.ts";

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

export function newService(opts: { caTtlMs?: number; clock?: TestClock } = {}) {
  const clock = opts.clock ?? new TestClock(Date.now());
  const store = new MemoryCaStore();
  const kek = new Kek(randomBytes(32));
  const ca = new CaService({ store, kek, clock: clock.now, ...(opts.caTtlMs !== undefined && { caTtlMs: opts.caTtlMs }) });
  return { ca, store, kek, clock };
}

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
