// SPDX-License-Identifier: Apache-2.0
/** The pin directory: on a bpf filesystem, mounted at /sys/fs/bpf when nothing is. */
import { existsSync, mkdirSync, statfsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { kernelError } from "../kernel/errors.ts";
import { libbpf } from "../kernel/libbpf.ts";
import koffi from "koffi";

export const BPFFS_ROOT = "/sys/fs/bpf";
const BPF_FS_MAGIC = 0xcafe4a11;

export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

export interface PinDirResult {
  /** true when this call mounted bpffs at /sys/fs/bpf */
  mounted: boolean;
}

/**
 * Makes pinDir exist on a bpf filesystem. When its nearest existing ancestor
 * is /sys/fs/bpf without bpffs on it (a host that never mounted it), mounts
 * bpffs there, as systemd does at boot on most distributions; any other
 * location must already be on bpffs, since pins elsewhere would fail.
 */
export function ensurePinDir(pinDir: string): PinDirResult {
  const dir = resolve(pinDir);
  let existing = dir;
  while (!existsSync(existing)) existing = dirname(existing);
  let mounted = false;
  if (!isBpffs(existing)) {
    if (existing !== BPFFS_ROOT) {
      throw new Error(`failed to prepare pin directory ${dir}: ${existing} is not on a bpf filesystem (mount -t bpf bpf ${existing}, or pick a directory under ${BPFFS_ROOT})`);
    }
    const rc = libbpf().mount("bpf", BPFFS_ROOT, "bpf", 0, null);
    if (rc !== 0) throw kernelError(`mount bpffs at ${BPFFS_ROOT}`, -(koffi.errno() || 1));
    mounted = true;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!isBpffs(dir)) throw new Error(`failed to prepare pin directory ${dir}: it is not on a bpf filesystem`);
  return { mounted };
}
