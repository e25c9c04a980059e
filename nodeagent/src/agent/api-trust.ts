// SPDX-License-Identifier: Apache-2.0
/**
 * How the agent trusts the API's certificate over https://: the system's
 * roots (Node's bundled ones, plus NODE_EXTRA_CA_CERTS) by default; a CA
 * file (--api-ca); or the operator CA fetched once at join time and checked
 * against its SHA-256 given on the command line (--api-ca-sha256, as
 * kubeadm's --discovery-token-ca-cert-hash), then kept in the state directory.
 */
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { ensureStateDir } from "./state.ts";

/** The file in the state directory holding the CA fetched under --api-ca-sha256. */
export const PINNED_CA_FILE = "api-ca.pem";
const PIN_FETCH_TIMEOUT_MS = 15_000;
/** An operator CA bundle is a certificate or two; anything much larger is not one. */
const MAX_CA_BYTES = 64 * 1024;

/** The fetch the agent calls the API with: Node's own, or one that trusts only caPem. */
export function apiFetch(caPem: string | null): typeof fetch {
  if (caPem === null) return fetch;
  return fetchThrough(new Agent({ connect: { ca: caPem } }));
}

/** A fetch whose connections are the dispatcher's (its CA, its pinned address). */
export function fetchThrough(dispatcher: Agent): typeof fetch {
  return ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}

/** The certificates of a PEM text, or an error naming where it came from. */
function certificatesOf(pem: string, source: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${source} holds no PEM certificate`);
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw new Error(`${source} holds a certificate that does not parse: ${(err as Error).message}`);
  }
}

/** "ab:CD:..." or "abcd..." (64 hex digits, as `openssl x509 -fingerprint -sha256` prints them): the pin, lowercase, or null. */
export function parsePin(text: string): string | null {
  const hex = text.replace(/^sha256:/i, "").replace(/:/g, "").toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}

/** SHA-256 of a certificate's DER, lowercase hex: what `openssl x509 -noout -fingerprint -sha256` shows. */
export const fingerprintOf = (cert: X509Certificate): string => createHash("sha256").update(cert.raw).digest("hex");

/** The one certificate of pem if its fingerprint is pin; otherwise an error saying what was found. */
function pinned(pem: string, pin: string, source: string): string {
  const certs = certificatesOf(pem, source);
  if (certs.length !== 1) throw new Error(`${source} holds ${certs.length} certificates; --api-ca-sha256 pins exactly one`);
  const found = fingerprintOf(certs[0]!);
  if (found !== pin) throw new Error(`${source} does not match --api-ca-sha256: its SHA-256 is ${found}, expected ${pin}`);
  return certs[0]!.toString();
}

/**
 * GET {api}/v1/system/ca without checking the server's certificate (the
 * pin is the check), within a deadline and a size bound; the certificate
 * it holds if it is the pinned one.
 */
export async function fetchPinnedCa(api: string, pin: string): Promise<string> {
  const url = `${api}/v1/system/ca`;
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    const res = await undiciFetch(url, { dispatcher, redirect: "error", signal: AbortSignal.timeout(PIN_FETCH_TIMEOUT_MS) });
    if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}`);
    // Read at most MAX_CA_BYTES: until the pin is checked, this server is anyone.
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of res.body ?? []) {
      size += chunk.length;
      if (size > MAX_CA_BYTES) throw new Error(`GET ${url} answered more than ${MAX_CA_BYTES} bytes, more than a CA certificate`);
      chunks.push(chunk);
    }
    return pinned(Buffer.concat(chunks).toString("utf8"), pin, `the CA served at ${url}`);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`failed to fetch the API's CA for --api-ca-sha256: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  } finally {
    await dispatcher.close();
  }
}

/** The pinned CA from the first replica that serves it (one down must not stop a first start); every failure when none does. */
async function fetchPinnedCaFromAny(apis: readonly string[], pin: string): Promise<{ pem: string; api: string }> {
  const failures: string[] = [];
  for (const api of apis) {
    try {
      return { pem: await fetchPinnedCa(api, pin), api };
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  throw new Error(failures.length === 1 ? failures[0] : `${failures.join("; ")} (tried ${apis.join(", ")})`);
}

export interface TrustConfig {
  api: string;
  /** Every API replica (--api A,B): the pinned CA is fetched from the first that serves it. */
  apis?: readonly string[];
  stateDir: string;
  apiCa?: string | undefined;
  apiCaSha256?: string | undefined;
}

/**
 * The CA the agent trusts for the API, as PEM, or null for the system's
 * roots. Under a pin, the copy in the state directory is used while it
 * matches the pin; otherwise it is fetched and checked, then saved.
 */
export async function resolveApiCa(cfg: TrustConfig): Promise<{ pem: string | null; source: string }> {
  if (cfg.apiCa) {
    let pem: string;
    try {
      pem = readFileSync(cfg.apiCa, "utf8");
    } catch (err) {
      throw new Error(`failed to read --api-ca ${cfg.apiCa}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    certificatesOf(pem, `--api-ca ${cfg.apiCa}`);
    return { pem, source: cfg.apiCa };
  }
  if (cfg.apiCaSha256) {
    const pin = parsePin(cfg.apiCaSha256);
    if (pin === null) throw new Error("--api-ca-sha256 must be 64 hex digits (colons allowed)");
    const saved = join(cfg.stateDir, PINNED_CA_FILE);
    if (existsSync(saved)) {
      try {
        return { pem: pinned(readFileSync(saved, "utf8"), pin, saved), source: saved };
      } catch {
        // Another pin than the saved copy's: fetch what the pin names.
      }
    }
    const { pem, api } = await fetchPinnedCaFromAny(cfg.apis?.length ? cfg.apis : [cfg.api], pin);
    ensureStateDir(cfg.stateDir);
    writeFileSync(`${saved}.tmp`, pem, { mode: 0o644 });
    renameSync(`${saved}.tmp`, saved);
    return { pem, source: `${api}/v1/system/ca, pinned by --api-ca-sha256, saved as ${saved}` };
  }
  return { pem: null, source: "the system's roots" };
}

/** TLS verification failures by their OpenSSL/Node codes: not "the API is down" but "the API is not the one you trust". */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** A transport failure's cause in words, saying what to do when it is the API's certificate. */
export function transportFailure(cause: { code?: string; message?: string } | undefined, fallback: string): string {
  const code = cause?.code;
  if (code !== undefined && UNTRUSTED.has(code)) {
    return `the API's certificate is not trusted (${code}: ${cause?.message ?? ""}); give the CA that issued it with --api-ca FILE or --api-ca-sha256`;
  }
  return code ?? cause?.message ?? fallback;
}
