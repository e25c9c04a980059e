// SPDX-License-Identifier: Apache-2.0
/**
 * The agent finds workload veths in its own network namespace. Run under
 * `nsenter --net=/var/run/netns/X` (how an agent is often started in a
 * node's namespace), /sys/class/net still shows the namespace /sys was
 * mounted in: the agent's earlier /sys lookup then found no veth (every
 * workload "unresolved", in silence) or, worse, another interface's index
 * under the same name. The netlink lookups (`ip -j -d link show`,
 * `ip route get`, if_nametoindex) answer for the caller's namespace.
 *
 * Namespace X holds two veths whose peers sit in a workload namespace;
 * the test's own namespace holds a bridge named like the second one.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cleanup, kernelUnavailableReason, makeNetns } from "../support/kernel.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";

const skip = skipWithout("root, iproute2 and nsenter", kernelUnavailableReason() ?? commandUnavailableReason("nsenter", ["--version"], "apt-get install util-linux"));
const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8", stdio: "pipe" });
const child = new URL("./resolve-in-netns.ts", import.meta.url).pathname;

interface ChildAnswer {
  attached: { ifname: string; ifindex: number }[];
  unresolved: { address: string; reason: string }[];
  localVeths: Record<string, number>;
  sys: Record<string, number | null>;
  ifNameToIndex: Record<string, number>;
}

describe.skipIf(skip)("interfaces are resolved in the agent's own network namespace", () => {
  const cleanup = new Cleanup();
  const tag = process.pid % 100000;
  // Only in the agent's namespace; and one whose name the test's namespace also holds (a bridge).
  const only = `wra${tag}`;
  const twin = `wrb${tag}`;
  const A = "198.18.246.7";
  const B = "198.18.247.7";
  let agentNs = "";
  /** ifindex of each veth as the agent's namespace numbers them, and of the test namespace's twin. */
  let truth: Record<string, number> = {};
  let twinHere = 0;

  beforeAll(() => {
    agentNs = makeNetns(cleanup, "ra");
    const workloadNs = makeNetns(cleanup, "rw");
    // The veths go with the agent's namespace; the bridge needs its own undo.
    for (const [name, address] of [
      [only, A],
      [twin, B],
    ] as const) {
      ip("-n", agentNs, "link", "add", name, "type", "veth", "peer", "name", `${name}p`, "netns", workloadNs);
      ip("-n", agentNs, "link", "set", name, "up");
      ip("-n", workloadNs, "link", "set", `${name}p`, "up");
      ip("-n", agentNs, "route", "add", `${address}/32`, "dev", name);
    }
    ip("link", "add", twin, "type", "bridge");
    cleanup.add(`delete bridge ${twin}`, () => void ip("link", "del", twin));
    const links = JSON.parse(ip("-n", agentNs, "-j", "link", "show")) as { ifname: string; ifindex: number }[];
    truth = Object.fromEntries(links.filter((l) => l.ifname === only || l.ifname === twin).map((l) => [l.ifname, l.ifindex]));
    twinHere = (JSON.parse(ip("-j", "link", "show", "dev", twin)) as { ifindex: number }[])[0]!.ifindex;
  });
  afterAll(() => cleanup.run());

  const runIn = (how: string[]): ChildAnswer =>
    JSON.parse(execFileSync(how[0]!, [...how.slice(1), process.execPath, "--import", "tsx", child, JSON.stringify({ addresses: [A, B], names: [only, twin] })], { encoding: "utf8", timeout: 30_000 })) as ChildAnswer;

  const expectRight = (r: ChildAnswer): void => {
    expect(r.unresolved).toEqual([]);
    expect(r.attached).toEqual([
      { ifname: only, ifindex: truth[only] },
      { ifname: twin, ifindex: truth[twin] },
    ]);
    expect(r.localVeths).toEqual({ [A]: truth[only], [B]: truth[twin] });
    expect(r.ifNameToIndex).toEqual(truth);
  };

  it("under nsenter --net (/sys not remounted): /sys answers for another namespace, netlink for the agent's", () => {
    // The precondition of the counter-example: the twin's index here differs from the veth's there.
    expect(twinHere).not.toBe(truth[twin]);
    const r = runIn(["nsenter", `--net=/var/run/netns/${agentNs}`, "--"]);
    // What the /sys lookup saw: no such interface (every workload unresolved), or the test namespace's bridge.
    expect(r.sys).toEqual({ [only]: null, [twin]: twinHere });
    expectRight(r);
  });

  it("under ip netns exec (/sys remounted) both agree, and the netlink lookups answer the same", () => {
    const r = runIn(["ip", "netns", "exec", agentNs]);
    expect(r.sys).toEqual(truth);
    expectRight(r);
  });
});
