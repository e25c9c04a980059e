// SPDX-License-Identifier: Apache-2.0
/**
 * A PKCS#10 certificate request for a workload key (RFC 2986), built with
 * @weft/pki's DER encoder instead of an openssl process per workload: a node
 * with a hundred workloads rotates a hundred keys at each half-life.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { seq, toPem } from "@weft/pki/der";
import { certificationRequest, certificationRequestInfo, extensionRequest } from "@weft/pki/pkcs10";
import { ECDSA_WITH_SHA256, extension, name, OID, uriName } from "@weft/pki/x509";

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
  const subject = name([
    [OID.organizationName, "weft"],
    [OID.commonName, opts.commonName.slice(0, 64)],
  ]);
  const attributes = opts.spiffeId ? [extensionRequest(extension(OID.subjectAltName, false, seq(uriName(opts.spiffeId))))] : [];
  const info = certificationRequestInfo(subject, spki, attributes);
  const signature = sign("sha256", info, { key, dsaEncoding: "der" });
  return toPem("CERTIFICATE REQUEST", certificationRequest(info, ECDSA_WITH_SHA256, signature));
}
