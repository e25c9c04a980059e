// Test PKI for the transport: CAs and SVIDs minted with @weft/pki's DER
// building blocks and node:crypto, so a test can make what the project's CA
// never would (two URI SANs, an expired leaf, a CA vouching for another
// trust domain) and check that the transport refuses it.
import { generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from "node:crypto";
import {
  bool,
  ctx,
  ECDSA_WITH_SHA256,
  extension,
  KEY_USAGE,
  keyUsage,
  name,
  OID,
  oid,
  certificate,
  seq,
  toPem,
  uintBytes,
  uriName,
  validity,
  VERSION_3,
} from "@weft/pki";

export interface TestCa {
  trustDomain: string;
  key: KeyObject;
  subject: Buffer;
  pem: string;
}

export interface TestSvid {
  keyPem: string;
  chainPem: string;
}

const HOUR = 3_600_000;

function tbsAndSign(opts: { issuer: Buffer; subject: Buffer; spki: Buffer; notBefore: Date; notAfter: Date; extensions: Buffer[]; signer: KeyObject }): string {
  const tbs = seq(VERSION_3, uintBytes(randomBytes(16)), ECDSA_WITH_SHA256, opts.issuer, validity(opts.notBefore, opts.notAfter), opts.subject, opts.spki, ctx(3, seq(...opts.extensions)));
  return toPem("CERTIFICATE", certificate(tbs, ECDSA_WITH_SHA256, sign("sha256", tbs, opts.signer)));
}

const newKey = () => generateKeyPairSync("ec", { namedCurve: "P-256" });
const spkiOf = (k: KeyObject) => k.export({ type: "spki", format: "der" });

/** A root CA, or with `parent` an intermediate CA it signs (its pem is the intermediate alone). */
export function mintCa(trustDomain: string, parent?: TestCa): TestCa {
  const { privateKey, publicKey } = newKey();
  const subject = name([
    [OID.organizationName, "weft transport test"],
    [OID.commonName, `${trustDomain} CA ${randomBytes(4).toString("hex")}`],
  ]);
  const now = Date.now();
  const pem = tbsAndSign({
    issuer: parent?.subject ?? subject,
    subject,
    spki: spkiOf(publicKey),
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 24 * HOUR),
    extensions: [extension(OID.basicConstraints, true, seq(bool(true))), extension(OID.keyUsage, true, keyUsage(KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign))],
    signer: parent?.key ?? privateKey,
  });
  return { trustDomain, key: privateKey, subject, pem };
}

/** An X509-SVID signed by `ca`; by default for one URI and valid from an hour ago for a day. */
export function mintSvid(ca: TestCa, uris: string | string[], opts: { notBefore?: Date; notAfter?: Date } = {}): TestSvid {
  const { privateKey, publicKey } = newKey();
  const list = Array.isArray(uris) ? uris : [uris];
  const now = Date.now();
  const pem = tbsAndSign({
    issuer: ca.subject,
    subject: name([[OID.organizationName, "weft transport test"]]),
    spki: spkiOf(publicKey),
    notBefore: opts.notBefore ?? new Date(now - HOUR),
    notAfter: opts.notAfter ?? new Date(now + 24 * HOUR),
    extensions: [
      extension(OID.basicConstraints, true, seq()),
      extension(OID.keyUsage, true, keyUsage(KEY_USAGE.digitalSignature)),
      extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
      ...(list.length ? [extension(OID.subjectAltName, false, seq(...list.map(uriName)))] : []),
    ],
    signer: ca.key,
  });
  new X509Certificate(pem); // fails here, not inside a handshake, if the DER is wrong
  return { keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string, chainPem: pem };
}
