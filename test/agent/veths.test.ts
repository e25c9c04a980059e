/**
 * The agent guards veths only: a workload address that routes via a gateway
 * or a device of another kind must never get tc programs, or a missing veth
 * would put policy on the node's uplink.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePodCidr } from "../../nodeagent/src/agent/pod-cidr.ts";
import { ifindexOf, routeInterface, VethReconciler, type VethTarget } from "../../nodeagent/src/agent/veths.ts";
import { Cleanup, kernelUnavailableReason, makeNetns } from "../support/kernel.ts";
import { skipWithout } from "../support/prerequisites.ts";

const skip = skipWithout("root and iproute2", kernelUnavailableReason());
const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });

/** Records what the reconciler asks of the kernel instead of loading programs. */
class RecordingTarget implements VethTarget {
  readonly attached = new Map<number, string>();
  attachVeth(ifname: string): void {
    this.attached.set(ifindexOf(ifname)!, ifname);
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
    expect(await routeInterface("198.18.240.7")).toBe("wvt-host");
    expect(await routeInterface("198.18.242.7")).toBeNull();
  });

  it("attaches to the veth and refuses a bridge, a gateway route and a declared non-veth", async () => {
    const target = new RecordingTarget();
    const reconciler = new VethReconciler(target);
    const result = await reconciler.sync(["198.18.240.7", "198.18.241.7", "198.18.242.7", "198.18.240.8"], new Map([["198.18.240.8", "lo"]]));
    expect(result.errors).toEqual([]);
    expect(result.attached).toEqual(["wvt-host"]);
    expect([...target.attached.values()]).toEqual(["wvt-host"]);
    expect(result.unresolved).toEqual(["198.18.242.7"]);
    expect(result.refused).toHaveLength(2);
    expect(result.refused.join("\n")).toMatch(/198\.18\.241\.7 is behind wvt-br, which is not a veth/);
    expect(result.refused.join("\n")).toMatch(/198\.18\.240\.8 is behind lo, which is not a veth/);
    // Host routing names only the guarded veth, for the address behind it.
    expect(Object.fromEntries(result.localVeths)).toEqual({ "198.18.240.7": ifindexOf("wvt-host") });
  });

  it("names no veth for an address outside the node's pod CIDR block, though its veth stays guarded", async () => {
    const target = new RecordingTarget();
    // The node's block is the lower half of 198.18.240.0/24: .200 sits behind the same veth, but is another node's address.
    const result = await new VethReconciler(target).sync(["198.18.240.7", "198.18.240.200"], new Map(), parsePodCidr("198.18.240.0/25"));
    expect(result.errors).toEqual([]);
    expect(result.attached).toEqual(["wvt-host"]);
    expect(result.outsideBlock).toEqual(["198.18.240.200"]);
    expect(Object.fromEntries(result.localVeths)).toEqual({ "198.18.240.7": ifindexOf("wvt-host") });
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
    expect(result.detached).toEqual([ifindexOf("wvt-host")]);
    expect(result.localVeths.size).toBe(0);
    expect(target.attached.size).toBe(0);
  });
});
