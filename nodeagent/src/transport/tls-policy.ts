// SPDX-License-Identifier: Apache-2.0
/**
 * TLS settings both directions share: TLS 1.3 only, and the key-exchange
 * groups. The hybrid post-quantum group X25519MLKEM768 is the only one
 * offered unless the operator allows the classical X25519 as a fallback
 * (for peers on an OpenSSL without ML-KEM): a transport that silently fell
 * back would lose the protection against harvest-now-decrypt-later without
 * anyone deciding it.
 */
import { createSecureContext, type SecureContextOptions } from "node:tls";

export const POST_QUANTUM = "X25519MLKEM768";
export const CLASSICAL = "X25519";

export type KeyExchange = "post-quantum" | "post-quantum-or-classical";

export interface TlsPolicy {
  keyExchange: KeyExchange;
  contextOptions: SecureContextOptions;
  /** The group every handshake used when only one is offered; null when the server cannot tell (it is not exposed server-side). */
  onlyGroup: string | null;
}

/** Whether this runtime's OpenSSL has the group (3.5 has X25519MLKEM768; Node 22's and 20's 3.0 do not). */
export function groupAvailable(group: string): boolean {
  try {
    createSecureContext({ ecdhCurve: group });
    return true;
  } catch {
    return false;
  }
}

export class KeyExchangeUnavailable extends Error {}

export function tlsPolicy(keyExchange: KeyExchange): TlsPolicy {
  const pq = groupAvailable(POST_QUANTUM);
  if (keyExchange === "post-quantum" && !pq) {
    throw new KeyExchangeUnavailable(
      `this runtime's OpenSSL ${process.versions.openssl} has no ${POST_QUANTUM}: run the transport on Node 24 (OpenSSL 3.5), or allow the classical fallback with --key-exchange post-quantum-or-classical`,
    );
  }
  // The fallback offers the hybrid group first wherever this OpenSSL has it.
  const groups = keyExchange === "post-quantum" ? [POST_QUANTUM] : pq ? [POST_QUANTUM, CLASSICAL] : [CLASSICAL];
  return {
    keyExchange,
    contextOptions: { minVersion: "TLSv1.3", maxVersion: "TLSv1.3", ecdhCurve: groups.join(":") },
    onlyGroup: groups.length === 1 ? groups[0]! : null,
  };
}
