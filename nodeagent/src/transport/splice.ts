// SPDX-License-Identifier: Apache-2.0
/**
 * Joins a local TCP socket and a CONNECT stream both ways, keeping TCP
 * half-close (a client's FIN after its request still gets the answer), and
 * counts the bytes each way. An error on either side tears both down; a
 * clean end on both closes them. Sockets must be made with allowHalfOpen.
 */
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream";

export function splice(local: Socket, tunnel: Duplex, count: (way: "to_peer" | "from_peer", n: number) => void, onClose: () => void): void {
  local.on("data", (d: Buffer) => count("to_peer", d.length));
  tunnel.on("data", (d: Buffer) => count("from_peer", d.length));
  const fail = (err: Error | null | undefined) => {
    if (!err) return;
    local.destroy();
    tunnel.destroy();
  };
  pipeline(local, tunnel, fail);
  pipeline(tunnel, local, fail);
  let closed = 0;
  const closeOne = () => {
    if (++closed === 2) onClose();
  };
  local.once("close", closeOne);
  tunnel.once("close", closeOne);
}

/** A splice counter that also adds each way's bytes into `totals` (a stream's outcome). */
export function countInto(totals: { toPeer: number; fromPeer: number }, count: (way: "to_peer" | "from_peer", n: number) => void): (way: "to_peer" | "from_peer", n: number) => void {
  return (way, n) => {
    if (way === "to_peer") totals.toPeer += n;
    else totals.fromPeer += n;
    count(way, n);
  };
}
