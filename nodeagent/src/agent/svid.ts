// SPDX-License-Identifier: Apache-2.0
/**
 * Workload X.509-SVIDs on disk: for each workload on the node, a key the
 * agent generates (it never leaves the node), a certificate the API issues
 * for it under the node's credential, and the tenant's trust bundle:
 *
 *   <stateDir>/svids/<tenant>/<workload>/{key.pem 0600, cert.pem, bundle.pem}
 *
 * An SVID is renewed at half its lifetime (SPIRE's rule): a timer fires at
 * the earliest half-life, so an API outage shorter than half a lifetime
 * never lets a certificate expire. Directories of workloads that left the
 * node are removed. Which workloads exist comes from outside (the API's
 * list of the node's workloads), so this class only reconciles a list.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
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
}

export interface SvidSyncResult {
  issued: string[];
  kept: string[];
  removed: string[];
  errors: string[];
}

export interface SvidManagerOptions {
  stateDir: string;
  client: Pick<ApiClient, "issueX509Svid" | "bundlePem">;
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
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SvidSyncResult> | null = null;
  private closed = false;
  lastErrors: string[] = [];

  constructor(private readonly options: SvidManagerOptions) {
    this.root = join(options.stateDir, "svids");
    this.now = options.now ?? Date.now;
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
  }

  private async reconcile(): Promise<SvidSyncResult> {
    const result: SvidSyncResult = { issued: [], kept: [], removed: [], errors: [] };
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const wanted = new Set<string>();
    const bundles = new Map<string, Promise<string>>();
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
          bundle = this.options.client.bundlePem(ref.tenant);
          bundles.set(ref.tenant, bundle);
        }
        nextDue = Math.min(nextDue, await this.issue(ref, await bundle));
        result.issued.push(label);
      } catch (err) {
        result.errors.push(`failed to renew SVID of ${label}: ${(err as Error).message}`);
        nextDue = Math.min(nextDue, this.now() + RETRY_MS);
      }
    }
    for (const tenant of existsSync(this.root) ? readdirSync(this.root) : []) {
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
    return result;
  }

  /** When the SVID on disk is due for renewal, or null when there is none usable for this ref. */
  private dueAt(ref: WorkloadSvidRef): number | null {
    const dir = this.dirOf(ref);
    const certPath = join(dir, "cert.pem");
    if (!existsSync(certPath) || !existsSync(join(dir, "key.pem")) || !existsSync(join(dir, "bundle.pem"))) return null;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(readFileSync(certPath));
    } catch {
      return null; // unreadable: issue a new one
    }
    // The identity of a workload can change (PUT with another identity): its SVID must follow.
    const meta = readMeta(dir);
    if (meta?.identity !== ref.identity) return null;
    if (ref.spiffeId && !cert.subjectAltName?.includes(`URI:${ref.spiffeId}`)) return null;
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    return from + (to - from) / 2;
  }

  /** Issues and writes one SVID; answers its half-life. */
  private async issue(ref: WorkloadSvidRef, bundle: string): Promise<number> {
    const key = newWorkloadKey();
    const csr = buildCsr(key.privateKey, { commonName: ref.workload, ...(ref.spiffeId ? { spiffeId: ref.spiffeId } : {}) });
    const svid = await this.options.client.issueX509Svid(ref.tenant, ref.identity, csr);
    const cert = new X509Certificate(svid.certificate);
    if (!cert.checkPrivateKey(keyFromPem(key.keyPem).privateKey)) throw new Error("the issued certificate is not for the key the agent sent");
    if (ref.spiffeId && !cert.subjectAltName?.includes(`URI:${ref.spiffeId}`)) throw new Error(`the issued certificate is not for ${ref.spiffeId}`);
    const dir = this.dirOf(ref);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const chain = svid.chain.map((c) => (c.endsWith("\n") ? c : `${c}\n`)).join("");
    // Key first: a reader between the two renames sees a new key with the
    // old certificate for an instant, never a certificate without its key file.
    writeSecret(join(dir, "key.pem"), key.keyPem);
    writeAtomic(join(dir, "cert.pem"), `${svid.certificate.endsWith("\n") ? svid.certificate : `${svid.certificate}\n`}${chain}`, 0o644);
    writeAtomic(join(dir, "bundle.pem"), bundle, 0o644);
    writeAtomic(join(dir, "svid.json"), `${JSON.stringify({ tenant: ref.tenant, identity: ref.identity, workload: ref.workload, serial: svid.serial, expiresAt: svid.expiresAt })}\n`, 0o644);
    const from = Date.parse(cert.validFrom);
    return from + (Date.parse(cert.validTo) - from) / 2;
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

function readMeta(dir: string): { identity?: string } | null {
  try {
    return JSON.parse(readFileSync(join(dir, "svid.json"), "utf8")) as { identity?: string };
  } catch {
    return null;
  }
}
