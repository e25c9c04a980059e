// SPDX-License-Identifier: Apache-2.0
/**
 * Workload attestation for the Workload API: which of this node's workloads
 * a caller is, decided from the kernel alone, never from what it sends.
 *
 *   1. SO_PEERCRED on the accepted Unix socket: the pid (and uid, gid) of the
 *      process that connected; SO_PEERPIDFD: a pidfd of that very process.
 *   2. /proc/<pid>/ns/net, opened; then the pidfd must still name a living
 *      process, so the pid was not recycled between connect() and the open.
 *   3. The id the agent's own network namespace gives that namespace
 *      (RTM_GETNSID, the `link-netnsid` of `ip link`); none: no veth of the
 *      node has its peer there, so it is no workload's.
 *   4. A workload W is the caller's when W's host-side veth (the interface the
 *      API names for it, or else the one the node's route to W's address
 *      leaves by) is a veth whose peer lives in exactly that namespace.
 *
 * In SPIRE's terms: the selector `weft:netns` is "the network namespace at the
 * other end of the workload's veth", and a workload is bound to it by its
 * declared addresses (or interface). `unix:uid`/`unix:gid`/`unix:pid` are
 * read and logged but select nothing: Weft's identities name workloads, not
 * users. The host's own namespace and any namespace no workload's veth leads
 * into are no workload. Every call is attested afresh.
 */
import { closeSync, fstatSync, openSync } from "node:fs";
import { netnsId, stillAlive } from "../kernel/peer.ts";
import { listLinks, routeInterface, type Link, type RouteAnswer } from "../agent/veths.ts";

/** A local workload as the attestor needs it. */
export interface AttestableWorkload {
  /** "tenant/workload". */
  key: string;
  addresses: readonly string[];
  /** The host-side interface the API names for it, when it does. */
  interface?: string;
}

export interface Caller {
  pid: number;
  uid: number;
  gid: number;
  pidfd: number | null;
}

export type Attestation =
  | { ok: true; workloads: string[]; netnsInode: number; netnsid: number }
  | { ok: false; reason: string };

export interface AttestorOptions {
  workloads: () => readonly AttestableWorkload[];
  links?: () => Promise<ReadonlyMap<string, Link>>;
  route?: (address: string) => Promise<RouteAnswer>;
  /** How long one interface list serves attestations (ms). */
  linksTtlMs?: number;
}

/** A route lookup serves this long (ms): routes to workloads change rarely, and a veth that goes is noticed at once. */
const ROUTE_TTL_MS = 30_000;

export class Attestor {
  private readonly selfInode: number;
  private linksAt = 0;
  private linksCache: Promise<ReadonlyMap<string, Link>> | null = null;
  /** address -> the interface its route leaves by, and when it was asked. */
  private readonly routes = new Map<string, { at: number; answer: Promise<RouteAnswer> }>();
  private listed = "";

  constructor(private readonly o: AttestorOptions) {
    this.selfInode = fstatInode("/proc/self/ns/net");
  }

  /**
   * Something changed (an SVID, a bundle, the list): when the workloads or
   * their addresses did, the interface list is read again and the routes of
   * addresses no longer listed are forgotten.
   */
  invalidate(): void {
    const workloads = this.o.workloads();
    const listed = JSON.stringify(workloads.map((w) => [w.key, w.addresses, w.interface ?? null]));
    if (listed === this.listed) return;
    this.listed = listed;
    this.linksCache = null;
    const live = new Set(workloads.flatMap((w) => w.addresses));
    for (const a of this.routes.keys()) if (!live.has(a)) this.routes.delete(a);
  }

  async attest(caller: Caller): Promise<Attestation> {
    let nsFd: number;
    try {
      nsFd = openSync(`/proc/${caller.pid}/ns/net`, "r");
    } catch (err) {
      return { ok: false, reason: `the calling process ${caller.pid} is gone (${(err as NodeJS.ErrnoException).code})` };
    }
    let inode: number;
    let nsid: number | null;
    try {
      inode = fstatSync(nsFd).ino;
      // The namespace is read; only now is it known to be the caller's, if the caller still lives.
      if (caller.pidfd !== null && !stillAlive(caller.pidfd)) return { ok: false, reason: `the calling process ${caller.pid} exited` };
      if (inode === this.selfInode) return { ok: false, reason: "the caller is in the node's own network namespace, no workload's" };
      nsid = netnsId(nsFd);
    } finally {
      closeSync(nsFd);
    }
    if (nsid === null) return { ok: false, reason: `no veth of the node leads into the caller's network namespace (inode ${inode})` };
    const links = await this.links();
    // The node's veths into that namespace; usually one. None: no workload's, without a route lookup.
    const into = new Set([...links.values()].filter((l) => l.kind === "veth" && l.peerNetnsid === nsid).map((l) => l.ifname));
    const workloads = into.size === 0 ? [] : this.o.workloads();
    const leads = await Promise.all(workloads.map((w) => this.leadsInto(w, into, links)));
    const matched = workloads.filter((_, i) => leads[i]).map((w) => w.key);
    if (matched.length === 0) return { ok: false, reason: `the caller's network namespace (inode ${inode}, netnsid ${nsid}) is no workload's of this node` };
    return { ok: true, workloads: matched, netnsInode: inode, netnsid: nsid };
  }

  /** Whether the host-side veth of `w` is one of `into` (the node's veths into the caller's namespace). */
  private async leadsInto(w: AttestableWorkload, into: ReadonlySet<string>, links: ReadonlyMap<string, Link>): Promise<boolean> {
    // The API's interface wins, as for the tc programs (src/agent/veths.ts); else the route to each address.
    if (w.interface) return into.has(w.interface);
    const answers = await Promise.all(w.addresses.map((a) => this.routeOf(a, links)));
    return answers.some((r) => r.dev !== null && into.has(r.dev));
  }

  /** The route to `address`, as cached; asked again when old, or when the interface it named is gone. */
  private async routeOf(address: string, links: ReadonlyMap<string, Link>): Promise<RouteAnswer> {
    const ask = () => {
      const r = { at: Date.now(), answer: (this.o.route ?? routeInterface)(address).catch((): RouteAnswer => ({ dev: null, reason: "route lookup failed" })) };
      this.routes.set(address, r);
      return r.answer;
    };
    const cached = this.routes.get(address);
    if (!cached || Date.now() - cached.at > ROUTE_TTL_MS) return ask();
    const answer = await cached.answer;
    return answer.dev === null || !links.has(answer.dev) ? ask() : answer;
  }

  private links(): Promise<ReadonlyMap<string, Link>> {
    const now = Date.now();
    if (!this.linksCache || now - this.linksAt > (this.o.linksTtlMs ?? 1_000)) {
      this.linksAt = now;
      this.linksCache = (this.o.links ?? listLinks)();
      this.linksCache.catch(() => (this.linksCache = null));
    }
    return this.linksCache;
  }
}

function fstatInode(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).ino;
  } finally {
    closeSync(fd);
  }
}
