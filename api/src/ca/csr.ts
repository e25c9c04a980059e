// PKCS#10 certificate signing requests (RFC 2986): parse, check the key,
// verify the signature (proof that the caller holds the private key), and
// check that any URI SAN it asks for is the identity's SPIFFE ID.
//
// The CSR's subject and any other requested extension are ignored: the CA
// decides the whole leaf profile; only the public key is taken.
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { DerError, TAG, bitStringBytes, children, decodeOid, expectTag, fromPem, readTop, value, whole } from "./der.ts";
import { CaInputError, type FieldError } from "./errors.ts";

const FIELD = "csr";
export const MIN_RSA_BITS = 2048;
/** Larger RSA keys make verification (and the workload's handshakes) slow for no gain. */
export const MAX_RSA_BITS = 8192;
const ACCEPTED_CURVES = new Set(["prime256v1", "secp384r1"]);

const OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";

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

interface ParsedCsr {
  info: Buffer;
  spkiDer: Buffer;
  attributes: { oid: string; values: Buffer }[];
  sigAlgOid: string;
  signature: Buffer;
}

function parse(der: Buffer): ParsedCsr {
  const top = readTop(der, TAG.SEQUENCE);
  const [infoT, algT, sigT, ...extra] = children(der, top);
  if (extra.length) throw new DerError("unexpected fields after the signature");
  const info = expectTag(infoT, TAG.SEQUENCE, "certificationRequestInfo");
  const [versionT, subjectT, spkiT, attrsT] = children(der, info);
  const version = value(der, expectTag(versionT, TAG.INTEGER, "version"));
  if (version.length !== 1 || version[0] !== 0) throw new DerError("version must be 1 (v1 = 0)");
  expectTag(subjectT, TAG.SEQUENCE, "subject");
  const spki = expectTag(spkiT, TAG.SEQUENCE, "subjectPKInfo");
  const attributes: ParsedCsr["attributes"] = [];
  if (attrsT) {
    // attributes [0] IMPLICIT SET OF Attribute
    expectTag(attrsT, 0xa0, "attributes");
    for (const a of children(der, attrsT)) {
      const [idT, valuesT] = children(der, expectTag(a, TAG.SEQUENCE, "attribute"));
      attributes.push({
        oid: decodeOid(value(der, expectTag(idT, TAG.OID, "attribute type"))),
        values: whole(der, expectTag(valuesT, TAG.SET, "attribute values")),
      });
    }
  }
  const alg = expectTag(algT, TAG.SEQUENCE, "signatureAlgorithm");
  const algOid = decodeOid(value(der, expectTag(children(der, alg)[0], TAG.OID, "signature algorithm")));
  return {
    info: whole(der, info),
    spkiDer: whole(der, spki),
    attributes,
    sigAlgOid: algOid,
    signature: bitStringBytes(der, expectTag(sigT, TAG.BIT_STRING, "signature")),
  };
}

/** URIs in the subjectAltName of the CSR's extensionRequest, if any. */
function requestedUris(attributes: ParsedCsr["attributes"]): string[] {
  const uris: string[] = [];
  for (const attr of attributes) {
    if (attr.oid !== OID_EXTENSION_REQUEST) continue;
    const set = readTop(attr.values, TAG.SET);
    for (const exts of children(attr.values, set)) {
      for (const ext of children(attr.values, expectTag(exts, TAG.SEQUENCE, "extensions"))) {
        const parts = children(attr.values, expectTag(ext, TAG.SEQUENCE, "extension"));
        const id = decodeOid(value(attr.values, expectTag(parts[0], TAG.OID, "extension id")));
        if (id !== OID_SUBJECT_ALT_NAME) continue;
        const octets = value(attr.values, expectTag(parts[parts.length - 1], TAG.OCTET_STRING, "extension value"));
        const names = readTop(octets, TAG.SEQUENCE);
        for (const gn of children(octets, names)) {
          if (gn.tag === 0x86) uris.push(value(octets, gn).toString("latin1"));
        }
      }
    }
  }
  return uris;
}

/**
 * The DER of an EC SubjectPublicKeyInfo up to the uncompressed point, per
 * accepted curve. OpenSSL 3 imports a DER SPKI through its generic decoder
 * at about twice the cost of the coordinates as a JWK, and reading a
 * KeyObject's curve back costs as much again: together more than the
 * signature check itself, so the common keys take this road. The JWK import
 * still checks that the point is on the curve.
 */
const EC_SPKI_PREFIXES: readonly { crv: string; prefix: Buffer; coordBytes: number }[] = [
  { crv: "P-256", prefix: Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex"), coordBytes: 32 },
  { crv: "P-384", prefix: Buffer.from("3076301006072a8648ce3d020106052b81040022036200" + "04", "hex"), coordBytes: 48 },
];

export function ecJwk(spki: Buffer): { kty: "EC"; crv: string; x: string; y: string } | null {
  for (const { crv, prefix, coordBytes } of EC_SPKI_PREFIXES) {
    if (spki.length !== prefix.length + 2 * coordBytes || !spki.subarray(0, prefix.length).equals(prefix)) continue;
    const at = prefix.length;
    return {
      kty: "EC",
      crv,
      x: spki.subarray(at, at + coordBytes).toString("base64url"),
      y: spki.subarray(at + coordBytes).toString("base64url"),
    };
  }
  return null;
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

const fail = (message: string): CaInputError => new CaInputError([{ field: FIELD, message }]);

/**
 * Parses and verifies a PEM CSR for `spiffeId`. Throws CaInputError (field
 * "csr") for anything it refuses.
 */
export function verifyCsr(pem: string, spiffeId: string): VerifiedCsr {
  const der = fromPem(pem, ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]);
  if (!der) throw fail("expected a PEM block '-----BEGIN CERTIFICATE REQUEST-----'");
  let csr: ParsedCsr;
  try {
    csr = parse(der);
  } catch (e) {
    throw fail(`not a valid PKCS#10 request: ${e instanceof Error ? e.message : String(e)}`);
  }
  let key: KeyObject;
  const ec = ecJwk(csr.spkiDer);
  try {
    key = ec ? createPublicKey({ key: ec, format: "jwk" }) : createPublicKey({ key: csr.spkiDer, format: "der", type: "spki" });
  } catch {
    throw fail("the public key in the request cannot be read");
  }
  // An EC key that came through ecJwk is on an accepted curve already.
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
