// The throwaway certificate of go-plugin's AutoMTLS: self-signed, for
// "localhost", valid for both TLS ends, made at every start. Modelled on
// hashicorp/go-plugin mtls.go generateCert (which uses P-521; P-256 is as
// acceptable to Go's TLS stack and cheaper to make). Built as DER with the
// API's small encoder rather than a certificate library: a few byte
// strings, nothing to load at start-up.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { bitString, bool, ctx, octetString, oid, seq, set, smallInt, time, tlv, toPem, uintBytes, utf8 } from "../../../api/src/ca/der.ts";

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  organizationName: "2.5.4.10",
  commonName: "2.5.4.3",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

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
  const ext = (id: string, critical: boolean, value: Uint8Array): Buffer =>
    critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
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
        ext(OID.basicConstraints, true, seq(bool(true))),
        // digitalSignature, keyEncipherment, keyAgreement, keyCertSign (bits 0, 2, 4, 5).
        ext(OID.keyUsage, true, tlv(0x03, Buffer.of(2, 0xac))),
        ext(OID.extKeyUsage, false, seq(oid(OID.clientAuth), oid(OID.serverAuth))),
        ext(OID.subjectAltName, false, seq(tlv(0x82, Buffer.from(CERT_HOST, "ascii")))),
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
