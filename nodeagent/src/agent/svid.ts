// SPDX-License-Identifier: Apache-2.0
/**
 * Workload X.509-SVIDs: for each workload on the node, a key the agent
 * generates (it leaves the agent only in the Workload API's answer to that
 * workload, or in the files below when asked for), a certificate the API
 * issues for it under the node's credential, and the tenant's trust bundle.
 * Held in memory for the Workload API (src/workload-api/), which is told of
 * every change (subscribe); with `files` (the agent's --svid-files) also
 * written as
 *
 *   <stateDir>/svids/<tenant>/<workload>/{key.pem 0600, cert.pem, bundle.pem}
 *
 * An SVID is renewed at half its lifetime (SPIRE's rule): a timer fires at
 * the earliest half-life, so an API outage shorter than half a lifetime
 * never lets a certificate expire. Bundles are read again every
 * `bundleRefreshMs` (a CA prepared or retired changes them). Which workloads
 * exist comes from outside (the API's list of the node's workloads), so this
 * class only reconciles a list.
 */
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ApiClient } from "./client.ts";
import { buildCsr, keyFromPem, newWorkloadKey } from "./csr.ts";
import { writeAtomic, writeSecret } from "./state.ts";

export interface WorkloadSvidRef {
  tenant: string;
  identity: string;
  workload: string;
  /** When known, requested as the URI SAN and checked against the issued certificate. */
  spiffeId?: string;
  /** The workload's addresses and API-named interface: how the Workload API recognises it (src/workload-api/attestor.ts). */
  addresses?: readonly string[];
  interface?: string;
}

/** An SVID the agent holds for a workload. */
export interface HeldSvid {
  ref: WorkloadSvidRef;
  spiffeId: string;
  trustDomain: string;
  /** PKCS#8 DER, unencrypted. */
  keyDer: Buffer;
  /** DER certificates, the leaf first. */
  chainDer: Buffer[];
  serial: string;
  notBefore: number;
  notAfter: number;
}

/** A tenant's trust bundle as the Workload API answers it. */
export interface HeldBundle {
  tenant: string;
  /** DER CA certificates (the `x509-svid` keys' x5c). */
  x509: Buffer[];
  /** The `jwt-svid` keys, as JWKs. */
  jwtKeys: Record<string, unknown>[];
  sequence: number;
  /** The trust domains the tenant federates with (issue #16): trust domain -> its authorities. */
  federated: Map<string, { x509: Buffer[]; jwtKeys: Record<string, unknown>[] }>;
  /** Changes with the bundle's sequence or any federated bundle: streams compare it. */
  version: string;
}

export interface SvidSyncResult {
  issued: string[];
  kept: string[];
  removed: string[];
  errors: string[];
}

export interface SvidManagerOptions {
  stateDir: string;
  /** federatedBundles: without it (or when the API offers none), no federated bundles. */
  client: Pick<ApiClient, "issueX509Svid" | "bundle"> & Partial<Pick<ApiClient, "federatedBundles">>;
  /** Also write the files above (default true; the agent passes --svid-files, default off). */
  files?: boolean;
  /** Bundles are read again this often (ms; default 5,000, SPIRE's agent sync). 0: only when an SVID is issued. */
  bundleRefreshMs?: number;
  now?: () => number;
  /** Errors of a timer-driven rotation; the next sync reports them too. */
  onError?: (message: string) => void;
}

/** Names become path segments: refuse anything that could climb out of the directory. */
const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
/** Retry a failed rotation this soon, not at the next half-life. */
const RETRY_MS = 10_000;

export class SvidManager {
  private readonly root: string;
  private readonly now: () => number;
  private desired: WorkloadSvidRef[] = [];
  private readonly held = new Map<string, HeldSvid>();
  private readonly bundleOf = new Map<string, HeldBundle>();
  private readonly listeners = new Set<() => void>();
  private bundleTimer: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SvidSyncResult> | null = null;
  private closed = false;
  lastErrors: string[] = [];

  constructor(private readonly options: SvidManagerOptions) {
    this.root = join(options.stateDir, "svids");
    this.now = options.now ?? Date.now;
    const every = options.bundleRefreshMs ?? 5_000;
    if (every > 0) {
      this.bundleTimer = setInterval(() => void this.refreshBundles().catch((err: Error) => this.options.onError?.(`failed to refresh bundles: ${err.message}`)), every);
      this.bundleTimer.unref();
    }
  }

  /** The workloads as last given to sync(). */
  workloads(): readonly WorkloadSvidRef[] {
    return this.desired;
  }

  /** The SVID held for "tenant/workload", if any. */
  svidOf(key: string): HeldSvid | undefined {
    return this.held.get(key);
  }

  /** A tenant's bundle as last read, if any. */
  bundle(tenant: string): HeldBundle | undefined {
    return this.bundleOf.get(tenant);
  }

