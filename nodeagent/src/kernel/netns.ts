// SPDX-License-Identifier: Apache-2.0
/**
 * The cookie of this process's network namespace: the value
 * bpf_get_netns_cookie() returns for a socket there. The socket LB compares
 * it with each socket's (bpf/README, socket LB and host traffic). And an
 * interface's index as this namespace numbers it.
 */
import koffi from "koffi";
import { kernelError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71; // Linux 5.14

/** SO_NETNS_COOKIE of a throwaway socket; throws when the kernel has no such option. */
export function netnsCookie(): bigint {
  const lib = libbpf();
  const fd = lib.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw kernelError("open a socket to read the network namespace cookie", -(koffi.errno() || 22));
  try {
    const value = new Uint8Array(8);
    const len = [8];
    const rc = lib.getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, value, len) as number;
    if (rc < 0) throw kernelError("read SO_NETNS_COOKIE (kernel 5.14 or newer)", -(koffi.errno() || 22));
    if (len[0] !== 8) throw new Error(`failed to read SO_NETNS_COOKIE: ${len[0]} bytes, expected 8`);
    return new DataView(value.buffer).getBigUint64(0, true);
  } finally {
    lib.close(fd);
  }
}

/**
 * The index of interface `ifname` in this process's network namespace
 * (if_nametoindex: an ioctl on a socket opened here). /sys/class/net would
 * answer for the namespace /sys was mounted in, which under `nsenter --net`
 * is another one.
 */
export function interfaceIndex(ifname: string): number {
  const ifindex = libbpf().ifNameToIndex(ifname) as number;
  if (ifindex === 0) throw kernelError(`find interface ${ifname} in this network namespace`, -(koffi.errno() || 19));
  return ifindex;
}
