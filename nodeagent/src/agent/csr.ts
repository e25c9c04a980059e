// SPDX-License-Identifier: Apache-2.0
/** A workload's key, and its certificate request (built in @weft/pki/csr). */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";

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

export { buildCsr } from "@weft/pki/csr";
