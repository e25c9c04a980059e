// SPDX-License-Identifier: Apache-2.0
/** `IPV4:PORT`, the one address form the transport speaks (flags, CONNECT authorities, peer nodes, origins). */
import { isIPv4 } from "node:net";

export interface Endpoint {
  address: string;
  port: number;
}

/** The endpoint `value` names exactly (dotted IPv4 with octets in range, port 1-65535; 0 too where a listener may let the kernel pick), or null. */
export function parseEndpoint(value: string | undefined, opts: { anyPort?: boolean } = {}): Endpoint | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(value ?? "");
  if (!m || !isIPv4(m[1]!)) return null;
  const port = Number(m[2]);
  return port >= (opts.anyPort ? 0 : 1) && port <= 65535 ? { address: m[1]!, port } : null;
}
