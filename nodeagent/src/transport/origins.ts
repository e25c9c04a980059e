// SPDX-License-Identifier: Apache-2.0
/**
 * Where a redirected connection was going and who sent it. The outbound
 * listener never trusts bytes from the connection for this: a workload
 * could claim any source. The kernel knows; two ways it can tell:
 *
 * - connect-time redirection (cgroup/connect4): the BPF program records
 *   {original destination, source address} by socket cookie in a map; the
 *   transport reads the accepted socket's cookie (getsockopt SO_COOKIE) and
 *   looks it up — an OriginResolver over that map;
 * - tc + bpf_sk_assign to an IP_TRANSPARENT listener: the accepted socket's
 *   local address IS the original destination and its remote address the
 *   source — an OriginResolver over the socket itself.
 *
 * Until the kernel part exists, OriginTable is fed over the control channel
 * (`steer`), keyed by the connecting socket's local ip:port as the listener
 * sees it, which plays the socket cookie's role.
 */
import type { Socket } from "node:net";
import type { Endpoint } from "./endpoint.ts";

export interface Origin {
  /** The source workload's address. */
  source: string;
  destination: Endpoint;
}

export interface OriginResolver {
  /** The origin of an accepted connection, or null: then the connection is refused. Consumes the record. */
  resolve(socket: Socket): Origin | null;
}

/** How long a recorded origin waits for its connection. */
export const ORIGIN_TTL_MS = 10_000;
/** Records held at once; past it the oldest go (a flood of steer messages cannot grow memory). */
export const ORIGIN_CAPACITY = 65_536;

export class OriginTable implements OriginResolver {
  private readonly entries = new Map<string, { origin: Origin; expires: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  record(peer: string, origin: Origin): void {
    this.entries.delete(peer);
    if (this.entries.size >= ORIGIN_CAPACITY) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(peer, { origin, expires: this.now() + ORIGIN_TTL_MS });
  }

  resolve(socket: Socket): Origin | null {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const entry = this.entries.get(peer);
    if (!entry) return null;
    this.entries.delete(peer);
    return entry.expires >= this.now() ? entry.origin : null;
  }
}
