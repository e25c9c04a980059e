// SPDX-License-Identifier: Apache-2.0
/**
 * The node's L7 proxy as the runtime starts it: the driver when --l7 is on
 * and an haproxy binary is there, else an account of why it is off (the
 * status report's l7 {state: "off", detail}); the kernel then drops
 * connections to L7 services as proxy-down, never around the proxy.
 */
import { accessSync, constants as fs } from "node:fs";
import { delimiter, join } from "node:path";
import type { L7Status } from "../agent/client.ts";

export { L7Driver, type L7DriverOptions } from "./driver.ts";
export { accessEvents } from "./flows.ts";
export { handOverListener, type ListenerSlot } from "./listener.ts";
export { installProxyAddress } from "./proxy-address.ts";
export { ProxyTraces, spanOfRecord } from "./traces.ts";

const executable = (path: string) => {
  try {
    accessSync(path, fs.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** The haproxy binary: `given` when it is executable, else the first `haproxy` on PATH; or why there is none. */
export function findHaproxy(given: string | undefined, path = process.env.PATH ?? ""): { binary: string } | { missing: string } {
  if (given) return executable(given) ? { binary: given } : { missing: `--haproxy ${given} is not an executable file` };
  for (const dir of path.split(delimiter).filter(Boolean)) {
    const candidate = join(dir, "haproxy");
    if (executable(candidate)) return { binary: candidate };
  }
  return { missing: "no haproxy on the PATH (install HAProxy 2.6+, or name it with --haproxy)" };
}

/** The L7 proxy the agent does not run: off, and why. */
export class L7Off {
  readonly errors: readonly string[] = [];
  constructor(private readonly detail: string) {}
  status(): L7Status {
    return { state: "off", detail: this.detail };
  }
  refresh(): Promise<boolean> {
    return Promise.resolve(false);
  }
}
