/**
 * A node namespace for the kernel tests that carry real traffic through the
 * datapath: veths from it to workload namespaces, the agent's loader pinning
 * the maps and attaching inside it, the agent's local-delivery routing for
 * the packets tc hands to a local socket, and a child process stopped for
 * good.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import { constants } from "@weft/codec";
import { KernelDatapath, cleanup as uninstall } from "../../nodeagent/src/loader/index.ts";
import { makePinDir, repoRoot, type Cleanup } from "../support/kernel.ts";

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: "utf8" });

/** A veth `name` from `node` to `ns`: `host`/30 on the node's side, `address`/30 on the other; deleted with the node namespace. */
export function workloadVeth(node: string, ns: string, name: string, host: string, address: string): { host: string; ifindex: number } {
  sh("ip", "-n", node, "link", "add", name, "type", "veth", "peer", "name", `${name}p`, "netns", ns);
  sh("ip", "-n", node, "addr", "add", `${host}/30`, "dev", name);
  sh("ip", "-n", node, "link", "set", name, "up");
  sh("ip", "-n", ns, "addr", "add", `${address}/30`, "dev", `${name}p`);
  sh("ip", "-n", ns, "link", "set", `${name}p`, "up");
  sh("ip", "-n", ns, "link", "set", "lo", "up");
  const [link] = JSON.parse(sh("ip", "-n", node, "-j", "link", "show", "dev", name)) as { ifindex: number }[];
  return { host: name, ifindex: link!.ifindex };
}

/**
 * The agent's loader pins the maps in a private pin directory and attaches,
 * inside `node` (nsenter keeps bpffs in view), the L7 socket lookup to the
 * namespace and the veth programs to `veths`.
 * Returns the datapath whose maps the test writes; closed and unpinned on
 * cleanup.
 */
export function loadInNode(cleanup: Cleanup, label: string, node: string, veths: readonly string[]): KernelDatapath {
  const pinDir = makePinDir(cleanup, label);
  cleanup.add("remove the loader's pins and links", () => void uninstall(pinDir));
  const dp = KernelDatapath.load({ pinDir });
  cleanup.add("close the datapath", () => dp.close());
  const attach = `const { KernelDatapath } = await import(${JSON.stringify(`${repoRoot}nodeagent/src/loader/index.ts`)});
const dp = KernelDatapath.load({ pinDir: ${JSON.stringify(pinDir)} });
dp.attachNetns();
for (const ifname of ${JSON.stringify(veths)}) dp.attachVeth(ifname);
dp.close();`;
  sh("nsenter", `--net=/var/run/netns/${node}`, process.execPath, "--import", "tsx", "--input-type=module", "-e", attach);
  return dp;
}

/** The routing the agent installs in `node` for packets tc marks WEFT_MARK_TO_TRANSPORT (weft_abi.h): delivered to a local socket. */
export function localDeliveryRoute(node: string): void {
  sh("ip", "-n", node, "rule", "add", "priority", String(constants.TRANSPORT_RULE_PRIORITY), "fwmark", `${constants.MARK_TO_TRANSPORT}/${constants.MARK_TO_TRANSPORT}`, "lookup", String(constants.TRANSPORT_TABLE));
  sh("ip", "-n", node, "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", String(constants.TRANSPORT_TABLE));
}

/** Kills `child` and waits for its exit: the kernel has closed its sockets by then. */
export async function stopChild(child: ChildProcess | null | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}
