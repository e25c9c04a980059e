// SPDX-License-Identifier: Apache-2.0
/**
 * Opening the connection to the destination workload, marked as the
 * transport's (sockets.ts). From the original source address when the peer
 * proved it and delivery is transparent; otherwise from the node's own
 * address. A transparent delivery that cannot bind the source fails: it is
 * never made from another address than the receiver's policy would expect.
 */
import type { Socket } from "node:net";
import type { Endpoint } from "./endpoint.ts";
import { connectMarked } from "./sockets.ts";

/** How long an upstream connect may take before the stream is answered 503. */
export const CONNECT_TIMEOUT_MS = 10_000;

export type DeliveryMode = "transparent" | "plain";

/** Connects to a local workload for a stream; half-open allowed (see splice.ts). */
export function deliverer(mode: DeliveryMode, mark: number): (destination: Endpoint, source: string | null) => Promise<Socket> {
  return (destination, source) =>
    connectMarked(destination, { mark, timeoutMs: CONNECT_TIMEOUT_MS, ...(mode === "transparent" && source ? { source } : {}) });
}
