// SPDX-License-Identifier: Apache-2.0
/**
 * Run by test/agent/netns-resolve.test.ts inside a network namespace (under
 * `nsenter --net`, which leaves /sys alone, or `ip netns exec`, which
 * remounts it): the reconciler's lookups, the loader's if_nametoindex, and,
 * as the counter-example, what /sys/class/net says. Prints one JSON line.
 *
 * argv[2]: {"addresses": [...], "names": [...]}
 */
import { existsSync, readFileSync } from "node:fs";
import { interfaceIndex } from "../../nodeagent/src/kernel/netns.ts";
import { VethReconciler } from "../../nodeagent/src/agent/veths.ts";

const { addresses, names } = JSON.parse(process.argv[2]!) as { addresses: string[]; names: string[] };

/** The lookup the agent used before: /sys shows the namespace /sys was mounted in, not necessarily this process's. */
const sysIfindex = (ifname: string): number | null => (existsSync(`/sys/class/net/${ifname}/ifindex`) ? Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, "utf8").trim()) : null);

const attached: { ifname: string; ifindex: number }[] = [];
const result = await new VethReconciler({
  attachVeth: (ifname, ifindex) => void attached.push({ ifname, ifindex }),
  detachVethIndex: () => 0,
  attachedVethIndexes: () => [],
}).sync(addresses);

process.stdout.write(
  `${JSON.stringify({
    attached,
    unresolved: result.unresolved,
    localVeths: Object.fromEntries(result.localVeths),
    sys: Object.fromEntries(names.map((n) => [n, sysIfindex(n)])),
    ifNameToIndex: Object.fromEntries(names.map((n) => [n, interfaceIndex(n)])),
  })}\n`,
);
