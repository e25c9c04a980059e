// SPDX-License-Identifier: Apache-2.0
/**
 * A PKCS#10 certificate request for an EC key (RFC 2986), built with the
 * DER encoder instead of an openssl process: the node agent makes one per
 * workload at each half-life, `weft svid` one per call.
 */
import { createPublicKey, sign, type KeyObject } from "node:crypto";
import { seq, toPem } from "./der.ts";
import { certificationRequest, certificationRequestInfo, extensionRequest } from "./pkcs10.ts";
import { ECDSA_WITH_SHA256, extension, name, OID, uriName } from "./x509.ts";

/**
 * A CSR signed by `key`. The subject is informative (the CA writes its own);
 * the SPIFFE ID, when the caller knows it, goes in as the one URI SAN so the
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
