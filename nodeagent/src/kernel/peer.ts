// SPDX-License-Identifier: Apache-2.0
/**
 * Who is at the other end of a Unix socket, from the kernel: SO_PEERCRED
 * (the pid, uid and gid of the process that called connect()) and, where the
 * kernel has it (6.5+), SO_PEERPIDFD, a pidfd of that same process. The
 * pidfd closes the pid-reuse race: after reading /proc/<pid>/..., the pid
 * still names the connecting process exactly when that pidfd's process is
 * alive (stillAlive). And netnsId: the id this process's network namespace
 * gives another namespace (the `link-netnsid` that `ip link` shows on a veth
 * whose peer is there). The Workload API's attestation uses all three
 * (src/workload-api/attestor.ts).
 */
import koffi from "koffi";
import { kernelError } from "./errors.ts";

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERPIDFD = 77;
const SYS_PIDFD_SEND_SIGNAL = 424; // the same number on every architecture (the unified syscall table)
const ENOPROTOOPT = 92;

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
  /** A pidfd of the peer process (close it with closePidfd), or null when the kernel has no SO_PEERPIDFD. */
  pidfd: number | null;
}

let bound: ReturnType<typeof bind> | null = null;
function bind() {
  const libc = koffi.load("libc.so.6");
  return {
    getsockopt: libc.func("int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *len)"),
    syscall: libc.func("long syscall(long number, ...)"),
    close: libc.func("int close(int fd)"),
    socket: libc.func("int socket(int domain, int type, int protocol)"),
    send: libc.func("long send(int fd, const uint8_t *buf, size_t len, int flags)"),
    recv: libc.func("long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)"),
  };
}
const lib = () => (bound ??= bind());

/** The peer of the connected Unix socket `fd`. */
export function peerCred(fd: number): PeerCred {
  const ucred = new Uint8Array(12);
  const len = [12];
  if ((lib().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ucred, len) as number) < 0) throw kernelError("read SO_PEERCRED", -(koffi.errno() || 22));
  if (len[0] !== 12) throw new Error(`failed to read SO_PEERCRED: ${len[0]} bytes, expected 12`);
  const view = new DataView(ucred.buffer);
  const pidfdBuf = new Uint8Array(4);
  const pidfdLen = [4];
  let pidfd: number | null = null;
  if ((lib().getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, pidfdBuf, pidfdLen) as number) === 0) {
    pidfd = new DataView(pidfdBuf.buffer).getInt32(0, true);
  } else if (koffi.errno() !== ENOPROTOOPT) {
    throw kernelError("read SO_PEERPIDFD", -(koffi.errno() || 22));
  }
  return { pid: view.getInt32(0, true), uid: view.getUint32(4, true), gid: view.getUint32(8, true), pidfd };
}

/** Whether the process of `pidfd` is alive (pidfd_send_signal with signal 0). */
export function stillAlive(pidfd: number): boolean {
  return Number(lib().syscall(SYS_PIDFD_SEND_SIGNAL, "int", pidfd, "int", 0, "void *", null, "unsigned int", 0)) === 0;
}

export function closePidfd(pidfd: number): void {
  lib().close(pidfd);
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const NLMSG_ERROR = 2;
const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
const NLM_F_REQUEST = 1;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;

/**
 * The id this process's network namespace has for the namespace open at
 * `nsFd` (RTM_GETNSID with NETNSA_FD over rtnetlink, as `ip netns list-id`
 * asks), or null when it has none: no veth or other link of this namespace
 * has its peer there.
 */
export function netnsId(nsFd: number): number | null {
  const fd = lib().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) as number;
  if (fd < 0) throw kernelError("open an rtnetlink socket", -(koffi.errno() || 22));
  try {
    // nlmsghdr (16) + rtgenmsg (1, padded to 4) + nlattr NETNSA_FD (4 + u32).
    const req = new Uint8Array(28);
    const v = new DataView(req.buffer);
    v.setUint32(0, 28, true);
    v.setUint16(4, RTM_GETNSID, true);
    v.setUint16(6, NLM_F_REQUEST, true);
    v.setUint32(8, 1, true);
    v.setUint16(20, 8, true);
    v.setUint16(22, NETNSA_FD, true);
    v.setUint32(24, nsFd, true);
    if (Number(lib().send(fd, req, 28, 0)) !== 28) throw kernelError("send RTM_GETNSID", -(koffi.errno() || 22));
    const res = new Uint8Array(4096);
    const n = Number(lib().recv(fd, res, res.length, 0));
    if (n < 16) throw kernelError("read the answer to RTM_GETNSID", -(koffi.errno() || 22));
    const r = new DataView(res.buffer, 0, n);
    const type = r.getUint16(4, true);
    if (type === NLMSG_ERROR) throw kernelError("ask the id of a network namespace (RTM_GETNSID)", r.getInt32(16, true));
    if (type !== RTM_NEWNSID) throw new Error(`failed to ask the id of a network namespace: answer of type ${type}`);
    for (let at = 20; at + 4 <= Math.min(n, r.getUint32(0, true)); ) {
      const len = r.getUint16(at, true);
      if (len < 4) break;
      if (r.getUint16(at + 2, true) === NETNSA_NSID && len >= 8) {
        const id = r.getInt32(at + 4, true);
        return id < 0 ? null : id;
      }
      at += (len + 3) & ~3;
    }
    return null;
  } finally {
    lib().close(fd);
  }
}
