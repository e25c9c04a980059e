// The throwaway certificate of go-plugin's AutoMTLS: self-signed, for
// "localhost", valid for both TLS ends, made at every start. Modelled on
// hashicorp/go-plugin mtls.go generateCert (which uses P-521; P-256 is as
// acceptable to Go's TLS stack and cheaper to make). Built as DER with the
// API's small encoder rather than a certificate library: a few byte
// strings, nothing to load at start-up.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { bitString, bool, ctx, oid, seq, set, smallInt, time, tlv, toPem, uintBytes, utf8 } from "../../../api/src/ca/der.ts";
import { extension, OID } from "../../../api/src/ca/x509.ts";

/** go-plugin's client dials with ServerName "localhost" and checks the DNS SAN. */
export const CERT_HOST = "localhost";
const BACKDATE_MS = 30_000; // as go-plugin: a peer whose clock lags a little still accepts it
const VALIDITY_MS = 365 * 24 * 3600 * 1000; // outlives any plugin process

export interface SelfSignedCert {
  der: Buffer;
  certPem: string;
  keyPem: string;
}

export function selfSignedCertificate(organization = "Weft", now = new Date()): SelfSignedCert {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ type: "spki", format: "der" });
  const name = seq(set(seq(oid(OID.organizationName), utf8(organization))), set(seq(oid(OID.commonName), utf8(CERT_HOST))));
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const sigAlg = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    ctx(0, smallInt(2)), // v3
    uintBytes(serial),
    sigAlg,
    name,
    seq(time(new Date(now.getTime() - BACKDATE_MS)), time(new Date(now.getTime() + VALIDITY_MS))),
    name,
    spki,
    ctx(
      3,
      seq(
        // cA true, as go-plugin's: the certificate is its own trust anchor.
        extension(OID.basicConstraints, true, seq(bool(true))),
        // digitalSignature, keyEncipherment, keyAgreement, keyCertSign (bits 0, 2, 4, 5).
        extension(OID.keyUsage, true, tlv(0x03, Buffer.of(2, 0xac))),
        extension(OID.extKeyUsage, false, seq(oid(OID.clientAuth), oid(OID.serverAuth))),
        extension(OID.subjectAltName, false, seq(tlv(0x82, Buffer.from(CERT_HOST, "ascii")))),
      ),
    ),
  );
  const der = seq(tbs, sigAlg, bitString(sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" })));
  return {
    der,
    certPem: toPem("CERTIFICATE", der),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
