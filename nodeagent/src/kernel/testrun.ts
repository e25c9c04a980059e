// SPDX-License-Identifier: Apache-2.0
/** BPF_PROG_TEST_RUN: run a loaded program on a crafted packet, no network needed. */
import koffi from "koffi";
import { check } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

export interface TestRunOptions {
  /** Times the kernel runs the program back to back; duration is their average. */
  repeat?: number;
  /** struct __sk_buff (or the program type's context) to start from. */
  ctx?: Uint8Array;
  /** Room for the packet as the program left it. */
  dataOutSize?: number;
}

export interface TestRunResult {
  /** The program's return code, e.g. TC_ACT_OK (0) or TC_ACT_SHOT (2). */
  retval: number;
  /** Average ns per run, as measured by the kernel around the program. */
  durationNs: number;
  dataOut: Uint8Array;
}

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;

export function testRun(progFd: number, data: Uint8Array, options: TestRunOptions = {}): TestRunResult {
  const lib = libbpf();
  const dataOut = new Uint8Array(options.dataOutSize ?? 0);
  const opts = {
    sz: koffi.sizeof(lib.types.testRunOpts),
    data_in: data,
    data_out: dataOut.length ? dataOut : null,
    data_size_in: data.length,
    data_size_out: dataOut.length,
    ctx_in: options.ctx ?? null,
    ctx_out: null,
    ctx_size_in: options.ctx?.length ?? 0,
    ctx_size_out: 0,
    retval: 0,
    repeat: options.repeat ?? 1,
    duration: 0,
    flags: 0,
    cpu: 0,
    batch_size: 0,
  };
  check(lib.progTestRun(progFd, opts), `test-run program fd ${progFd}`);
  return { retval: opts.retval, durationNs: opts.duration, dataOut: dataOut.subarray(0, opts.data_size_out) };
}

