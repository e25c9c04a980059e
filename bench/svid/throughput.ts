// A quick throughput probe for bench/svid: certificate building alone
// (template + sign) against Node's raw P-256 sign and verify on the same
// machine, in one run. Run: npx tsx bench/svid/throughput.ts
import { createPublicKey, sign, verify } from "node:crypto";
import { ecJwk } from "@weft/pki/x509";
import { importSpki } from "../../api/src/ca/csr.ts";
import { generateP256 } from "../../api/src/ca/keys.ts";
import { createCaCertificate, createLeafTemplate, issueLeaf } from "../../api/src/ca/x509.ts";

export function wallRate(n: number, fn: () => void): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return n / ((performance.now() - t0) / 1000);
}

/**
 * Operations per second of this process's CPU time (user + system), not of
 * the wall clock: on a machine shared with other work the wall-clock rate
 * falls with every competing process, the CPU-time rate much less.
 */
export function cpuRate(n: number, fn: () => void): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const c = process.cpuUsage(c0);
  return n / ((c.user + c.system) / 1e6);
}

export function measureLeafThroughput(
  n = 5000,
  clock: "wall" | "cpu" = "wall",
): {
  leavesPerSec: number;
  signPerSec: number;
  verifyPerSec: number;
  rawCertLimit: number;
  freshKeyVerifyPerSec: number;
  jwkImportPerSec: number;
  derImportPerSec: number;
} {
  const rate = clock === "cpu" ? cpuRate : wallRate;
  const ca = generateP256();
  const now = new Date();
  const cert = createCaCertificate({ trustDomain: "bench.test", ...ca, now, ttlMs: 86_400_000 });
  const t = createLeafTemplate({ certDer: cert.der, privateKey: ca.privateKey, notBefore: cert.notBefore, notAfter: cert.notAfter });
  const workload = generateP256();
  const msg = Buffer.alloc(400, 7);
  const sig = sign("sha256", msg, { key: ca.privateKey, dsaEncoding: "der" });
  const caPublic = createPublicKey(ca.privateKey);
  const leavesPerSec = rate(n, () => issueLeaf(t, { spiffeId: "spiffe://bench.test/ns/a/sa/b", spkiDer: workload.publicKeySpki, now }));
  const signPerSec = rate(n, () => sign("sha256", msg, { key: ca.privateKey, dsaEncoding: "der" }));
  const verifyPerSec = rate(n, () => verify("sha256", msg, { key: caPublic, dsaEncoding: "der" }, sig));
  // Every CSR brings a key the API has never seen, so its verify starts with
  // an import (importSpki, the road csr.ts takes). Shown beside the limit, not in it:
  // on OpenSSL 3.0 that import costs about as much as the verify itself.
  const fresh = Array.from({ length: 64 }, () => {
    const k = generateP256();
    return { spki: k.publicKeySpki, jwk: ecJwk(k.publicKeySpki)!, sig: sign("sha256", msg, { key: k.privateKey, dsaEncoding: "der" }) };
  });
  let next = 0;
  const freshKeyVerifyPerSec = rate(n, () => {
    const f = fresh[next++ % fresh.length]!;
    verify("sha256", msg, { key: importSpki(f.spki), dsaEncoding: "der" }, f.sig);
  });
  // The two roads in, alone: which is cheaper changed between OpenSSL 3.0 and 3.5 (csr.ts).
  const jwkImportPerSec = rate(n, () => createPublicKey({ key: fresh[next++ % fresh.length]!.jwk, format: "jwk" }));
  const derImportPerSec = rate(n, () => createPublicKey({ key: fresh[next++ % fresh.length]!.spki, format: "der", type: "spki" }));
  // One sign plus one verify per certificate, as issue 3 defines the limit.
  return { leavesPerSec, signPerSec, verifyPerSec, rawCertLimit: 1 / (1 / signPerSec + 1 / verifyPerSec), freshKeyVerifyPerSec, jwkImportPerSec, derImportPerSec };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = measureLeafThroughput();
  const f = (x: number) => Math.round(x).toString();
  console.log(`leaves/s ${f(r.leavesPerSec)}  raw sign/s ${f(r.signPerSec)}  raw verify/s ${f(r.verifyPerSec)}  limit (sign+verify)/s ${f(r.rawCertLimit)}  ratio ${(r.leavesPerSec / r.rawCertLimit).toFixed(2)}`);
}
