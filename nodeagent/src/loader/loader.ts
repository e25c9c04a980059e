// SPDX-License-Identifier: Apache-2.0
/**
 * The kernel side of the agent: load the committed BPF objects, pin their
 * maps (reusing pins an earlier agent left, so entries survive a restart),
 * attach the programs through pinned BPF links, and undo all of it.
 *
 * Pin directory layout (default /sys/fs/bpf/weft):
 *   <map name>                         every map of the ABI (mapNames)
 *   links/cgroup-<inode>-<program>     socket-LB programs on a cgroup v2 directory
 *   links/tcx-<ifindex>-<ingress|egress> policy programs on a workload's host-side veth
 *   links/uplink-<ifindex>-ingress     the cross-node fast path on the node's uplink (--uplink)
 *   links/netns-<inode>-<program>      the L7 proxy's socket lookup on the node's network namespace
 *   weft_l7_listen                     the L7 proxy's listener (a sockmap, beside the ABI's maps)
 * Links are tcx, cgroup and netns BPF links, not netlink tc filters: a pinned link
 * keeps its program attached after the agent exits, the next agent swaps in
 * its own program with bpf_link_update (atomic: the hook never runs without
 * one), and removing the pin is all an uninstall needs.
 */
import { existsSync, openSync, closeSync, constants as fsConstants, mkdirSync, readdirSync, rmdirSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { decodeValues, encodeEntries, encodeKey, mapNames, maps as mapSpecs, type FlowCfg, type FlowStats, type MapId, type SockCfg } from "@weft/codec";
import { KernelError } from "../kernel/errors.ts";
import { createLink, detachLink, mapInfo, openPinned, pinObject, updateLink } from "../kernel/links.ts";
import { BpfMap, closeFd } from "../kernel/maps.ts";
import { interfaceIndex, netnsCookie } from "../kernel/netns.ts";
import { BpfObject } from "../kernel/object.ts";
import { ensurePinDir } from "./bpffs.ts";
import { checkLayouts, codecAbi, MAP_TYPE_CODES, type Abi } from "./layout.ts";

export const DEFAULT_PIN_DIR = "/sys/fs/bpf/weft";
export const DEFAULT_OBJECT_DIR = new URL("../../../bpf/dist/", import.meta.url).pathname;

const POLICY_OBJECT = "weft_policy.o";
const SOCK_OBJECT = "weft_sock.o";
/** Socket-LB programs of weft_sock.o; libbpf derives each one's attach type from its SEC(). */
export const SOCK_PROGRAMS = ["weft_connect4", "weft_sendmsg4", "weft_recvmsg4", "weft_getpeername4"] as const;
/** tc programs of weft_policy.o by the veth hook they go on (the host end: its ingress is what the workload sends). */
export const TC_PROGRAMS = { ingress: "weft_from_wl", egress: "weft_to_wl" } as const;
/** The program on the ingress of the node's uplink (bpf/README [R12]): delivers packets for local workloads. */
export const UPLINK_PROGRAM = "weft_from_uplink";
/** The sk_lookup program on the node's network namespace (bpf/README [R19]): gives the L7 proxy's listener its connections. */
export const L7_LOOKUP_PROGRAM = "weft_l7_lookup";
/**
 * The L7 proxy's listener for L7_LOOKUP_PROGRAM (weft_abi.h, WEFT_L7_LISTEN_SLOT): a sockmap, written with a
 * socket's fd and read back as its cookie, so never through the codec; pinned with the ABI's maps.
 */
export const L7_LISTEN_MAP = "weft_l7_listen";
export const L7_LISTEN_SHAPE = { type: 15 /* BPF_MAP_TYPE_SOCKMAP */, keySize: 4, valueSize: 8, maxEntries: 1 } as const;
// enum bpf_attach_type; Debian's libbpf 1.1 headers predate tcx (kernel 6.6), the kernel here has it.
const BPF_TCX_INGRESS = 46;
const BPF_TCX_EGRESS = 47;
const ENOLINK = 67;
const LINKS_DIR = "links";

export interface LoaderOptions {
  pinDir?: string;
  objectDir?: string;
  /** The ABI the objects must match; the codec's unless a test feeds another. */
  abi?: Abi;
}

export interface AttachResult {
  program: string;
  pin: string;
  /** created: a new link; replaced: a pinned link got this process's program (restart or upgrade) */
  action: "created" | "replaced";
}

export interface CleanupResult {
  links: number;
  maps: number;
  /** false when pinDir held files the agent did not make, which are left in place */
  removedDir: boolean;
}

/**
 * The datapath as the kernel holds it for this agent: both BPF objects
 * loaded, every map of the ABI pinned (or reused), the programs' links.
 * The apply engine writes its maps (src/apply); the agent attaches its
 * programs to cgroups and veths.
 */
export class KernelDatapath {
  private closed = false;
  readonly maps: { [M in MapId]: BpfMap };
  /** Counter maps an agent of another ABI had pinned in another shape: replaced by empty ones at load (their counts restart). */
  replacedCounterMaps: string[] = [];
  /** The flow events ring buffer (weft_flow_ring), read with a ring-buffer consumer, not as entries. */
  readonly flowRingFd: number;

  private constructor(
    readonly pinDir: string,
    private readonly policyObj: BpfObject,
    private readonly sockObj: BpfObject,
  ) {
    const byId = {} as { [M in MapId]: BpfMap };
    let ringFd = -1;
    for (const spec of Object.values(mapSpecs)) {
      const obj = policyObj.mapDefinition(spec.name) !== null ? policyObj : sockObj;
      if (spec.id === "flow_ring") {
        ringFd = obj.mapFd(spec.name);
        continue;
      }
      byId[spec.id] = new BpfMap(obj.mapFd(spec.name), { name: spec.name, keySize: spec.keySize, valueSize: spec.valueSize, perCpu: spec.kind === "percpu_array" });
    }
    this.maps = byId;
    this.flowRingFd = ringFd;
  }

  /**
   * Checks the objects against the codec (refusing a mismatch before any map
   * exists), checks pinned maps from an earlier agent against the ABI, then
   * loads both objects with their maps pinned or reused.
   */
  static load(options: LoaderOptions = {}): KernelDatapath {
    const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
    const objectDir = options.objectDir ?? DEFAULT_OBJECT_DIR;
    const abi = options.abi ?? codecAbi;
    const paths = [join(objectDir, POLICY_OBJECT), join(objectDir, SOCK_OBJECT)];

    const opened: BpfObject[] = [];
    try {
      for (const p of paths) opened.push(BpfObject.open(p));
      checkLayouts(opened, abi);
    } finally {
      for (const o of opened) o.close();
    }

    ensurePinDir(pinDir);
    const replaced = checkPinnedMaps(pinDir, abi);
    checkPinnedShape(pinDir, L7_LISTEN_MAP, L7_LISTEN_SHAPE);
    const loadOptions = { pinDir, pinnedMaps: [...Object.values(mapNames), L7_LISTEN_MAP] };
    const policyObj = BpfObject.load(paths[0]!, loadOptions);
    let sockObj: BpfObject;
    try {
      sockObj = BpfObject.load(paths[1]!, loadOptions);
    } catch (err) {
      policyObj.close();
      throw err;
    }
    const datapath = new KernelDatapath(pinDir, policyObj, sockObj);
    datapath.replacedCounterMaps = replaced;
    try {
      const declared = policyObj.mapDefinition(L7_LISTEN_MAP);
      const differs = declared === null ? ["it is missing"] : shapeDifferences(declared, L7_LISTEN_SHAPE);
      if (differs.length > 0) throw new Error(`failed to check map ${L7_LISTEN_MAP} of ${paths[0]}: ${differs.join("; ")}`);
    } catch (err) {
      datapath.close();
      throw err;
    }
    return datapath;
  }

  /**
   * Puts the L7 proxy's listening socket (`socketFd`, this process's
   * descriptor of it) in weft_l7_listen, replacing whatever was there. The
   * map holds the socket, not the descriptor: the caller may close its fd,
   * and the kernel empties the slot when the socket itself closes.
   */
  setL7Listener(socketFd: number): void {
    const key = new Uint8Array(4); // WEFT_L7_LISTEN_SLOT 0
    const value = new Uint8Array(8);
    new DataView(value.buffer).setBigUint64(0, BigInt(socketFd), true);
    this.l7ListenMap().update(key, value);
  }

  /** The cookie (SO_COOKIE) of the socket in weft_l7_listen, or null when the slot is empty. */
  l7ListenerCookie(): bigint | null {
    const value = this.l7ListenMap().lookup(new Uint8Array(4));
    return value ? new DataView(value.buffer).getBigUint64(0, true) : null;
  }

  /**
   * Attaches the L7 proxy's socket lookup (bpf/README [R19]) to this
   * process's network namespace, or gives the pinned link this process's
   * program. Pinned as `netns-<inode>-weft_l7_lookup`.
   */
  attachNetns(netnsPath = "/proc/self/ns/net"): AttachResult {
    const ino = statSync(netnsPath).ino;
    const fd = openSync(netnsPath, fsConstants.O_RDONLY);
    try {
      const attachType = this.policyObj.expectedAttachType(L7_LOOKUP_PROGRAM);
      return this.attachLink(`netns-${ino}-${L7_LOOKUP_PROGRAM}`, L7_LOOKUP_PROGRAM, fd, attachType, `${L7_LOOKUP_PROGRAM} to network namespace ${ino}`);
    } finally {
      closeSync(fd);
    }
  }

  private l7ListenMap(): BpfMap {
    return new BpfMap(this.policyObj.mapFd(L7_LISTEN_MAP), { name: L7_LISTEN_MAP, keySize: L7_LISTEN_SHAPE.keySize, valueSize: L7_LISTEN_SHAPE.valueSize });
  }

  programFd(name: string): number {
    return this.objectOf(name).programFd(name);
  }

  /**
   * Writes the socket LB's one configuration entry (weft_sock_cfg): this
   * process's network namespace is the host's, whose connections are left
   * alone unless lbHostTraffic. Overwrites that entry only (no other map is
   * touched, nothing flushed). Call before attachCgroup: until the entry
   * exists the programs rewrite nothing.
   */
  configureSockLb(lbHostTraffic: boolean, hostNetnsCookie: bigint = netnsCookie()): SockCfg {
    const value: SockCfg = { hostNetnsCookie, lbHostTraffic };
    const { keys, values } = encodeEntries("sock_cfg", [{ key: { index: 0 }, value }]);
    this.maps.sock_cfg.update(keys, values);
    return value;
  }

  /**
   * Writes the flow events' one configuration entry (weft_flow_cfg): rate 0
   * turns events off. Overwrites that entry only; nothing else is touched or
   * flushed, and the token buckets keep their state.
   */
  configureFlows(value: FlowCfg): FlowCfg {
    const { keys, values } = encodeEntries("flow_cfg", [{ key: { index: 0 }, value }]);
    this.maps.flow_cfg.update(keys, values);
    return value;
  }

  /** The flow events' counters (weft_flow_stats), summed over CPUs. */
  flowStats(): Pick<FlowStats, "emitted" | "rateLimited" | "ringFull"> {
    const bytes = this.maps.flow_stats.lookup(encodeKey("flow_stats", { index: 0 }));
    const sum = { emitted: 0n, rateLimited: 0n, ringFull: 0n };
    for (const cpu of bytes ? decodeValues("flow_stats", bytes) : []) {
      sum.emitted += cpu.emitted;
      sum.rateLimited += cpu.rateLimited;
      sum.ringFull += cpu.ringFull;
    }
    return sum;
  }

  /** Attaches the socket-LB programs to a cgroup v2 directory, or gives the pinned links this process's programs. */
  attachCgroup(cgroupPath: string): AttachResult[] {
    const ino = statSync(cgroupPath).ino;
    const results: AttachResult[] = [];
    const fd = openCgroup(cgroupPath);
    try {
      for (const program of SOCK_PROGRAMS) {
        const attachType = this.sockObj.expectedAttachType(program);
        results.push(this.attachLink(`cgroup-${ino}-${program}`, program, fd, attachType, `${program} to cgroup ${cgroupPath}`));
      }
    } finally {
      closeSync(fd);
    }
    return results;
  }

  /**
   * Attaches the policy programs to both directions of a workload's host-side
   * veth: the interface `ifindex` when given (the one the caller found to be
   * the veth), else the one named `ifname` in this network namespace.
   */
  attachVeth(ifname: string, ifindex: number = interfaceIndex(ifname)): AttachResult[] {
    return (["ingress", "egress"] as const).map((hook) =>
      this.attachLink(`tcx-${ifindex}-${hook}`, TC_PROGRAMS[hook], ifindex, hook === "ingress" ? BPF_TCX_INGRESS : BPF_TCX_EGRESS, `${TC_PROGRAMS[hook]} to ${hook} of ${ifname}`),
    );
  }

  /** Detaches the policy programs from a veth (a workload that left the node); returns the links removed. */
  detachVeth(ifname: string): number {
    return this.detachVethIndex(interfaceIndex(ifname));
  }

  /**
   * Same by interface index: a workload's veth is often gone (its namespace
   * deleted) by the time the agent hears it left, and only the pin remains.
   */
  detachVethIndex(ifindex: number): number {
    let removed = 0;
    for (const hook of ["ingress", "egress"] as const) {
      if (removeLinkPin(join(this.pinDir, LINKS_DIR, `tcx-${ifindex}-${hook}`))) removed++;
    }
    return removed;
  }

  /**
   * Puts weft_from_uplink on the ingress of the node's uplink (the device
   * facing the other nodes), and detaches it from any other interface an
   * earlier agent put it on. Pinned as `uplink-<ifindex>-ingress`, apart
   * from the veths' `tcx-` pins, which the veth reconciler owns.
   */
  attachUplink(ifname: string, ifindex: number = interfaceIndex(ifname)): AttachResult {
    this.detachUplinks(ifindex);
    return this.attachLink(`uplink-${ifindex}-ingress`, UPLINK_PROGRAM, ifindex, BPF_TCX_INGRESS, `${UPLINK_PROGRAM} to ingress of ${ifname}`);
  }

  /** Detaches the uplink program from every interface but `keep`; returns the links removed. */
  detachUplinks(keep?: number): number {
    let removed = 0;
    for (const ifindex of this.attachedUplinkIndexes()) {
      if (ifindex !== keep && removeLinkPin(join(this.pinDir, LINKS_DIR, `uplink-${ifindex}-ingress`))) removed++;
    }
    return removed;
  }

  /** Interface indexes with a pinned uplink link. */
  attachedUplinkIndexes(): number[] {
    const dir = join(this.pinDir, LINKS_DIR);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .map((name) => /^uplink-(\d+)-ingress$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  /** Interface indexes with pinned tc links, including those an earlier agent process made. */
  attachedVethIndexes(): number[] {
    const dir = join(this.pinDir, LINKS_DIR);
    if (!existsSync(dir)) return [];
    const out = new Set<number>();
    for (const name of readdirSync(dir)) {
      const m = /^tcx-(\d+)-(ingress|egress)$/.exec(name);
      if (m) out.add(Number(m[1]));
    }
    return [...out].sort((a, b) => a - b);
  }

  /** Drops this process's handles; pinned maps and links stay, as on an agent exit. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.policyObj.close();
    this.sockObj.close();
  }

  private objectOf(program: string): BpfObject {
    return (SOCK_PROGRAMS as readonly string[]).includes(program) ? this.sockObj : this.policyObj;
  }

  private attachLink(pinName: string, program: string, target: number, attachType: number, what: string): AttachResult {
    const dir = join(this.pinDir, LINKS_DIR);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const pin = join(dir, pinName);
    const progFd = this.objectOf(program).programFd(program);
    if (existsSync(pin)) {
      const linkFd = openPinned(pin);
      try {
        updateLink(linkFd, progFd, what);
        return { program, pin, action: "replaced" };
      } catch (err) {
        // ENOLINK: the cgroup or interface went away and the link with it; make a new one.
        if (!(err instanceof KernelError && err.errno === ENOLINK)) throw err;
        unlinkSync(pin);
      } finally {
        closeFd(linkFd);
      }
    }
    const linkFd = createLink(progFd, target, attachType, what);
    try {
      pinObject(linkFd, pin);
    } finally {
      // Pinned, the link lives on; unpinned (pin failed), closing it detaches: nothing leaks.
      closeFd(linkFd);
    }
    return { program, pin, action: "created" };
  }
}

function openCgroup(path: string): number {
  try {
    return openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  } catch (err) {
    throw new Error(`failed to open cgroup ${path}: ${(err as Error).message}`);
  }
}

/**
 * Maps that hold only counts the datapath makes, never state it decides by:
 * an upgrade that grows them (a new hook or reason) may start them afresh,
 * as a restarted exporter's counters do, without changing one verdict.
 */
const COUNTER_MAPS: ReadonlySet<string> = new Set([mapNames.metrics, mapNames.flow_stats]);

/**
 * Pinned maps from an earlier agent must have this ABI's shape, else libbpf
 * would refuse to reuse them with a bare EINVAL. A counter map of another
 * shape is unpinned, so the load makes a new one (the old programs keep
 * theirs until their links get the new programs); any other map is state
 * the datapath decides by, whose loss would flush it: say which and what to
 * do. Answers the counter maps replaced.
 */
function checkPinnedMaps(pinDir: string, abi: Abi): string[] {
  const problems: string[] = [];
  const replaced: string[] = [];
  for (const spec of Object.values(abi.maps)) {
    const pin = join(pinDir, spec.name);
    if (!existsSync(pin)) continue;
    const fd = openPinned(pin);
    let differences: string[];
    try {
      differences = shapeDifferences(mapInfo(fd), { type: MAP_TYPE_CODES[spec.kind], keySize: spec.keySize, valueSize: spec.valueSize, maxEntries: spec.maxEntries });
    } finally {
      closeFd(fd);
    }
    if (differences.length === 0) continue;
    if (COUNTER_MAPS.has(spec.name)) {
      unlinkSync(pin);
      replaced.push(`${spec.name} (${differences.join("; ")})`);
    } else {
      problems.push(...differences.map((d) => `${pin} has ${d}`));
    }
  }
  if (problems.length > 0) {
    throw new Error(`failed to reuse pinned maps: ${problems.join("; ")} (an agent of another ABI pinned them; "agent cleanup" removes them and their entries)`);
  }
  return replaced;
}

type Shape = { type: number; keySize: number; valueSize: number; maxEntries: number };

function shapeDifferences(have: Shape, want: Shape): string[] {
  return (["type", "keySize", "valueSize", "maxEntries"] as const).filter((f) => have[f] !== want[f]).map((f) => `${f} ${have[f]}, this agent needs ${want[f]}`);
}

/** A map outside the ABI's table pinned by an earlier agent must have this agent's shape (libbpf would refuse it with a bare EINVAL). */
function checkPinnedShape(pinDir: string, name: string, want: Shape): void {
  const pin = join(pinDir, name);
  if (!existsSync(pin)) return;
  const fd = openPinned(pin);
  let differs: string[];
  try {
    differs = shapeDifferences(mapInfo(fd), want);
  } finally {
    closeFd(fd);
  }
  if (differs.length > 0) throw new Error(`failed to reuse pinned map ${pin}: ${differs.join("; ")} ("agent cleanup" removes it)`);
}

/** Detaches a pinned link and removes its pin; false when there was none. */
function removeLinkPin(pin: string): boolean {
  if (!existsSync(pin)) return false;
  const fd = openPinned(pin);
  try {
    detachLink(fd, `link ${pin}`);
  } catch (err) {
    // Already detached (its cgroup or interface is gone): the pin is all that is left.
    if (!(err instanceof KernelError && err.errno === ENOLINK)) throw err;
  } finally {
    closeFd(fd);
  }
  unlinkSync(pin);
  return true;
}

/**
 * Uninstall: detaches every pinned link, removes every map pin the agent
 * makes and the directories, leaving alone anything else found there.
 */
export function cleanup(pinDir: string = DEFAULT_PIN_DIR): CleanupResult {
  const result: CleanupResult = { links: 0, maps: 0, removedDir: false };
  if (!existsSync(pinDir)) return { ...result, removedDir: true };
  const links = join(pinDir, LINKS_DIR);
  if (existsSync(links)) {
    for (const name of readdirSync(links)) {
      if (!/^(cgroup|tcx|uplink|netns)-/.test(name)) continue;
      if (removeLinkPin(join(links, name))) result.links++;
    }
    if (readdirSync(links).length === 0) rmdirSync(links);
  }
  for (const name of [...Object.values(mapNames), L7_LISTEN_MAP]) {
    const pin = join(pinDir, name);
    if (!existsSync(pin)) continue;
    unlinkSync(pin);
    result.maps++;
  }
  if (readdirSync(pinDir).length === 0) {
    rmdirSync(pinDir);
    result.removedDir = true;
  }
  return result;
}
