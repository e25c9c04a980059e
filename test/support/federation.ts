import { execFileSync } from "node:child_process";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
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

