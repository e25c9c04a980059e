// The CPU-heavy half of an X.509-SVID issuance, behind one interface: verify
// the CSR (key import, signature, requested SAN) and sign the leaf. It runs
// in the request's thread (InThreadLeafIssuer) or in a pool of worker threads
// (signing-pool.ts); the request path, authorisation and the database stay
// on the main thread either way.
import { verifyCsr } from "./csr.ts";
import { issueLeaf, type IssuedLeaf, type LeafTemplate } from "./x509.ts";

export interface LeafJob {
  /** Which CA signs: the pool sends each worker a slot's template once, by this key. */
  slotKey: string;
  template: LeafTemplate;
  csrPem: string;
  spiffeId: string;
  now: Date;
  ttlMs?: number;
}

export interface LeafIssuer {
  /** CaInputError for a CSR it refuses; the leaf otherwise. */
  issue(job: LeafJob): Promise<IssuedLeaf>;
  /** The signer of slotKey left the cache: drop any copy of its key. */
  forget?(slotKey: string): void;
  close(): Promise<void>;
}

/** Verify and sign as one pure step; what a worker thread runs for each job. */
export function verifyAndSign(template: LeafTemplate, job: Omit<LeafJob, "slotKey" | "template">): IssuedLeaf {
  const { spkiDer } = verifyCsr(job.csrPem, job.spiffeId);
  return issueLeaf(template, { spiffeId: job.spiffeId, spkiDer, now: job.now, ...(job.ttlMs !== undefined && { ttlMs: job.ttlMs }) });
}

export class InThreadLeafIssuer implements LeafIssuer {
  issue(job: LeafJob): Promise<IssuedLeaf> {
    try {
      return Promise.resolve(verifyAndSign(job.template, job));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
