// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's listener, handed to the kernel (bpf/README [R19]): the
 * sk_lookup program gives it every new connection to an L7 frontend from
 * a sockmap slot the agent fills with the socket HAProxy's worker listens
 * on (taken with pidfd_getfd). Taken rather than made by the agent and
 * inherited by HAProxy (`bind fd@N`): the socket then lives exactly as
 * long as HAProxy holds it (a copy in the agent would keep a dead proxy's
 * listener queueing connections nobody accepts, where the kernel must
 * empty the slot and refuse them as proxy-down), and HAProxy binds and
 * reloads as it always does: a reload's new worker receives the same
 * socket from the old one (expose-fd listeners), so the slot stays valid,
 * and the agent checks it after every start and reload.
 */
import { constants } from "@weft/codec";
import { closeFd, socketCookie, takeListener } from "../kernel/index.ts";

/** The sockmap slot (KernelDatapath's, or a test's). */
export interface ListenerSlot {
  setL7Listener(socketFd: number): void;
  l7ListenerCookie(): bigint | null;
}

export const DEFAULT_LISTEN = { address: "127.0.0.1", port: constants.L7_PROXY_PORT } as const;

/**
 * Puts the listener that HAProxy's worker `pid` holds at `listen` in the
 * slot: "kept" when the slot already holds that socket (a reload), else
 * "replaced". Throws when the worker holds no such listener.
 */
export function handOverListener(slot: ListenerSlot, pid: number, listen: { address: string; port: number } = DEFAULT_LISTEN): "kept" | "replaced" {
  const fd = takeListener(pid, listen.address, listen.port);
  try {
    if (slot.l7ListenerCookie() === socketCookie(fd)) return "kept";
    slot.setL7Listener(fd);
    return "replaced";
  } finally {
    closeFd(fd);
  }
}
