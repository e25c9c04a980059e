// SPDX-License-Identifier: Apache-2.0
/**
 * Which host-side veth each local workload sits behind, and keeping the tc
 * programs on exactly those. The endpoint map's keys are the node's workload
 * addresses; the kernel's route to an address names the interface packets
 * to it leave by, which for a workload is its veth (or the API's
 * `interface` field wins when the API lists workloads with one).
 *
 * Only veths are ever guarded: a workload address that routes via a gateway
 * or a physical device (no veth yet, or a typo in `interface`) would
 * otherwise put tc policy on the node's uplink and cut the node off.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { inPodCidr, type PodCidr } from "./pod-cidr.ts";

const run = promisify(execFile);

/** Where the kernel sends packets for an address: a device, or why none of this host's veths. */
export type RouteAnswer = { dev: string } | { dev: null; reason: string };

/**
 * The interface the kernel routes `address` through, asked over netlink
 * (`ip route get`), so in this process's network namespace.
 */
export async function routeInterface(address: string): Promise<RouteAnswer> {
  let stdout: string;
  try {
    ({ stdout } = await run("ip", ["-j", "route", "get", address], { timeout: 5_000 }));
  } catch (err) {
    // "RTNETLINK answers: Network is unreachable": no route, nothing to attach to yet.
    const stderr = String((err as { stderr?: string }).stderr ?? "");
    if (/unreachable|No route/i.test(stderr)) return { dev: null, reason: "no route to it in the agent's network namespace" };
    throw new Error(`failed to look up the route to ${address}: ${stderr.trim() || (err as Error).message}`);
  }
  const routes = JSON.parse(stdout) as { dev?: string; type?: string; gateway?: string }[];
  const route = routes[0];
  // An address of this host routes via lo: not a workload behind a veth.
  if (!route?.dev || route.dev === "lo" || route.type === "local") return { dev: null, reason: "it is an address of the node itself, not behind a veth" };
  // Through a gateway (the default route, say) the address is not behind a local veth.
  if (route.gateway) return { dev: null, reason: `it routes via gateway ${route.gateway} on ${route.dev}, not to a local veth` };
  return { dev: route.dev };
}

/** A network interface of the agent's own network namespace. */
export interface Link {
  ifindex: number;
  ifname: string;
  /** As the kernel names it ("veth", "dummy", "bridge"), or null for a physical device. */
  kind: string | null;
  /** A veth whose other end is in another network namespace (ip shows its link-netnsid). */
  peerInOtherNetns: boolean;
  /** That namespace's id in this one (link-netnsid), when there is one: the Workload API's attestation compares it. */
  peerNetnsid?: number;
}

/**
 * Every interface of this process's network namespace, by name: one
 * `ip -j -d link show` (netlink) per call. Not /sys/class/net, which shows
 * the namespace of whoever mounted /sys: under `nsenter --net` (no remount)
 * that is another namespace, with other interfaces and other indexes.
 */
export async function listLinks(): Promise<Map<string, Link>> {
  let stdout: string;
  try {
    ({ stdout } = await run("ip", ["-j", "-d", "link", "show"], { timeout: 5_000, maxBuffer: 64 * 1024 * 1024 }));
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? "");
    throw new Error(`failed to list the network interfaces: ${stderr.trim() || (err as Error).message}`);
  }
  const out = new Map<string, Link>();
  for (const l of JSON.parse(stdout) as { ifindex?: number; ifname?: string; linkinfo?: { info_kind?: string }; link_netnsid?: number }[]) {
    if (typeof l.ifindex !== "number" || typeof l.ifname !== "string") continue;
    out.set(l.ifname, {
      ifindex: l.ifindex,
      ifname: l.ifname,
      kind: l.linkinfo?.info_kind ?? null,
      peerInOtherNetns: l.link_netnsid !== undefined,
      ...(typeof l.link_netnsid === "number" ? { peerNetnsid: l.link_netnsid } : {}),
    });
  }
  return out;
}

export interface VethTarget {
  /** Attaches to the interface with this index (the one found to be a veth), named ifname in messages and pins' owners. */
  attachVeth(ifname: string, ifindex: number): unknown;
  detachVethIndex(ifindex: number): number;
  attachedVethIndexes(): number[];
}

/** A desired workload address no tc programs guard, and why. */
export interface UnresolvedAddress {
  address: string;
  reason: string;
}

export interface VethSyncResult {
  attached: string[];
  detached: number[];
  /**
   * Every address whose veth was not found in the agent's network namespace,
   * is not a veth, or could not be attached: nothing guards it. The agent
   * reports each (status `unresolved`) and is not ready while any is.
   */
  unresolved: UnresolvedAddress[];
  /** Failures that concern no one address (detaching a veth no workload uses). */
  errors: string[];
  /**
   * False when a lookup failed (the interface list, a route): nothing was
   * detached, and `localVeths` may lack addresses that still sit behind a
   * guarded veth, so the caller keeps the local_veth map as it is.
   */
  complete: boolean;
  /**
   * Addresses outside the node's block of the pod CIDR: their veth keeps its
   * tc programs (policy only restricts), but host routing does not name it
   * for them (not in `localVeths`).
   */
  outsideBlock: string[];
  /**
   * Address -> ifindex of the host-side veth it sits behind, for every veth
   * that carries this process's tc programs and whose peer is in another
   * namespace (host routing delivers to that peer), and, when the node's
   * block is known, whose address lies inside it.
   */
  localVeths: Map<string, number>;
}

