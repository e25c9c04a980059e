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
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { inPodCidr, type PodCidr } from "./pod-cidr.ts";

const run = promisify(execFile);

/** The interface the kernel routes `address` through, or null when the route is local or absent. */
export async function routeInterface(address: string): Promise<string | null> {
  let stdout: string;
  try {
    ({ stdout } = await run("ip", ["-j", "route", "get", address], { timeout: 5_000 }));
  } catch (err) {
    // "RTNETLINK answers: Network is unreachable": no route, nothing to attach to yet.
    const stderr = String((err as { stderr?: string }).stderr ?? "");
    if (/unreachable|No route/i.test(stderr)) return null;
    throw new Error(`failed to look up the route to ${address}: ${stderr.trim() || (err as Error).message}`);
  }
  const routes = JSON.parse(stdout) as { dev?: string; type?: string; gateway?: string }[];
  const route = routes[0];
  // An address of this host routes via lo: not a workload behind a veth.
  if (!route?.dev || route.dev === "lo" || route.type === "local") return null;
  // Through a gateway (the default route, say) the address is not behind a local veth.
  if (route.gateway) return null;
  return route.dev;
}

export interface LinkKind {
  /** As the kernel names it ("veth", "dummy", "bridge"), or null for a physical device. */
  kind: string | null;
  /** A veth whose other end is in another network namespace (ip shows its link-netnsid). */
  peerInOtherNetns: boolean;
}

export async function linkKind(ifname: string): Promise<LinkKind> {
  const { stdout } = await run("ip", ["-j", "-d", "link", "show", "dev", ifname], { timeout: 5_000 });
  const [link] = JSON.parse(stdout) as { linkinfo?: { info_kind?: string }; link_netnsid?: number }[];
  return { kind: link?.linkinfo?.info_kind ?? null, peerInOtherNetns: link?.link_netnsid !== undefined };
}

export function ifindexOf(ifname: string): number | null {
  const path = `/sys/class/net/${ifname}/ifindex`;
  if (!existsSync(path)) return null;
  return Number(readFileSync(path, "utf8").trim());
}

export interface VethTarget {
  attachVeth(ifname: string): unknown;
  detachVethIndex(ifindex: number): number;
  attachedVethIndexes(): number[];
}

export interface VethSyncResult {
  attached: string[];
  detached: number[];
  unresolved: string[];
  /** Addresses whose interface is not a veth, with the reason; nothing was attached for them. */
  refused: string[];
  errors: string[];
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
    private readonly resolve: (address: string) => Promise<string | null> = routeInterface,
    private readonly kindOf: (ifname: string) => Promise<LinkKind> = linkKind,
  ) {}

  /** "ifindex/ifname" -> what that link is: one `ip link` per link, not per apply. */
  private readonly links = new Map<string, LinkKind>();

  private async linkOf(ifindex: number, ifname: string): Promise<LinkKind> {
    const key = `${ifindex}/${ifname}`;
    let known = this.links.get(key);
    if (known === undefined) {
      known = await this.kindOf(ifname);
      this.links.set(key, known);
    }
    return known;
  }

  /**
   * `podCidr`: the node's block; an address outside it gets no host-routing
   * entry (listed in `outsideBlock`). null: the block is unknown (an API that
   * assigns none), every address behind a guarded veth gets one.
   */
  async sync(addresses: readonly string[], interfaces: ReadonlyMap<string, string> = new Map(), podCidr: PodCidr | null = null): Promise<VethSyncResult> {
    const result: VethSyncResult = { attached: [], detached: [], unresolved: [], refused: [], errors: [], outsideBlock: [], localVeths: new Map() };
    const wanted = new Map<number, string>();
    const behind = new Map<string, number>();
    for (const address of addresses) {
      // Another node's address (a wrong or compromised desired state): its veth, if any, is still guarded,
      // but host routing never redirects traffic for it here.
      const outside = podCidr !== null && !inPodCidr(podCidr, address);
      if (outside) result.outsideBlock.push(address);
      try {
        let ifname = interfaces.get(address) ?? this.routed.get(address) ?? null;
        if (ifname === null || ifindexOf(ifname) === null) {
          ifname = await this.resolve(address);
          if (ifname === null) this.routed.delete(address);
          else this.routed.set(address, ifname);
        }
        const ifindex = ifname === null ? null : ifindexOf(ifname);
        if (ifname === null || ifindex === null) {
          result.unresolved.push(address);
          continue;
        }
        const link = await this.linkOf(ifindex, ifname);
        if (link.kind !== "veth") {
          result.refused.push(`${address} is behind ${ifname}, which is not a veth: no tc programs attached`);
          continue;
        }
        wanted.set(ifindex, ifname);
        // bpf_redirect_peer drops a packet for a peer in this namespace: such an address stays with the host's routing.
        // So does an address outside the node's block.
        if (link.peerInOtherNetns && !outside) behind.set(address, ifindex);
      } catch (err) {
        result.errors.push((err as Error).message);
      }
    }
    for (const [ifindex, ifname] of wanted) {
      if (this.mine.get(ifindex) === ifname) continue;
      try {
        this.target.attachVeth(ifname);
        this.mine.set(ifindex, ifname);
        result.attached.push(ifname);
      } catch (err) {
        result.errors.push((err as Error).message);
      }
    }
    for (const [address, ifindex] of behind) if (this.mine.has(ifindex)) result.localVeths.set(address, ifindex);
    const live = new Set(addresses);
    for (const address of this.routed.keys()) if (!live.has(address)) this.routed.delete(address);
    // A failed lookup must not detach a veth that is still in use: only detach when every address resolved.
    if (result.errors.length > 0) return result;
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
