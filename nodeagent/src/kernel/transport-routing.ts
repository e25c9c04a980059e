// SPDX-License-Identifier: Apache-2.0
/**
 * The policy routing that brings steered packets to the node's transport
 * (issue #18) and to its L7 proxy (issue 21, the listener on
 * 127.0.0.1:L7_PROXY_PORT): tc marks them MARK_TO_TRANSPORT, and in the
 * node's namespace
 *
 *   ip rule add priority TRANSPORT_RULE_PRIORITY fwmark MARK/MARK lookup TRANSPORT_TABLE
 *   ip route replace local 0.0.0.0/0 dev lo table TRANSPORT_TABLE
 *
 * delivers every marked packet to this host's stack, whatever its
 * destination, where bpf_sk_assign hands it to the transport's (or the
 * proxy's) socket. The runtime installs it when either runs.
 * Installed with `ip` (iproute2), idempotently: the rule is added only when
 * absent, the route replaced.
 *
 * Never removed, not even on a clean shutdown: fail closed needs it. With
 * the rule gone, a steered packet would be routed by the main table, out to
 * the fabric in plaintext; with it, it still goes to the local stack, finds
 * no transport socket, and is dropped (transport-down) until one is back.
 */
import { execFileSync } from "node:child_process";
import { constants } from "@weft/codec";

/** Runs `ip` with these arguments and answers its stdout (throws on failure). The default runs it in this namespace. */
export type IpRunner = (args: string[]) => string;

export const runIp: IpRunner = (args) => execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

const hex = (n: number) => `0x${n.toString(16)}`;

interface RuleRow {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
}

/** Whether the transport's rule is installed. */
export function transportRuleInstalled(ip: IpRunner = runIp): boolean {
  const rules = JSON.parse(ip(["-j", "-4", "rule", "show", "priority", String(constants.TRANSPORT_RULE_PRIORITY)]) || "[]") as RuleRow[];
  return rules.some(
    (r) =>
      r.priority === constants.TRANSPORT_RULE_PRIORITY &&
      Number(r.fwmark) === constants.MARK_TO_TRANSPORT &&
      Number(r.fwmask) === constants.MARK_TO_TRANSPORT &&
      r.table === String(constants.TRANSPORT_TABLE),
  );
}

/** Installs the rule (when absent) and the route (replaced); answers whether the rule had to be added. */
export function installTransportRouting(ip: IpRunner = runIp): { ruleAdded: boolean } {
  const mark = hex(constants.MARK_TO_TRANSPORT);
  const table = String(constants.TRANSPORT_TABLE);
  let ruleAdded = false;
  try {
    if (!transportRuleInstalled(ip)) {
      ip(["-4", "rule", "add", "priority", String(constants.TRANSPORT_RULE_PRIORITY), "fwmark", `${mark}/${mark}`, "lookup", table]);
      ruleAdded = true;
    }
    ip(["-4", "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", table]);
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? "").trim();
    throw new Error(`failed to install the transport's policy routing: ${stderr || (err as Error).message}`);
  }
  return { ruleAdded };
}