  /** Called after every change of an SVID, a bundle or the list of workloads; answers the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.options.onError?.(`an SVID listener failed: ${(err as Error).message}`);
      }
    }
  }

  /** Reads every held tenant's bundle; a changed one (its spiffe_sequence) is taken, written and announced. */
  async refreshBundles(): Promise<void> {
    let changed = false;
    for (const tenant of new Set(this.desired.map((r) => r.tenant))) {
      const before = this.bundleOf.get(tenant)?.version;
      const b = await this.fetchBundle(tenant);
      if (b.version === before) continue;
      changed = true;
      if (this.files()) {
        for (const ref of this.desired) {
          if (ref.tenant === tenant && this.held.has(`${ref.tenant}/${ref.workload}`) && SAFE_SEGMENT.test(ref.tenant) && SAFE_SEGMENT.test(ref.workload)) {
            writeAtomic(join(this.dirOf(ref), "bundle.pem"), bundlePem(b), 0o644);
          }
        }
      }
    }
    if (changed) this.notify();
  }

  private files(): boolean {
    return this.options.files ?? true;
  }

  private async fetchBundle(tenant: string): Promise<HeldBundle> {
    const answer = await this.options.client.bundle(tenant);
    const x509: Buffer[] = [];
    const jwtKeys: Record<string, unknown>[] = [];
    for (const k of answer.keys as Record<string, unknown>[]) {
      if (k.use === "x509-svid" && Array.isArray(k.x5c) && typeof k.x5c[0] === "string") x509.push(Buffer.from(k.x5c[0], "base64"));
      else if (k.use === "jwt-svid" && typeof k.kid === "string") jwtKeys.push(k);
    }
    if (x509.length === 0) throw new Error(`the bundle of ${tenant} holds no X.509 authority`);
    const federated: HeldBundle["federated"] = new Map();
    const fed = this.options.client.federatedBundles ? (await this.options.client.federatedBundles(tenant)).bundles : [];
    for (const f of fed) {
      federated.set(f.trustDomain, {
        x509: f.x509Authorities.map((b64) => Buffer.from(b64, "base64")),
        jwtKeys: f.jwtAuthorities.map((a) => ({
          ...createPublicKey({ key: Buffer.from(a.publicKey, "base64"), format: "der", type: "spki" }).export({ format: "jwk" }),
          use: "jwt-svid",
          kid: a.keyId,
        })),
      });
    }
    const digest = createHash("sha256").update(JSON.stringify(fed)).digest("hex").slice(0, 16);
    const held = { tenant, x509, jwtKeys, sequence: answer.spiffe_sequence, federated, version: `${answer.spiffe_sequence}/${digest}` };
    this.bundleOf.set(tenant, held);
    return held;
  }

  /** Issues what is missing or past half-life, removes what left; serialised, so a timer and a caller never race. */
  async sync(workloads?: readonly WorkloadSvidRef[]): Promise<SvidSyncResult> {
    if (workloads) this.desired = [...workloads];
    while (this.running) await this.running.catch(() => undefined);
    this.running = this.reconcile();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  /** The directory of a workload's SVID files. */
  dirOf(ref: Pick<WorkloadSvidRef, "tenant" | "workload">): string {
    return join(this.root, ref.tenant, ref.workload);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.bundleTimer) clearInterval(this.bundleTimer);
    this.bundleTimer = null;
    this.listeners.clear();
  }

  private async reconcile(): Promise<SvidSyncResult> {
    const result: SvidSyncResult = { issued: [], kept: [], removed: [], errors: [] };
    if (this.files()) mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const wanted = new Set<string>();
    const bundles = new Map<string, Promise<HeldBundle>>();
    let nextDue = Number.POSITIVE_INFINITY;
    for (const ref of this.desired) {
      const label = `${ref.tenant}/${ref.workload}`;
      if (!SAFE_SEGMENT.test(ref.tenant) || !SAFE_SEGMENT.test(ref.workload)) {
        result.errors.push(`failed to write SVID of ${JSON.stringify(label)}: tenant and workload must be simple names`);
        continue;
      }
      wanted.add(label);
      try {
        const due = this.dueAt(ref);
        if (due !== null && due > this.now()) {
          result.kept.push(label);
          nextDue = Math.min(nextDue, due);
          continue;
        }
        let bundle = bundles.get(ref.tenant);
        if (!bundle) {
          bundle = this.fetchBundle(ref.tenant);
          bundles.set(ref.tenant, bundle);
        }
        nextDue = Math.min(nextDue, await this.issue(ref, await bundle));
        result.issued.push(label);
      } catch (err) {
        result.errors.push(`failed to renew SVID of ${label}: ${(err as Error).message}`);
        nextDue = Math.min(nextDue, this.now() + RETRY_MS);
      }
    }
    for (const key of [...this.held.keys()]) {
      if (wanted.has(key)) continue;
      this.held.delete(key);
      if (!this.files()) result.removed.push(key);
    }
    for (const tenant of [...this.bundleOf.keys()]) if (!this.desired.some((r) => r.tenant === tenant)) this.bundleOf.delete(tenant);
    for (const tenant of this.files() && existsSync(this.root) ? readdirSync(this.root) : []) {
      const tdir = join(this.root, tenant);
      if (!statSync(tdir).isDirectory()) continue;
      for (const workload of readdirSync(tdir)) {
        if (wanted.has(`${tenant}/${workload}`)) continue;
        rmSync(join(tdir, workload), { recursive: true, force: true });
        result.removed.push(`${tenant}/${workload}`);
      }
      if (readdirSync(tdir).length === 0) rmSync(tdir, { recursive: true, force: true });
    }
    this.lastErrors = result.errors;
    this.schedule(nextDue);
    // Streams learn of new SVIDs and of workloads that came or left (the list itself may have changed).
    this.notify();
    return result;
  }

