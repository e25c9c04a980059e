/**
 * The agent guards veths only: a workload address that routes via a gateway
 * or a device of another kind must never get tc programs, or a missing veth
 * would put policy on the node's uplink.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePodCidr } from "../../nodeagent/src/agent/pod-cidr.ts";
import { listLinks, routeInterface, VethReconciler, type VethTarget } from "../../nodeagent/src/agent/veths.ts";
import { Cleanup, kernelUnavailableReason, makeNetns } from "../support/kernel.ts";
import { skipWithout } from "../support/prerequisites.ts";

const skip = skipWithout("root and iproute2", kernelUnavailableReason());
const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
const ifindexOf = async (ifname: string) => (await listLinks()).get(ifname)!.ifindex;

/** Records what the reconciler asks of the kernel instead of loading programs. */
class RecordingTarget implements VethTarget {
  readonly attached = new Map<number, string>();
  attachVeth(ifname: string, ifindex: number): void {
    this.attached.set(ifindex, ifname);
  }
  detachVethIndex(ifindex: number): number {
    this.attached.delete(ifindex);
    return 1;
  }
  attachedVethIndexes(): number[] {
    return [...this.attached.keys()];
  }
}

describe.skipIf(skip)("veth reconciler", () => {
  const cleanup = new Cleanup();
  // 198.18.240.0/24 sits behind a veth whose peer is in a namespace (a
  // workload's), 198.18.241.0/24 behind a bridge, 198.18.242.0/24 behind a
  // gateway reached over the veth, 198.18.243.0/24 behind a veth whose peer
  // stayed in this namespace.
  beforeAll(() => {
    const ns = makeNetns(cleanup, "vt");
    ip("link", "add", "wvt-host", "type", "veth", "peer", "name", "wvt-peer");
    cleanup.add("veth wvt-host", () => void ip("link", "del", "wvt-host"));
    ip("link", "set", "wvt-peer", "netns", ns);
    ip("-n", ns, "link", "set", "wvt-peer", "up");
    ip("link", "add", "wvt-same", "type", "veth", "peer", "name", "wvt-same-p");
    cleanup.add("veth wvt-same", () => void ip("link", "del", "wvt-same"));
    ip("link", "add", "wvt-br", "type", "bridge");
    cleanup.add("bridge wvt-br", () => void ip("link", "del", "wvt-br"));
    for (const dev of ["wvt-host", "wvt-same", "wvt-same-p", "wvt-br"]) ip("link", "set", dev, "up");
    ip("route", "add", "198.18.240.0/24", "dev", "wvt-host");
    ip("route", "add", "198.18.241.0/24", "dev", "wvt-br");
    ip("route", "add", "198.18.242.0/24", "via", "198.18.240.1", "dev", "wvt-host");
    ip("route", "add", "198.18.243.0/24", "dev", "wvt-same");
  });
  afterAll(() => cleanup.run());

  it("finds the device of a directly routed address and none through a gateway", async () => {
    expect(await routeInterface("198.18.240.7")).toEqual({ dev: "wvt-host" });
    expect(await routeInterface("198.18.242.7")).toEqual({ dev: null, reason: "it routes via gateway 198.18.240.1 on wvt-host, not to a local veth" });
  });

  it("attaches to the veth and reports a bridge, a gateway route, a declared non-veth and a missing interface as unresolved", async () => {
    const target = new RecordingTarget();
    const reconciler = new VethReconciler(target);
    const result = await reconciler.sync(
      ["198.18.240.7", "198.18.241.7", "198.18.242.7", "198.18.240.8", "198.18.240.9", "198.18.245.1"],
      new Map([
        ["198.18.240.8", "lo"],
        // An interface the API names that does not exist here: the route decides.
        ["198.18.240.9", "wvt-nowhere"],
      ]),
    );
    expect(result.errors).toEqual([]);
    expect(result.complete).toBe(true);
    expect(result.attached).toEqual(["wvt-host"]);
    expect(Object.fromEntries(target.attached)).toEqual({ [await ifindexOf("wvt-host")]: "wvt-host" });
    expect(result.unresolved).toEqual([
      { address: "198.18.241.7", reason: "it is behind wvt-br (bridge), not a veth: no tc programs attached" },
      { address: "198.18.242.7", reason: "it routes via gateway 198.18.240.1 on wvt-host, not to a local veth" },
      { address: "198.18.240.8", reason: "it is behind lo (no link kind), not a veth: no tc programs attached" },
      // 198.18.245.0/24 routes nowhere here but via the default route, if any.
      { address: "198.18.245.1", reason: expect.stringMatching(/^(no route to it in the agent's network namespace|it routes via gateway .* not to a local veth)$/) },
    ]);
    // Host routing names only the guarded veth, for the addresses behind it.
    expect(Object.fromEntries(result.localVeths)).toEqual({ "198.18.240.7": await ifindexOf("wvt-host"), "198.18.240.9": await ifindexOf("wvt-host") });
  });

  it("reports an attach that fails as unresolved, for every address behind that veth", async () => {
    const failing: VethTarget = {
      attachVeth: () => {
        throw new Error("EPERM");
      },
      detachVethIndex: () => 0,
      attachedVethIndexes: () => [],
    };
    const result = await new VethReconciler(failing).sync(["198.18.240.7", "198.18.240.8"]);
    expect(result.unresolved).toEqual([
      { address: "198.18.240.7", reason: "failed to attach tc programs to wvt-host: EPERM" },
      { address: "198.18.240.8", reason: "failed to attach tc programs to wvt-host: EPERM" },
    ]);
    expect(result.localVeths.size).toBe(0);
  });

  it("names no veth for an address outside the node's pod CIDR block, though its veth stays guarded", async () => {
    const target = new RecordingTarget();
    // The node's block is the lower half of 198.18.240.0/24: .200 sits behind the same veth, but is another node's address.
    const result = await new VethReconciler(target).sync(["198.18.240.7", "198.18.240.200"], new Map(), parsePodCidr("198.18.240.0/25"));
    expect(result.errors).toEqual([]);
    expect(result.attached).toEqual(["wvt-host"]);
    expect(result.outsideBlock).toEqual(["198.18.240.200"]);
    expect(Object.fromEntries(result.localVeths)).toEqual({ "198.18.240.7": await ifindexOf("wvt-host") });
    // Without a block (an API that assigns none): both, as before.
    const unknown = await new VethReconciler(new RecordingTarget()).sync(["198.18.240.7", "198.18.240.200"]);
    expect(unknown.outsideBlock).toEqual([]);
    expect([...unknown.localVeths.keys()].sort()).toEqual(["198.18.240.200", "198.18.240.7"]);
  });

  it("guards a veth whose peer stayed in this namespace but leaves its addresses to the host's routing", async () => {
    const target = new RecordingTarget();
    const result = await new VethReconciler(target).sync(["198.18.243.7"]);
    expect(result.attached).toEqual(["wvt-same"]);
    // bpf_redirect_peer would drop what it delivers to a peer in the same namespace.
    expect(result.localVeths.size).toBe(0);
  });

  it("detaches once no workload address sits behind the veth", async () => {
    const target = new RecordingTarget();
    const reconciler = new VethReconciler(target);
    await reconciler.sync(["198.18.240.7"]);
    expect([...target.attached.values()]).toEqual(["wvt-host"]);
    const result = await reconciler.sync(["198.18.241.7"]);
    expect(result.detached).toEqual([await ifindexOf("wvt-host")]);
    expect(result.localVeths.size).toBe(0);
    expect(target.attached.size).toBe(0);
  });
});
