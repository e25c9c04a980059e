// SPDX-License-Identifier: Apache-2.0
/**
 * Connecting to a local workload FROM the original source's address, so the
 * workload and its tc policy see the real peer (issue #18, point 5). Node
 * has no IP_TRANSPARENT, so the socket is made through libc (koffi):
 * socket(SOCK_NONBLOCK) -> setsockopt(IP_TRANSPARENT) -> bind(source, any
 * port) -> connect(); the wait for the connection runs poll() on koffi's
 * worker thread, SO_ERROR says how it went, and the connected descriptor is
 * handed to net.Socket. IP_TRANSPARENT needs CAP_NET_ADMIN; a source
 * address that is not local also needs the kernel part's policy routing
 * (replies to it must come back to this host's stack), which the datapath
 * sets up, not this module.
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
const SO_ERROR = 4;
const EINPROGRESS = 115;
const POLLOUT = 4;

interface Libc {
  socket: (domain: number, type: number, protocol: number) => number;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, len: number) => number;
  getsockopt: (fd: number, level: number, name: number, value: Buffer, len: number[]) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  connect: (fd: number, addr: Buffer, len: number) => number;
  close: (fd: number) => number;
  strerror: (errnum: number) => string;
  poll: { async: (fds: Buffer, n: number, timeoutMs: number, cb: (err: unknown, res: number) => void) => void };
}

let libc: Libc | null = null;
function load(): Libc {
  if (libc) return libc;
  const c = koffi.load("libc.so.6");
  libc = {
    socket: c.func("int socket(int domain, int type, int protocol)"),
    setsockopt: c.func("int setsockopt(int fd, int level, int name, const uint8_t *value, uint32_t len)"),
    getsockopt: c.func("int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *len)"),
    bind: c.func("int bind(int fd, const uint8_t *addr, uint32_t len)"),
    connect: c.func("int connect(int fd, const uint8_t *addr, uint32_t len)"),
    close: c.func("int close(int fd)"),
    strerror: c.func("const char *strerror(int errnum)"),
    poll: c.func("int poll(_Inout_ uint8_t *fds, unsigned long n, int timeout)") as unknown as Libc["poll"],
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

export class TransparentError extends Error {}

function fail(c: Libc, fd: number, what: string, errno: number): never {
  c.close(fd);
  throw new TransparentError(`failed to ${what}: ${c.strerror(errno)}`);
}

/** A TCP connection from `source` (any port) to `destination`, made with IP_TRANSPARENT. */
export async function connectTransparent(source: string, destination: Endpoint, timeoutMs: number): Promise<Socket> {
  const c = load();
  const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new TransparentError(`failed to create a socket: ${c.strerror(koffi.errno())}`);
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  if (c.setsockopt(fd, SOL_IP, IP_TRANSPARENT, one, 4) !== 0) fail(c, fd, "set IP_TRANSPARENT", koffi.errno());
  if (c.bind(fd, sockaddrIn(source, 0), 16) !== 0) fail(c, fd, `bind ${source}`, koffi.errno());
  if (c.connect(fd, sockaddrIn(destination.address, destination.port), 16) !== 0) {
    const errno = koffi.errno();
    if (errno !== EINPROGRESS) fail(c, fd, `connect to ${destination.address}:${destination.port}`, errno);
    const pollfd = Buffer.alloc(8);
    pollfd.writeInt32LE(fd, 0);
    pollfd.writeInt16LE(POLLOUT, 4);
    const ready = await new Promise<number>((resolve, reject) => c.poll.async(pollfd, 1, timeoutMs, (err, res) => (err ? reject(err) : resolve(res))));
    if (ready === 0) fail(c, fd, `connect to ${destination.address}:${destination.port}`, 110 /* ETIMEDOUT */);
    const value = Buffer.alloc(4);
    c.getsockopt(fd, SOL_SOCKET, SO_ERROR, value, [4]);
    const soError = value.readInt32LE();
    if (soError !== 0) fail(c, fd, `connect to ${destination.address}:${destination.port}`, soError);
  }
  return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
}
