import { execFileSync } from "node:child_process";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A CA certificate minted with openssl, and a JWT key, as a SPIFFE bundle someone pastes. */
export function pastedBundle(trustDomain: string) {
  const dir = mkdtempSync(join(tmpdir(), "weft-fed-"));
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.pem"), "-subj", "/O=elsewhere",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-addext", `subjectAltName=URI:spiffe://${trustDomain}`,
  ], { stdio: "ignore" });
  const cert = new X509Certificate(readFileSync(join(dir, "ca.pem")));
  rmSync(dir, { recursive: true, force: true });
  const jwt = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    cert,
    jwtPublic: jwt.publicKey,
    jwks: {
      keys: [
        { ...cert.publicKey.export({ format: "jwk" }), use: "x509-svid", x5c: [cert.raw.toString("base64")] },
        { ...jwt.publicKey.export({ format: "jwk" }), use: "jwt-svid", kid: "k1" },
      ],
      spiffe_sequence: 1,
    },
  };
}


/** A throwaway CA (openssl) and a server certificate it signs for 127.0.0.1: the PEMs. */
export function loopbackTls(): { caPem: string; certPem: string; keyPem: string } {
  const dir = mkdtempSync(join(tmpdir(), "weft-fed-tls-"));
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore", cwd: dir });
  run([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=weft test endpoint CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]);
  writeFileSync(join(dir, "ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
  run(["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "srv.pem"]);
  const out = { caPem: readFileSync(join(dir, "ca.pem"), "utf8"), certPem: readFileSync(join(dir, "srv.pem"), "utf8"), keyPem: readFileSync(join(dir, "srv.key"), "utf8") };
  rmSync(dir, { recursive: true, force: true });
  return out;
}
