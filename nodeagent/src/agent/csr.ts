// SPDX-License-Identifier: Apache-2.0
/**
 * A PKCS#10 certificate request for a workload key (RFC 2986), built with
 * the API's DER encoder instead of an openssl process per workload: a node
 * with a hundred workloads rotates a hundred keys at each half-life.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { bitString, ctx, oid, seq, set, smallInt, tlv, toPem, utf8 } from "../../../api/src/ca/der.ts";

const OID_EC_SIG_SHA256 = "1.2.840.10045.4.3.2";
const OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_ORGANIZATION = "2.5.4.10";
const OID_COMMON_NAME = "2.5.4.3";
/** GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String. */
const TAG_URI = 0x86;

export interface WorkloadKey {
  privateKey: KeyObject;
  /** PKCS#8 PEM, as key.pem is written. */
  keyPem: string;
}

export function newWorkloadKey(): WorkloadKey {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

export function keyFromPem(pem: string): WorkloadKey {
  return { privateKey: createPrivateKey(pem), keyPem: pem };
}

/**
 * A CSR signed by `key`. The subject is informative (the CA writes its own);
 * the SPIFFE ID, when the agent knows it, goes in as the one URI SAN so the
 * CA refuses the request if it would issue another ID.
 */
export function buildCsr(key: KeyObject, opts: { commonName: string; spiffeId?: string }): string {
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const subject = seq(set(seq(oid(OID_ORGANIZATION), utf8("weft"))), set(seq(oid(OID_COMMON_NAME), utf8(opts.commonName.slice(0, 64)))));
  const attributes = opts.spiffeId
    ? [
        seq(
          oid(OID_EXTENSION_REQUEST),
          set(seq(seq(oid(OID_SUBJECT_ALT_NAME), tlv(0x04, seq(tlv(TAG_URI, Buffer.from(opts.spiffeId, "latin1"))))))),
        ),
      ]
    : [];
  const info = seq(smallInt(0), subject, spki, ctx(0, ...attributes));
  const signature = sign("sha256", info, { key, dsaEncoding: "der" });
  return toPem("CERTIFICATE REQUEST", seq(info, seq(oid(OID_EC_SIG_SHA256)), bitString(signature)));
}
