// PKCS#10 certificate signing requests (RFC 2986), read with @weft/pki: check the key,
// verify the signature (proof that the caller holds the private key), and
// check that any URI SAN it asks for is the identity's SPIFFE ID.
//
// The CSR's subject and any other requested extension are ignored: the CA
// decides the whole leaf profile; only the public key is taken.
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { fromPem } from "@weft/pki/der";
import { parseCertificationRequest, requestedUris, type CertificationRequest } from "@weft/pki/pkcs10";
import { ecCurve, ecJwk } from "@weft/pki/x509";
import { CaInputError, type FieldError } from "./errors.ts";

const FIELD = "csr";
export const MIN_RSA_BITS = 2048;
/** Larger RSA keys make verification (and the workload's handshakes) slow for no gain. */
export const MAX_RSA_BITS = 8192;
const ACCEPTED_CURVES = new Set(["prime256v1", "secp384r1"]);
/**
 * Which road a CSR's EC key takes into OpenSSL, the cheaper one: OpenSSL 3.0
 * (Node 20 and 22) decodes a DER SPKI at about twice the cost of the same
 * point as a JWK; 3.5 (Node 24) turned that round, DER 13 µs against JWK's
 * 20 µs on this machine (bench/svid/throughput.ts measures both).
 */
const EC_IMPORT_AS_JWK = /^3\.[01]\./.test(process.versions.openssl);

/** Signature algorithms accepted on a CSR: hash, and the key type it must come with. */
const SIGNATURE_ALGORITHMS: Readonly<Record<string, { hash: string; keyType: "ec" | "rsa" }>> = {
  "1.2.840.10045.4.3.2": { hash: "sha256", keyType: "ec" },
  "1.2.840.10045.4.3.3": { hash: "sha384", keyType: "ec" },
  "1.2.840.10045.4.3.4": { hash: "sha512", keyType: "ec" },
  "1.2.840.113549.1.1.11": { hash: "sha256", keyType: "rsa" },
  "1.2.840.113549.1.1.12": { hash: "sha384", keyType: "rsa" },
  "1.2.840.113549.1.1.13": { hash: "sha512", keyType: "rsa" },
};

export interface VerifiedCsr {
  /** SubjectPublicKeyInfo DER, ready to put in the leaf. */
  spkiDer: Buffer;
  keyType: "ec" | "rsa";
}

function checkKey(key: KeyObject): FieldError | null {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    if (d.namedCurve && ACCEPTED_CURVES.has(d.namedCurve)) return null;
    return { field: FIELD, message: `EC key on curve ${d.namedCurve ?? "unknown"} is not accepted; use P-256 or P-384` };
  }
  if (key.asymmetricKeyType === "rsa") {
    const bits = d.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS) return null;
    return { field: FIELD, message: `RSA key of ${bits} bits is not accepted; use ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits (or EC P-256)` };
  }
  return { field: FIELD, message: `${key.asymmetricKeyType ?? "unknown"} keys are not accepted; use EC P-256, P-384 or RSA >= ${MIN_RSA_BITS}` };
}

/** A SubjectPublicKeyInfo as a KeyObject, by the cheaper road for its kind; throws if OpenSSL cannot read it (an EC point off its curve, say). */
export function importSpki(spki: Buffer): KeyObject {
  return EC_IMPORT_AS_JWK && ecCurve(spki) !== null
    ? createPublicKey({ key: ecJwk(spki)!, format: "jwk" })
    : createPublicKey({ key: spki, format: "der", type: "spki" });
}

const fail = (message: string): CaInputError => new CaInputError([{ field: FIELD, message }]);

/**
 * Parses and verifies a PEM CSR for `spiffeId`. Throws CaInputError (field
 * "csr") for anything it refuses.
 */
export function verifyCsr(pem: string, spiffeId: string): VerifiedCsr {
  const der = fromPem(pem, ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]);
  if (!der) throw fail("expected a PEM block '-----BEGIN CERTIFICATE REQUEST-----'");
  let csr: CertificationRequest;
  try {
    csr = parseCertificationRequest(der);
  } catch (e) {
    throw fail(`not a valid PKCS#10 request: ${e instanceof Error ? e.message : String(e)}`);
  }
  let key: KeyObject;
  const ec = ecCurve(csr.spkiDer) !== null;
  try {
    key = importSpki(csr.spkiDer);
  } catch {
    throw fail("the public key in the request cannot be read");
  }
  // An EC SPKI that ecCurve names is on an accepted curve: the import above checked its point.
  const keyError = ec ? null : checkKey(key);
  if (keyError) throw new CaInputError([keyError]);
  const alg = SIGNATURE_ALGORITHMS[csr.sigAlgOid];
  if (!alg) throw fail(`signature algorithm ${csr.sigAlgOid} is not accepted; use ECDSA or RSA PKCS#1 v1.5 with SHA-256/384/512`);
  if (alg.keyType !== key.asymmetricKeyType) throw fail("signature algorithm does not match the key type");
  let ok = false;
  try {
    ok = verify(alg.hash, csr.info, alg.keyType === "ec" ? { key, dsaEncoding: "der" } : key, csr.signature);
  } catch {
    ok = false; // a malformed signature value is as bad as a wrong one
  }
  if (!ok) throw fail("signature does not verify: the request was not signed by the private key of its public key");
  let uris: string[];
  try {
    uris = requestedUris(csr.attributes);
  } catch (e) {
    throw fail(`the requested extensions cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  const other = uris.filter((u) => u !== spiffeId);
  if (other.length) throw fail(`requests URI SAN ${other.join(", ")}; only ${spiffeId} may be requested`);
  return { spkiDer: csr.spkiDer, keyType: alg.keyType };
}
