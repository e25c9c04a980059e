/**
 * The mTLS sidecar baseline's certificates: a CA minted with openssl for this
 * run only, in a private temporary directory removed on cleanup, and one leaf
 * per pod signed by it (P-256 keys, as the agents' SVIDs have; a SPIFFE ID as
 * URI SAN; usable as client and server certificate, as an SVID is). Nothing
 * of it outlives the run or is trusted by anything but the bench's sidecars.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchCleanup } from "../support/cleanup.ts";

export interface ThrowawayCa {
  /** The CA's certificate: haproxy's `ca-file`. */
  caFile: string;
  /** Mints a leaf for `name` (spiffe://bench/ns/bench/sa/<name>); answers haproxy's `crt` file (certificate then key, 0600). */
  leaf(name: string): string;
}

const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

export function throwawayCa(cleanup: BenchCleanup): ThrowawayCa {
  const dir = mkdtempSync(join(tmpdir(), "wbench-l7-ca-"));
  cleanup.track("dirs", dir);
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const caFile = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  openssl("req", "-x509", ...P256, "-keyout", caKey, "-out", caFile, "-days", "1", "-subj", "/O=wbench/CN=bench:l7 throwaway CA");
  return {
    caFile,
    leaf: (name) => {
      if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`throwawayCa: "${name}" must be a-z 0-9 -`);
      const [key, csr, cert, ext] = ["key", "csr", "pem", "ext"].map((e) => join(dir, `${name}.${e}`)) as [string, string, string, string];
      openssl("req", ...P256, "-keyout", key, "-out", csr, "-subj", `/O=wbench/CN=${name}`);
      writeFileSync(ext, `subjectAltName=URI:spiffe://bench/ns/bench/sa/${name}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n`);
      openssl("x509", "-req", "-in", csr, "-CA", caFile, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext);
      const crt = join(dir, `${name}.crt.pem`);
      writeFileSync(crt, `${readFileSync(cert, "utf8").trimEnd()}\n${readFileSync(key, "utf8").trimEnd()}\n`, { mode: 0o600 });
      return crt;
    },
  };
}
