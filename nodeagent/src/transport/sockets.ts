// SPDX-License-Identifier: Apache-2.0
/**
 * Every socket the transport opens or listens on, made through libc (koffi)
 * because Node has neither SO_MARK nor IP_TRANSPARENT:
 *
 * - SO_MARK = MARK_TRANSPORT on each one (listeners pass it to the sockets
 *   they accept), so the datapath tells the transport's own packets (its TLS
 *   to peer nodes, its deliveries to local workloads) from a workload's and
 *   from the fabric's: a delivery from a peer's address is believed only
 *   with the mark, and the transport's own connections are never steered
 *   back into it;
 * - IP_TRANSPARENT where the socket uses an address that is not the host's:
 *   the outbound listener (the kernel assigns it connections to any
 *   destination), and deliveries bound to the original source address so
 *   the workload and its tc policy see the real peer (issue #18, point 5).
 *
 * - TCP_NODELAY on each one (accepted sockets inherit it too): the
 *   transport relays what it reads at once, and Nagle's wait for an ACK
 *   that the peer delays would add up to 40 ms to a small write between
 *   two others (a request after a CONNECT's answer, a response's last
 *   segment); ztunnel sets it for the same reason.
 *
 * Both need CAP_NET_ADMIN. libc makes and binds the socket; Node's own
 * net.Socket then connects it or net.Server listens on it, so the sockets
 * behave as any other in the event loop.
 */
import koffi from "koffi";
import { Socket } from "node:net";
import type { Endpoint } from "./endpoint.ts";

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_MARK = 36;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;

interface Libc {
  socket: (domain: number, type: number, protocol: number) => number;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, len: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  close: (fd: number) => number;
  strerror: (errnum: number) => string;
}

let libc: Libc | null = null;
function load(): Libc {
  if (libc) return libc;
  const c = koffi.load("libc.so.6");
  libc = {
    socket: c.func("int socket(int domain, int type, int protocol)"),
    setsockopt: c.func("int setsockopt(int fd, int level, int name, const uint8_t *value, uint32_t len)"),
    bind: c.func("int bind(int fd, const uint8_t *addr, uint32_t len)"),
    close: c.func("int close(int fd)"),
    strerror: c.func("const char *strerror(int errnum)"),
  } as Libc;
  return libc;
}

/** struct sockaddr_in: family (host order), port (network order), address, zero padding. */
function sockaddrIn(address: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  address.split(".").forEach((octet, i) => b.writeUInt8(Number(octet), 4 + i));
  return b;
}

export class SocketError extends Error {}

export interface SocketOptions {
  /** SO_MARK; 0 leaves the socket unmarked. */
  mark: number;
  /** IP_TRANSPARENT: the socket may use an address that is not the host's. */
  transparent?: boolean;
}

function int32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

/** A TCP socket with the options set and bound to `bindTo` when given; its descriptor. */
function tcpSocket(opts: SocketOptions & { bindTo?: Endpoint; reuseAddress?: boolean }): number {
  const c = load();
  const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SocketError(`failed to create a socket: ${c.strerror(koffi.errno())}`);
  const fail = (what: string): never => {
    const errno = koffi.errno();
    c.close(fd);
    throw new SocketError(`failed to ${what}: ${c.strerror(errno)}`);
  };
  if (opts.mark && c.setsockopt(fd, SOL_SOCKET, SO_MARK, int32(opts.mark), 4) !== 0) fail(`set SO_MARK 0x${opts.mark.toString(16)}`);
  if (opts.transparent && c.setsockopt(fd, SOL_IP, IP_TRANSPARENT, int32(1), 4) !== 0) fail("set IP_TRANSPARENT");
  if (c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, int32(1), 4) !== 0) fail("set TCP_NODELAY");
  if (opts.reuseAddress && c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, int32(1), 4) !== 0) fail("set SO_REUSEADDR");
  if (opts.bindTo && c.bind(fd, sockaddrIn(opts.bindTo.address, opts.bindTo.port), 16) !== 0) fail(`bind ${opts.bindTo.address}:${opts.bindTo.port}`);
  return fd;
}

/** A bound (not yet listening) socket for net.Server#listen({ fd }); port 0 lets the kernel pick. */
export function listeningSocket(at: Endpoint, opts: SocketOptions): { fd: number } {
  return { fd: tcpSocket({ ...opts, bindTo: at, reuseAddress: true }) };
}

/** A socket not yet connected, for a client that connects it itself (a TLS session's createConnection). */
export function unconnectedSocket(opts: SocketOptions): Socket {
  return new Socket({ fd: tcpSocket(opts), readable: true, writable: true, allowHalfOpen: true });
}

/**
 * A TCP connection to `destination`, from `source` (any port; IP_TRANSPARENT)
 * when given, else from the address the route picks. Rejects after
 * `timeoutMs` without a connection.
 */
export function connectMarked(destination: Endpoint, opts: { mark: number; source?: string; timeoutMs: number }): Promise<Socket> {
  const fd = tcpSocket({ mark: opts.mark, ...(opts.source ? { transparent: true, bindTo: { address: opts.source, port: 0 } } : {}) });
  const sock = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => sock.destroy(new SocketError(`failed to connect to ${destination.address}:${destination.port}: timed out`)), opts.timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.removeListener("error", reject);
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.connect({ host: destination.address, port: destination.port });
  });
}
