// SPDX-License-Identifier: Apache-2.0
/**
 * Attaching programs: cgroup sock_addr hooks through BPF links (the link dies
 * with its fd, so a crashed test or agent cannot leave a hook behind unless
 * it was pinned), and tc clsact hooks on an interface.
 */
import { closeSync, constants, openSync } from "node:fs";
import koffi from "koffi";
import { check, checkPtr } from "./errors.ts";
import type { BpfObject } from "./object.ts";
import { libbpf } from "./libbpf.ts";

export interface Attachment {
  detach(): void;
}

/** Attaches a cgroup/* program of obj to the cgroup v2 directory at path. */
export function attachCgroup(obj: BpfObject, program: string, cgroupPath: string): Attachment {
  const lib = libbpf();
  const prog = obj.programPtr(program);
  const cgroupFd = openSync(cgroupPath, constants.O_RDONLY | constants.O_DIRECTORY);
  let link: unknown;
  try {
    link = checkPtr(lib.attachCgroup(prog, cgroupFd), `attach ${program} to cgroup ${cgroupPath}`);
  } finally {
    closeSync(cgroupFd); // the link holds its own reference
  }
  let attached = true;
  return {
    detach() {
      if (!attached) return;
      attached = false;
      check(lib.linkDestroy(link), `detach ${program} from cgroup ${cgroupPath}`);
    },
  };
}

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const EEXIST = 17;

function tcHook(ifindex: number, attachPoint: number) {
  return { sz: koffi.sizeof(libbpf().types.tcHook), ifindex, attach_point: attachPoint, parent: 0 };
}

/**
 * Attaches a tc program to an interface's clsact ingress or egress hook,
 * creating the clsact qdisc if needed. detach removes only this filter.
 */
export function attachTc(progFd: number, ifindex: number, hook: "ingress" | "egress"): Attachment {
  const lib = libbpf();
  const where = `${hook} of ifindex ${ifindex}`;
  const h = tcHook(ifindex, hook === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS);
  const rc = lib.tcHookCreate(h);
  if (rc !== -EEXIST) check(rc, `create clsact hook on ${where}`);
  const opts = { sz: koffi.sizeof(lib.types.tcOpts), prog_fd: progFd, flags: 0, prog_id: 0, handle: 0, priority: 0 };
  check(lib.tcAttach(h, opts), `attach tc program to ${where}`);
  let attached = true;
  return {
    detach() {
      if (!attached) return;
      attached = false;
      const target = { sz: opts.sz, prog_fd: 0, flags: 0, prog_id: 0, handle: opts.handle, priority: opts.priority };
      check(lib.tcDetach(h, target), `detach tc program from ${where}`);
    },
  };
}

/** Removes the clsact qdisc of an interface, and with it every tc program on it. */
export function destroyTcHooks(ifindex: number): void {
  check(libbpf().tcHookDestroy(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)), `remove clsact from ifindex ${ifindex}`);
}
