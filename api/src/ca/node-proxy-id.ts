/**
 * The SPIFFE ID of a node's L7 proxy in a tenant's trust domain:
 * spiffe://<trust domain>/weft/node/<node name>/proxy. The proxy presents it
 * when the node's transport carries its connection to a backend on another
 * node (issue 21), and the receiving transport knows the proxy by it.
 *
 * Paths under /weft/ are the system's: a tenant's identity may not take one,
 * so no workload SVID can pass for a node's proxy.
 */
import type { FieldError } from "./errors.ts";

export const RESERVED_PATH_PREFIX = "/weft/";

export const nodeProxyPath = (node: string): string => `/weft/node/${node}/proxy`;

/** Why a tenant's identity may not have `path`; empty when it may. */
export function reservedPathErrors(path: string, field = "path"): FieldError[] {
  return path === "/weft" || path.startsWith(RESERVED_PATH_PREFIX) ? [{ field, message: `paths under ${RESERVED_PATH_PREFIX} are reserved for Weft's own identities (a node's proxy)` }] : [];
}
