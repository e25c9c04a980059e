// SPDX-License-Identifier: Apache-2.0
/**
 * Another process's listening socket, taken into this one: the L7 proxy's
 * listener, which the sk_lookup program hands connections to from a
 * sockmap the agent writes by fd (bpf/README [R19]). pidfd_getfd gives this
 * process a descriptor of the very socket the other holds (no new socket,
 * nothing rebound); the caller puts it in the map and closes it, so the
 * socket lives exactly as long as the process that made it.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import koffi from "koffi";
import { kernelError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

const AF_INET = 2;
const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const SO_COOKIE = 57;
const TCP_LISTEN = "0A"; // /proc/net/tcp's st column

/** /proc/net/tcp's spelling of an IPv4 address and port: the address's 32 bits in host (little-endian) order, hex. */
function procTcpAddress(address: string, port: number): string {
  const octets = address.split(".").map(Number);
  const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, "0");
  return `${[...octets].reverse().map((o) => hex(o, 2)).join("")}:${hex(port, 4)}`;
}

/** Inodes of the TCP listeners bound to address:port in `pid`'s network namespace. */
function listenerInodes(pid: number, address: string, port: number): Set<string> {
  const want = procTcpAddress(address, port);
  const inodes = new Set<string>();
  for (const line of readFileSync(`/proc/${pid}/net/tcp`, "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === want && f[3] === TCP_LISTEN && f[9] !== undefined) inodes.add(f[9]);
  }
  return inodes;
}

/** The socket's local IPv4 address and port, and whether it listens. */
function describe(fd: number): { address: string; port: number; listening: boolean } {
  const lib = libbpf();
  const sa = new Uint8Array(16);
  const saLen = [sa.length];
  if ((lib.getsockname(fd, sa, saLen) as number) < 0) throw kernelError("read the taken socket's address", -(koffi.errno() || 22));
  const v = new DataView(sa.buffer);
  const opt = new Uint8Array(4);
  const optLen = [4];
  if ((lib.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, opt, optLen) as number) < 0) throw kernelError("read SO_ACCEPTCONN of the taken socket", -(koffi.errno() || 22));
  if (v.getUint16(0, true) !== AF_INET) return { address: "", port: 0, listening: false };
  return { address: [...sa.subarray(4, 8)].join("."), port: v.getUint16(2, false), listening: new DataView(opt.buffer).getUint32(0, true) === 1 };
}

/**
 * A descriptor in this process of the TCP socket that process `pid` listens
 * on at address:port. Throws when it holds none. The caller closes it.
 */
export function takeListener(pid: number, address: string, port: number): number {
  const lib = libbpf();
  const inodes = listenerInodes(pid, address, port);
  let target = -1;
  for (const name of inodes.size ? readdirSync(`/proc/${pid}/fd`) : []) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(m[1]!)) {
      target = Number(name);
      break;
    }
  }
  if (target < 0) throw new Error(`failed to find the listener at ${address}:${port} in process ${pid}: it holds none`);
  const pidfd = lib.pidfdOpen(pid, 0) as number;
  if (pidfd < 0) throw kernelError(`open a pidfd of process ${pid}`, -(koffi.errno() || 3));
  let fd: number;
  try {
    fd = lib.pidfdGetfd(pidfd, target, 0) as number;
    if (fd < 0) throw kernelError(`take descriptor ${target} of process ${pid}`, -(koffi.errno() || 9));
  } finally {
    lib.close(pidfd);
  }
  try {
    // The descriptor number may have been closed and reused between the look and the take.
    const got = describe(fd);
    if (!got.listening || got.address !== address || got.port !== port) {
      throw new Error(`failed to take the listener at ${address}:${port} from process ${pid}: descriptor ${target} is now ${got.listening ? "a listener" : "a socket"} at ${got.address}:${got.port}`);
    }
    return fd;
  } catch (err) {
    lib.close(fd);
    throw err;
  }
}

/** The socket's cookie (SO_COOKIE): what a sockmap lookup answers for it. */
export function socketCookie(fd: number): bigint {
  const value = new Uint8Array(8);
  const len = [8];
  if ((libbpf().getsockopt(fd, SOL_SOCKET, SO_COOKIE, value, len) as number) < 0) throw kernelError("read SO_COOKIE", -(koffi.errno() || 22));
  return new DataView(value.buffer).getBigUint64(0, true);
}