/**
 * Keeps tc programs on the veths of the given workload addresses. Veths this
 * process attached are not touched again (re-attaching would only swap in the
 * same program); veths with pins from an earlier process get this process's
 * program once (an upgrade); pins of interfaces no workload uses are removed.
 * Interfaces are looked up over netlink, in this process's namespace: one
 * interface list per sync, one route lookup per address (cached).
 */
export class VethReconciler {
  /** ifindex -> ifname, attached by this process. */
  private readonly mine = new Map<number, string>();
  /**
   * address -> ifname found by route: one `ip route get` per address, not per
   * apply (a node with 100 workloads would spawn 100 processes on every
   * change); looked up again only when that interface is gone.
   */
  private readonly routed = new Map<string, string>();

  constructor(
    private readonly target: VethTarget,
    private readonly resolve: (address: string) => Promise<RouteAnswer> = routeInterface,
    private readonly links: () => Promise<ReadonlyMap<string, Link>> = listLinks,
  ) {}

  /**
   * `podCidr`: the node's block; an address outside it gets no host-routing
   * entry (listed in `outsideBlock`). null: the block is unknown (an API that
   * assigns none), every address behind a guarded veth gets one.
   */
  async sync(addresses: readonly string[], interfaces: ReadonlyMap<string, string> = new Map(), podCidr: PodCidr | null = null): Promise<VethSyncResult> {
    const result: VethSyncResult = { attached: [], detached: [], unresolved: [], errors: [], complete: true, outsideBlock: [], localVeths: new Map() };
    // Another node's address (a wrong or compromised desired state): its veth, if any, is still guarded,
    // but host routing never redirects traffic for it here.
    const outside = new Set(podCidr === null ? [] : addresses.filter((a) => !inPodCidr(podCidr, a)));
    result.outsideBlock.push(...outside);
    let links: ReadonlyMap<string, Link>;
    try {
      links = await this.links();
    } catch (err) {
      result.complete = false;
      for (const address of addresses) result.unresolved.push({ address, reason: (err as Error).message });
      return result;
    }
    /** ifindex -> the veth and the addresses behind it. */
    const wanted = new Map<number, { ifname: string; addresses: string[] }>();
    const behind = new Map<string, number>();
    for (const address of addresses) {
      const named = interfaces.get(address);
      let ifname = named ?? this.routed.get(address) ?? null;
      let link = ifname === null ? undefined : links.get(ifname);
      // The API's interface wins when it exists here; else the route says.
      const missing = named !== undefined && !link ? `interface ${named} (named by the API) is not in the agent's network namespace; ` : "";
      if (!link) {
        let route: RouteAnswer;
        try {
          route = await this.resolve(address);
        } catch (err) {
          result.complete = false;
          result.unresolved.push({ address, reason: `${missing}${(err as Error).message}` });
          continue;
        }
        if (route.dev === null) {
          this.routed.delete(address);
          result.unresolved.push({ address, reason: `${missing}${route.reason}` });
          continue;
        }
        this.routed.set(address, route.dev);
        ifname = route.dev;
        link = links.get(ifname);
        if (!link) {
          result.unresolved.push({ address, reason: `${missing}it routes via ${ifname}, which is not in the agent's network namespace's interface list` });
          continue;
        }
      }
      if (link.kind !== "veth") {
        result.unresolved.push({ address, reason: `${missing}it is behind ${link.ifname} (${link.kind ?? "no link kind"}), not a veth: no tc programs attached` });
        continue;
      }
      const veth = wanted.get(link.ifindex) ?? { ifname: link.ifname, addresses: [] };
      veth.addresses.push(address);
      wanted.set(link.ifindex, veth);
      // bpf_redirect_peer drops a packet for a peer in this namespace: such an address stays with the host's routing.
      // So does an address outside the node's block.
      if (link.peerInOtherNetns && !outside.has(address)) behind.set(address, link.ifindex);
    }
    for (const [ifindex, { ifname, addresses: behindIt }] of wanted) {
      if (this.mine.get(ifindex) === ifname) continue;
      try {
        this.target.attachVeth(ifname, ifindex);
        this.mine.set(ifindex, ifname);
        result.attached.push(ifname);
      } catch (err) {
        for (const address of behindIt) result.unresolved.push({ address, reason: `failed to attach tc programs to ${ifname}: ${(err as Error).message}` });
      }
    }
    for (const [address, ifindex] of behind) if (this.mine.has(ifindex)) result.localVeths.set(address, ifindex);
    const live = new Set(addresses);
    for (const address of this.routed.keys()) if (!live.has(address)) this.routed.delete(address);
    // A failed lookup must not detach a veth that is still in use: only detach when every lookup answered.
    if (!result.complete) return result;
    for (const ifindex of new Set([...this.target.attachedVethIndexes(), ...this.mine.keys()])) {
      if (wanted.has(ifindex)) continue;
      try {
        this.target.detachVethIndex(ifindex);
        this.mine.delete(ifindex);
        result.detached.push(ifindex);
      } catch (err) {
        result.errors.push(`failed to detach tc programs from ifindex ${ifindex}: ${(err as Error).message}`);
      }
    }
    return result;
  }

  attachedNames(): string[] {
    return [...this.mine.values()].sort();
  }
}
