// SPDX-License-Identifier: Apache-2.0
/**
 * The node's proxy address (the L7 document's proxyAddress: the first
 * address of the node's pod block) on `lo` as a /32: the proxy connects to
 * backends from it, and every node's ipcache names it identity proxy.
 * A changed address replaces the one the agent put there before (kept in
 * the state directory across restarts); no other address is touched.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isIPv4 } from "node:net";
import { runIp, type IpRunner } from "../kernel/transport-routing.ts";

const FILE = "l7-proxy-address";

function held(stateDir: string): string | null {
  try {
    const a = readFileSync(join(stateDir, FILE), "utf8").trim();
    return isIPv4(a) ? a : null;
  } catch {
    return null;
  }
}

/** Puts `address`/32 on lo (idempotent), removing the agent's earlier one when it differs; answers what was removed. */
export function installProxyAddress(address: string, stateDir: string, ip: IpRunner = runIp): { removed: string | null } {
  if (!isIPv4(address) || address === "0.0.0.0") throw new Error(`failed to put the proxy address on lo: ${JSON.stringify(address)} is not a host address`);
  const before = held(stateDir);
  try {
    ip(["-4", "addr", "replace", `${address}/32`, "dev", "lo", "scope", "global"]);
  } catch (err) {
    throw new Error(`failed to put the proxy address ${address}/32 on lo: ${String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim()}`);
  }
  writeFileSync(join(stateDir, FILE), `${address}\n`, { mode: 0o600 });
  if (!before || before === address) return { removed: null };
  try {
    ip(["-4", "addr", "del", `${before}/32`, "dev", "lo"]);
  } catch {
    // Already gone (removed by hand, a reboot): nothing left to replace.
  }
  return { removed: before };
}
