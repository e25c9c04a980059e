// SPDX-License-Identifier: Apache-2.0
import koffi from "koffi";
import { getSystemErrorMap } from "node:util";

/** An error from the kernel or libbpf, with the errno kept for callers that branch on it. */
export class KernelError extends Error {
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
    this.name = "KernelError";
  }
}

export function errnoText(errno: number): string {
  // libbpf's own codes (ENOTSUPP 524 and friends) are not in libc's table.
  const known = getSystemErrorMap().get(-errno);
  return known ? `${known[0]}: ${known[1]}` : `errno ${errno}`;
}

/** "failed to <verb> <thing>: <reason>", from a libbpf return code (-errno). */
export function kernelError(action: string, rc: number): KernelError {
  const errno = Math.abs(rc);
  return new KernelError(`failed to ${action}: ${errnoText(errno)}`, errno);
}

/** Throws for a negative libbpf return code; returns non-negative ones. */
export function check(rc: number, action: string): number {
  if (rc < 0) throw kernelError(action, rc);
  return rc;
}

/** Throws for a NULL pointer from libbpf, using the errno it left. */
export function checkPtr<T>(ptr: T | null, action: string): T {
  if (ptr === null) throw kernelError(action, koffi.errno() || 22);
  return ptr;
}
