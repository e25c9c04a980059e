// SPDX-License-Identifier: Apache-2.0
/**
 * Where a redirected connection was going and who sent it. The outbound
 * listener never trusts bytes from the connection for this: a workload
 * could claim any source. The kernel knows: tc marks a steered packet
 * (MARK_TO_TRANSPORT), policy routing delivers it to this host's stack and
 * bpf_sk_assign hands it to the IP_TRANSPARENT outbound listener, so the
 * accepted socket's local address IS the original destination and its
 * remote address the source workload's (steeredOrigin).
 *
 * A connection made to the listener's own address was steered by nobody.
 * Its origin is only what the agent recorded over the control channel
 * (`steer`, OriginTable), keyed by the connecting socket's ip:port: how the
 * loopback tests, which have no kernel steering, drive the transport. A
 * local process that connects there without such a record is refused.
 */
import type { Socket } from "node:net";
import { parseEndpoint, type Endpoint } from "./endpoint.ts";

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

  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

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

/** The origin the kernel's steering gave an accepted socket, or null when it was not steered (its local endpoint is the listener's own). */
export function steeredOrigin(socket: Pick<Socket, "localAddress" | "localPort" | "remoteAddress">, listener: Endpoint): Origin | null {
  const destination = parseEndpoint(`${socket.localAddress}:${socket.localPort}`);
  const source = socket.remoteAddress;
  if (!destination || !source || !parseEndpoint(`${source}:1`)) return null;
  if (destination.address === listener.address && destination.port === listener.port) return null;
  return { source, destination };
}

/** Steered connections by their socket, the listener's own by the agent's records. */
export function originResolver(listener: () => Endpoint, recorded: OriginResolver): OriginResolver {
  return { resolve: (socket) => steeredOrigin(socket, listener()) ?? recorded.resolve(socket) };
}
