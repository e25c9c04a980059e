// SPDX-License-Identifier: Apache-2.0
/**
 * Opening the connection to the destination workload. With the original
 * source address (see transparent.ts) when the peer proved it and this
 * process may bind it; otherwise from the node's own address.
 */
import { connect, type Socket } from "node:net";
import type { Endpoint } from "./endpoint.ts";

/** How long an upstream connect may take before the stream is answered 503. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** A plain TCP connection, half-open allowed (see splice.ts). */
export function connectPlain(destination: Endpoint): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: destination.address, port: destination.port, allowHalfOpen: true });
    const timer = setTimeout(() => sock.destroy(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.removeListener("error", reject);
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
