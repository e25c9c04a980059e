// PKCS#10 certification requests (RFC 2986): build one and read one back.
// Encoding only: which keys, algorithms and requested names are acceptable
// is the CA's decision (api/src/ca/csr.ts), what a request asks for is the
// requester's.
import {
  DerError,
  TAG,
  bitStringBytes,
  children,
  ctx,
  decodeOid,
  expectTag,
  oid,
  readTop,
  seq,
  set,
  smallInt,
  value,
  whole,
} from "./der.ts";
import { certificate, OID } from "./x509.ts";

/** PKCS#9 extensionRequest attribute. */
export const OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

/** Attribute extensionRequest: a SET holding one Extensions SEQUENCE. */
export const extensionRequest = (...extensions: readonly Uint8Array[]): Buffer =>
  seq(oid(OID_EXTENSION_REQUEST), set(seq(...extensions)));

/**
 * CertificationRequestInfo: version 1 (0), subject, subjectPKInfo and
 * attributes [0] IMPLICIT SET OF Attribute (present even when empty, as the
 * ASN.1 module requires).
 */
export const certificationRequestInfo = (subject: Uint8Array, spkiDer: Uint8Array, attributes: readonly Uint8Array[] = []): Buffer =>
  seq(smallInt(0), subject, spkiDer, ctx(0, ...attributes));

/** CertificationRequest: the signed info, its AlgorithmIdentifier and the signature bits (the same frame as a certificate). */
export const certificationRequest = certificate;

export interface CertificationRequest {
  /** certificationRequestInfo DER: the bytes the signature covers. */
  info: Buffer;
  /** SubjectPublicKeyInfo DER. */
  spkiDer: Buffer;
  attributes: { oid: string; values: Buffer }[];
  /** The signature algorithm's OID, dotted. */
  sigAlgOid: string;
  /** The signature bits (whole bytes). */
  signature: Buffer;
}

/** Reads a DER CertificationRequest. Throws DerError for anything malformed. */
export function parseCertificationRequest(der: Buffer): CertificationRequest {
  const top = readTop(der, TAG.SEQUENCE);
  const [infoT, algT, sigT, ...extra] = children(der, top);
  if (extra.length) throw new DerError("unexpected fields after the signature");
  const info = expectTag(infoT, TAG.SEQUENCE, "certificationRequestInfo");
  const [versionT, subjectT, spkiT, attrsT] = children(der, info);
  const version = value(der, expectTag(versionT, TAG.INTEGER, "version"));
  if (version.length !== 1 || version[0] !== 0) throw new DerError("version must be 1 (v1 = 0)");
  expectTag(subjectT, TAG.SEQUENCE, "subject");
  const spki = expectTag(spkiT, TAG.SEQUENCE, "subjectPKInfo");
  const attributes: CertificationRequest["attributes"] = [];
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

/** URIs in the subjectAltName of the request's extensionRequest, if any. Throws DerError when it is malformed. */
export function requestedUris(attributes: CertificationRequest["attributes"]): string[] {
  const uris: string[] = [];
  for (const attr of attributes) {
    if (attr.oid !== OID_EXTENSION_REQUEST) continue;
    const set = readTop(attr.values, TAG.SET);
    for (const exts of children(attr.values, set)) {
      for (const ext of children(attr.values, expectTag(exts, TAG.SEQUENCE, "extensions"))) {
        const parts = children(attr.values, expectTag(ext, TAG.SEQUENCE, "extension"));
        const id = decodeOid(value(attr.values, expectTag(parts[0], TAG.OID, "extension id")));
        if (id !== OID.subjectAltName) continue;
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
