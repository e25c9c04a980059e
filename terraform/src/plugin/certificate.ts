// The throwaway certificate of go-plugin's AutoMTLS: self-signed, for
// "localhost", valid for both TLS ends, made at every start. Modelled on
// hashicorp/go-plugin mtls.go generateCert (which uses P-521; P-256 is as
// acceptable to Go's TLS stack and cheaper to make). Built as DER with the
// small encoder of @weft/pki rather than a certificate library: a few byte
// strings, nothing to load at start-up.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { bool, ctx, oid, seq, toPem, uintBytes } from "@weft/pki/der";
import { certificate, dnsName, ECDSA_WITH_SHA256, extension, KEY_USAGE, keyUsage, name as x509Name, OID, validity, VERSION_3 } from "@weft/pki/x509";

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
  const name = x509Name([
    [OID.organizationName, organization],
    [OID.commonName, CERT_HOST],
  ]);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const tbs = seq(
    VERSION_3,
    uintBytes(serial),
    ECDSA_WITH_SHA256,
    name,
    validity(new Date(now.getTime() - BACKDATE_MS), new Date(now.getTime() + VALIDITY_MS)),
    name,
    spki,
    ctx(
      3,
      seq(
        // cA true, as go-plugin's: the certificate is its own trust anchor.
        extension(OID.basicConstraints, true, seq(bool(true))),
        // digitalSignature, keyEncipherment, keyAgreement, keyCertSign (bits 0, 2, 4, 5).
        extension(
          OID.keyUsage,
          true,
          keyUsage(KEY_USAGE.digitalSignature, KEY_USAGE.keyEncipherment, KEY_USAGE.keyAgreement, KEY_USAGE.keyCertSign),
        ),
        extension(OID.extKeyUsage, false, seq(oid(OID.clientAuth), oid(OID.serverAuth))),
        extension(OID.subjectAltName, false, seq(dnsName(CERT_HOST))),
      ),
    ),
  );
  const der = certificate(tbs, ECDSA_WITH_SHA256, sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" }));
  return {
    der,
    certPem: toPem("CERTIFICATE", der),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
