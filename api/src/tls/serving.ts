// The API's TLS: the serving certificate and key the server presents, and
// keeping them current without a restart (server.setSecureContext): a
// self-issued certificate is renewed with a third of its life left, and
// operator-provided PEM files are re-read when they change.
import { createSecureContext } from "node:tls";
import { readFileSync, statSync } from "node:fs";
import type { FastifyBaseLogger } from "fastify";
import type { TlsConfig } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { KekChoice } from "../ca/kek-source.ts";
import { loadOperatorCa, type OperatorCa } from "./operator-ca.ts";
import { issueServingCertificate } from "./serving-cert.ts";

/** A self-issued certificate is renewed when this fraction of its life has passed (SPIRE renews SVIDs at half; a server certificate has more to lose from an outage of the CA: none here, but clients cache). */
export const RENEW_AT_FRACTION = 2 / 3;
/** How often PEM files given by the operator are checked for a change (certbot and cert-manager replace them in place). */
export const FILE_CHECK_MS = 30_000;
/** After a failed renewal, try again this soon (or sooner, if the certificate would expire first). */
const RETRY_MS = 60_000;
/** setTimeout's ceiling (about 24.8 days); a longer wait is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface KeyPair {
  cert: string;
  key: string;
}

/** When a certificate issued at issuedAt, valid until notAfter, is due for renewal: ms from now, at least 0. */
export function renewalDelayMs(issuedAt: Date, notAfter: Date, now: Date): number {
  const due = issuedAt.getTime() + (notAfter.getTime() - issuedAt.getTime()) * RENEW_AT_FRACTION;
  return Math.max(0, due - now.getTime());
}

/** A secure context from PEM text, or an error saying which of the two is wrong (a mismatched pair, a bad PEM). */
function checked(pair: KeyPair, what: string): KeyPair {
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`);
  }
  return pair;
}

function readPemFiles(tls: Extract<TlsConfig, { source: "files" }>): KeyPair {
  const read = (variable: string, path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      throw new Error(`cannot read ${variable} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return checked({ cert: read("WEFT_TLS_CERT", tls.certFile), key: read("WEFT_TLS_KEY", tls.keyFile) }, "WEFT_TLS_CERT and WEFT_TLS_KEY do not make a TLS key pair");
}

const fingerprintOf = (paths: readonly string[]): string =>
  paths
    .map((p) => {
      try {
        const s = statSync(p);
        return `${s.mtimeMs}/${s.size}/${s.ino}`;
      } catch {
        return "missing";
      }
    })
    .join("|");

interface Server {
  setSecureContext(options: KeyPair): void;
}

export interface ServingTlsDeps {
  db: Db;
  kek: KekChoice;
  now?: () => Date;
  /** How often operator-provided files are checked (default FILE_CHECK_MS). */
  fileCheckMs?: number | undefined;
}

/**
 * The serving key pair and how it is kept current. open() prepares the first
 * pair (the server is built with it); start() keeps the server's context
 * current until stop().
 */
export class ServingTls {
  #current: KeyPair;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Certificates this process has served: 1 at start, +1 per renewal or reload (tests and logs). */
  generation = 1;

  private constructor(
    private readonly tls: TlsConfig,
    first: KeyPair,
    private readonly deps: ServingTlsDeps,
    /** The operator CA, when Weft issues its own certificate; null with operator-provided files. */
    readonly operatorCa: OperatorCa | null,
    private notAfter: Date | null,
    private issuedAt: Date | null,
    /** Operator CAs sealed under other KEKs (replicas that disagree on the KEK serve certificates of other roots): start() logs it. */
    private readonly otherKeks = 0,
  ) {
    this.#current = first;
  }

  static async open(tls: TlsConfig, deps: ServingTlsDeps): Promise<ServingTls> {
    if (tls.source === "files") return new ServingTls(tls, readPemFiles(tls), deps, null, null, null);
    const { ca, otherKeks } = await loadOperatorCa(deps.db, deps.kek.kek, { ephemeral: deps.kek.ephemeral });
    const now = (deps.now ?? (() => new Date()))();
    const issued = issueServingCertificate(ca, tls.sans, now, tls.certTtlSeconds * 1000);
    return new ServingTls(tls, { cert: issued.certPem, key: issued.keyPem }, deps, ca, issued.notAfter, issued.issuedAt, otherKeks);
  }

  /** The key pair to build the server with. */
  get keyPair(): KeyPair {
    return this.#current;
  }

  /** Keeps server's certificate current; every change and failure is logged. */
  start(server: Server, log: FastifyBaseLogger): void {
    if (this.otherKeks > 0) log.warn("operator CAs sealed under another KEK exist: give every replica the same WEFT_KEK, or their serving certificates chain to other roots");
    if (this.tls.source === "files") {
      const paths = [this.tls.certFile, this.tls.keyFile];
      let seen = fingerprintOf(paths);
      const check = () => {
        const now = fingerprintOf(paths);
        if (now === seen || this.#stopped) return;
        seen = now;
        try {
          this.#install(server, readPemFiles(this.tls as Extract<TlsConfig, { source: "files" }>));
          log.info({ generation: this.generation }, "TLS: reloaded WEFT_TLS_CERT and WEFT_TLS_KEY");
        } catch (err) {
          // A half-written pair (the cert replaced, the key not yet) is common: the old pair stays until both fit.
          log.warn(`TLS: keeping the current certificate: ${(err as Error).message}`);
        }
      };
      this.#timer = setInterval(check, this.deps.fileCheckMs ?? FILE_CHECK_MS);
      this.#timer.unref();
      return;
    }
    this.#schedule(server, log);
  }

  #schedule(server: Server, log: FastifyBaseLogger, delayMs?: number): void {
    if (this.#stopped) return;
    const now = (this.deps.now ?? (() => new Date()))();
    const wait = delayMs ?? renewalDelayMs(this.issuedAt!, this.notAfter!, now);
    this.#timer = setTimeout(() => {
      if (wait > MAX_TIMER_MS) return this.#schedule(server, log);
      this.#renew(server, log);
    }, Math.min(wait, MAX_TIMER_MS));
    this.#timer.unref();
  }

  #renew(server: Server, log: FastifyBaseLogger): void {
    if (this.#stopped || this.tls.source !== "self") return;
    const now = (this.deps.now ?? (() => new Date()))();
    try {
      const issued = issueServingCertificate(this.operatorCa!, this.tls.sans, now, this.tls.certTtlSeconds * 1000);
      this.#install(server, checked({ cert: issued.certPem, key: issued.keyPem }, "the renewed serving certificate"));
      this.issuedAt = issued.issuedAt;
      this.notAfter = issued.notAfter;
      log.info({ serial: issued.serialHex, notAfter: issued.notAfter.toISOString(), generation: this.generation }, "TLS: serving certificate renewed");
      this.#schedule(server, log);
    } catch (err) {
      const left = this.notAfter!.getTime() - now.getTime();
      log.error(`TLS: failed to renew the serving certificate (${Math.round(left / 1000)} s left): ${(err as Error).message}`);
      this.#schedule(server, log, Math.max(1000, Math.min(RETRY_MS, left / 10)));
    }
  }

  #install(server: Server, pair: KeyPair): void {
    server.setSecureContext(pair);
    this.#current = pair;
    this.generation++;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#timer);
  }
}
