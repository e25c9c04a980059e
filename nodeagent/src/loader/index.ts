// SPDX-License-Identifier: Apache-2.0
export { BPFFS_ROOT, ensurePinDir, isBpffs } from "./bpffs.ts";
export { checkLayouts, codecAbi, layoutMismatches, MAP_TYPE_CODES, type Abi } from "./layout.ts";
export { cleanup, KernelDatapath, DEFAULT_OBJECT_DIR, DEFAULT_PIN_DIR, L7_LISTEN_MAP, L7_LISTEN_SHAPE, L7_LOOKUP_PROGRAM, SOCK_PROGRAMS, TC_PROGRAMS, UPLINK_PROGRAM, type AttachResult, type CleanupResult, type LoaderOptions } from "./loader.ts";