  /** When the held SVID is due for renewal, or null when there is none usable for this ref. */
  private dueAt(ref: WorkloadSvidRef): number | null {
    const held = this.held.get(`${ref.tenant}/${ref.workload}`);
    // The identity of a workload can change (PUT with another identity): its SVID must follow.
    if (!held || held.ref.identity !== ref.identity) return null;
    if (ref.spiffeId && held.spiffeId !== ref.spiffeId) return null;
    if (this.files() && !existsSync(join(this.dirOf(ref), "cert.pem"))) return null;
    return held.notBefore + (held.notAfter - held.notBefore) / 2;
  }

  /** Issues (and writes, with files) one SVID; answers its half-life. */
  private async issue(ref: WorkloadSvidRef, bundle: HeldBundle): Promise<number> {
    const key = newWorkloadKey();
    const csr = buildCsr(key.privateKey, { commonName: ref.workload, ...(ref.spiffeId ? { spiffeId: ref.spiffeId } : {}) });
    const svid = await this.options.client.issueX509Svid(ref.tenant, ref.identity, csr);
    const cert = new X509Certificate(svid.certificate);
    if (!cert.checkPrivateKey(keyFromPem(key.keyPem).privateKey)) throw new Error("the issued certificate is not for the key the agent sent");
    if (ref.spiffeId && !cert.subjectAltName?.includes(`URI:${ref.spiffeId}`)) throw new Error(`the issued certificate is not for ${ref.spiffeId}`);
    const uris = (cert.subjectAltName ?? "").split(", ").filter((n) => n.startsWith("URI:spiffe://"));
    if (uris.length !== 1) throw new Error("the issued certificate does not carry exactly one SPIFFE ID");
    const spiffeId = uris[0]!.slice(4);
    const notBefore = Date.parse(cert.validFrom);
    const notAfter = Date.parse(cert.validTo);
    const chain = svid.chain.map((c) => (c.endsWith("\n") ? c : `${c}\n`)).join("");
    const leafPem = svid.certificate.endsWith("\n") ? svid.certificate : `${svid.certificate}\n`;
    this.held.set(`${ref.tenant}/${ref.workload}`, {
      ref: { ...ref },
      spiffeId,
      trustDomain: new URL(spiffeId).host,
      keyDer: createPrivateKey(key.keyPem).export({ type: "pkcs8", format: "der" }),
      chainDer: [cert.raw, ...svid.chain.map((c) => new X509Certificate(c).raw)],
      serial: svid.serial,
      notBefore,
      notAfter,
    });
    if (this.files()) {
      const dir = this.dirOf(ref);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Key first: a reader between the two renames sees a new key with the
      // old certificate for an instant, never a certificate without its key file.
      writeSecret(join(dir, "key.pem"), key.keyPem);
      writeAtomic(join(dir, "cert.pem"), `${leafPem}${chain}`, 0o644);
      writeAtomic(join(dir, "bundle.pem"), bundlePem(bundle), 0o644);
      writeAtomic(join(dir, "svid.json"), `${JSON.stringify({ tenant: ref.tenant, identity: ref.identity, workload: ref.workload, serial: svid.serial, expiresAt: svid.expiresAt })}\n`, 0o644);
    }
    return notBefore + (notAfter - notBefore) / 2;
  }

  private schedule(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.closed || !Number.isFinite(at)) return;
    // setTimeout holds at most 2^31-1 ms; a later due time is re-armed on the way.
    const delay = Math.min(Math.max(0, at - this.now()), 2 ** 31 - 1);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.sync().then(
        (r) => r.errors.forEach((e) => this.options.onError?.(e)),
        (err: Error) => this.options.onError?.(`failed to rotate SVIDs: ${err.message}`),
      );
    }, delay);
    // Rotation must not keep a stopping agent alive.
    this.timer.unref();
  }
}

/** A bundle's CA certificates as PEM. */
export function bundlePem(bundle: HeldBundle): string {
  return bundle.x509.map((der) => new X509Certificate(der).toString()).join("");
}
