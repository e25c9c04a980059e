// X.509 building blocks (RFC 5280): object identifiers, Names, extensions,
// GeneralNames, KeyUsage bits, SubjectPublicKeyInfo reading, and the
// certificate frame around a signed TBSCertificate. Encoding only: which
// fields and extensions a certificate carries (the SPIFFE X.509-SVID profile,
// the CA's own certificate, go-plugin's AutoMTLS certificate) is decided by
// the caller.
import { hash } from "node:crypto";
import {
  TAG,
  bitString,
  bitStringBytes,
  bool,
  children,
  ctx,
  DerError,
  expectTag,
  octetString,
  oid,
  readTop,
  seq,
  set,
  smallInt,
  time,
  tlv,
  utf8,
  whole,
} from "./der.ts";

/** The object identifiers Weft's certificates and requests use. */
export const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  organizationName: "2.5.4.10",
  commonName: "2.5.4.3",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
  subjectAltName: "2.5.29.17",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** AlgorithmIdentifier for ecdsa-with-SHA256: parameters absent (RFC 5758 3.2). */
export const ECDSA_WITH_SHA256 = seq(oid(OID.ecdsaWithSha256));

/** TBSCertificate version [0] EXPLICIT v3 (2). */
export const VERSION_3 = ctx(0, smallInt(2));

/** One Extension: extnID, critical (omitted when false, as DER requires), extnValue. */
export function extension(id: string | Buffer, critical: boolean, valueDer: Uint8Array): Buffer {
  const idDer = typeof id === "string" ? oid(id) : id;
  return critical ? seq(idDer, bool(true), octetString(valueDer)) : seq(idDer, octetString(valueDer));
}

/** A Name with one single-valued RDN per attribute, in order, each a UTF8String. */
export function name(attrs: readonly (readonly [string, string])[]): Buffer {
  return seq(...attrs.map(([id, v]) => set(seq(oid(id), utf8(v)))));
}

/** GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String (the caller keeps it ASCII). */
export const uriName = (uri: string): Buffer => tlv(0x86, Buffer.from(uri, "ascii"));
/** GeneralName dNSName: [2] IMPLICIT IA5String. */
export const dnsName = (host: string): Buffer => tlv(0x82, Buffer.from(host, "ascii"));
/** GeneralName iPAddress: [7] IMPLICIT OCTET STRING, 4 bytes for IPv4, 16 for IPv6 (RFC 5280 4.2.1.6). */
export const ipName = (address: Uint8Array): Buffer => tlv(0x87, address);

/** Validity: notBefore, notAfter (each UTCTime or GeneralizedTime, see der.ts time()). */
export const validity = (notBefore: Date, notAfter: Date): Buffer => seq(time(notBefore), time(notAfter));

/** KeyUsage bit numbers (RFC 5280 4.2.1.3). */
export const KEY_USAGE = {
  digitalSignature: 0,
  contentCommitment: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;

/**
 * The KeyUsage BIT STRING with the given bits set. Bits are numbered from the
 * most significant bit of the first byte; DER drops trailing zero bits and
 * records their count in the first content byte (X.690 11.2.2).
 */
export function keyUsage(...bits: readonly number[]): Buffer {
  if (bits.length === 0) throw new DerError("a KeyUsage needs at least one bit");
  const top = Math.max(...bits);
  if (bits.some((b) => !Number.isInteger(b) || b < 0 || b > 8)) throw new DerError(`bad KeyUsage bit in ${bits.join(",")}`);
  const bytes = Buffer.alloc((top >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return tlv(TAG.BIT_STRING, Buffer.of(7 - (top & 7)), bytes);
}

/** Certificate: the TBSCertificate, its signature AlgorithmIdentifier and the signature bits. */
export const certificate = (tbs: Uint8Array, algorithm: Uint8Array, signature: Uint8Array): Buffer =>
  seq(tbs, algorithm, bitString(signature));

/** The subjectPublicKey bits of an SPKI. */
export function spkiKeyBits(spkiDer: Uint8Array): Buffer {
  const top = readTop(spkiDer, TAG.SEQUENCE);
  const [alg, bits] = children(spkiDer, top);
  expectTag(alg, TAG.SEQUENCE, "SubjectPublicKeyInfo algorithm");
  return bitStringBytes(spkiDer, expectTag(bits, TAG.BIT_STRING, "SubjectPublicKeyInfo key"));
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spkiDer: Uint8Array): Buffer {
  // One-shot hash(): no Hash object per leaf (about 40% less in a tight loop).
  return hash("sha1", spkiKeyBits(spkiDer), "buffer");
}

/** The subject Name and SubjectPublicKeyInfo of a certificate, as DER views into it. */
export function readCertificate(der: Uint8Array): { subjectDer: Buffer; spkiDer: Buffer } {
  const cert = readTop(der, TAG.SEQUENCE);
  const tbs = expectTag(children(der, cert)[0], TAG.SEQUENCE, "tbsCertificate");
  // version [0], serial, signature, issuer, validity, subject, subjectPublicKeyInfo
  const f = children(der, tbs);
  return {
    subjectDer: whole(der, expectTag(f[5], TAG.SEQUENCE, "subject")),
    spkiDer: whole(der, expectTag(f[6], TAG.SEQUENCE, "subjectPublicKeyInfo")),
  };
}

/**
 * The DER of an EC SubjectPublicKeyInfo up to the uncompressed point, per
 * curve. OpenSSL 3 imports a DER SPKI through its generic decoder at about
 * twice the cost of the coordinates as a JWK, and reading a KeyObject's curve
 * back costs as much again: together more than a signature check, so the
 * common keys take this road. The JWK import still checks that the point is
 * on the curve.
 */
const EC_SPKI_PREFIXES: readonly { crv: string; prefix: Buffer; coordBytes: number }[] = [
  { crv: "P-256", prefix: Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex"), coordBytes: 32 },
  { crv: "P-384", prefix: Buffer.from("3076301006072a8648ce3d020106052b81040022036200" + "04", "hex"), coordBytes: 48 },
];

const ecSpkiForm = (spki: Buffer) =>
  EC_SPKI_PREFIXES.find(({ prefix, coordBytes }) => spki.length === prefix.length + 2 * coordBytes && spki.subarray(0, prefix.length).equals(prefix)) ?? null;

/** "P-256" or "P-384" for an EC SPKI of that curve with an uncompressed point; null for any other key. */
export function ecCurve(spki: Buffer): "P-256" | "P-384" | null {
  return (ecSpkiForm(spki)?.crv as "P-256" | "P-384" | undefined) ?? null;
}

/** An EC P-256 or P-384 SPKI (uncompressed point) as a public JWK; null for any other key. */
export function ecJwk(spki: Buffer): { kty: "EC"; crv: string; x: string; y: string } | null {
  const form = ecSpkiForm(spki);
  if (!form) return null;
  const at = form.prefix.length;
  return {
    kty: "EC",
    crv: form.crv,
    x: spki.subarray(at, at + form.coordBytes).toString("base64url"),
    y: spki.subarray(at + form.coordBytes).toString("base64url"),
  };
}
