// SPDX-License-Identifier: Apache-2.0
/**
 * The node's L7 proxy's X.509-SVIDs, one per tenant whose backends on other
 * nodes the proxy reaches through the transport (issue 21):
 * spiffe://<td>/weft/node/<node>/proxy, issued to this node's credential
 * only (POST /v1/tenants/{tenant}/node-proxy-svids). The key never leaves
 * the node: it goes to the transport's `configure` (proxySvids), as the
 * workloads' keys do. Renewed at half its life, as workload SVIDs are
 * (svid.ts); a failed issuance is tried again RETRY_MS later.
 */
import { X509Certificate } from "node:crypto";
import type { ApiClient } from "./client.ts";
import { buildCsr, newWorkloadKey } from "./csr.ts";
import type { Log } from "./agent.ts";

export const RETRY_MS = 5_000;
/** Never sooner than this after a run: an SVID already past half its life (a CA near its end) is not asked for in a loop. */
export const MIN_RUN_GAP_MS = 1_000;

export interface HeldProxySvid {
  tenant: string;
  spiffeId: string;
  trustDomain: string;
  keyPem: string;
  /** The leaf first, then its issuers. */
  chainPem: string;
  notBefore: number;
  notAfter: number;
}

const pemLine = (pem: string) => (pem.endsWith("\n") ? pem : `${pem}\n`);

export class ProxySvids {
  private readonly held = new Map<string, HeldProxySvid>();
  private wanted = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private syncing: Promise<void> | null = null;
  private again = false;
  private closed = false;
  /** The last failure, for the status report; null when every wanted SVID is held. */
  error: string | null = null;

  constructor(
    private readonly o: {
      client: Pick<ApiClient, "issueNodeProxySvid">;
      /** After an SVID was issued, renewed or dropped. */
      onChange: () => void;
      log: Log;
      now?: () => number;
      /** Default RETRY_MS. */
      retryMs?: number;
    },
  ) {}

  /** Holds SVIDs for exactly these tenants from now on: issues the missing ones, drops the others. */
  want(tenants: Iterable<string>): void {
    const next = new Set(tenants);
    if (next.size === this.wanted.size && [...next].every((t) => this.wanted.has(t))) return;
    this.wanted = next;
    this.sync();
  }

  /** The SVIDs held now, one per tenant. */
  svids(): readonly HeldProxySvid[] {
    return [...this.held.values()];
  }

  stop(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** One run at a time; a request meanwhile runs once more after it. */
  private sync(): void {
    if (this.closed) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = this.run().finally(() => {
      this.syncing = null;
      if (this.again) {
        this.again = false;
        this.sync();
      }
    });
  }

  private async run(): Promise<void> {
    let changed = false;
    for (const tenant of [...this.held.keys()]) {
      if (this.wanted.has(tenant)) continue;
      this.held.delete(tenant);
      changed = true;
    }
    const errors: string[] = [];
    let next = Infinity;
    for (const tenant of this.wanted) {
      const held = this.held.get(tenant);
      const due = held ? held.notBefore + (held.notAfter - held.notBefore) / 2 : 0;
      if (due > this.now()) {
        next = Math.min(next, due);
        continue;
      }
      try {
        const svid = await this.issue(tenant);
        this.held.set(tenant, svid);
        changed = true;
        next = Math.min(next, svid.notBefore + (svid.notAfter - svid.notBefore) / 2);
      } catch (err) {
        errors.push(`failed to obtain the node proxy's SVID in ${tenant}: ${(err as Error).message}`);
        next = Math.min(next, this.now() + (this.o.retryMs ?? RETRY_MS));
      }
    }
    this.error = errors.length === 0 ? null : errors.join("; ");
    if (this.error) this.o.log("error", this.error);
    if (changed && !this.closed) this.o.onChange();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.closed && Number.isFinite(next)) {
      this.timer = setTimeout(() => this.sync(), Math.min(Math.max(MIN_RUN_GAP_MS, next - this.now()), 2 ** 31 - 1));
      this.timer.unref();
    }
  }

  private async issue(tenant: string): Promise<HeldProxySvid> {
    const key = newWorkloadKey();
    const svid = await this.o.client.issueNodeProxySvid(tenant, buildCsr(key.privateKey, { commonName: "weft-node-proxy" }));
    const leaf = new X509Certificate(svid.certificate);
    if (!leaf.checkPrivateKey(key.privateKey)) throw new Error("the issued certificate is not for the key the agent sent");
    if (leaf.subjectAltName !== `URI:${svid.spiffeId}`) throw new Error(`the issued certificate is not for ${svid.spiffeId} alone`);
    return {
      tenant,
      spiffeId: svid.spiffeId,
      trustDomain: new URL(svid.spiffeId).host,
      keyPem: key.keyPem,
      chainPem: [svid.certificate, ...svid.chain].map(pemLine).join(""),
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
    };
  }
}
