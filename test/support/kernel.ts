/**
 * Helpers for tests that touch the kernel: whether they can run here, bpffs,
 * test cgroups, and a cleanup stack that undoes everything a test made even
 * when it fails half-way.
 */
import { execFileSync } from "node:child_process";
import { accessSync, existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LIBBPF_PATH } from "../../nodeagent/src/kernel/libbpf.ts";

export const BPFFS = "/sys/fs/bpf";
export const CGROUP2_ROOT = "/sys/fs/cgroup/unified";
const BPF_FS_MAGIC = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC = 0x63677270;

export const repoRoot = new URL("../../", import.meta.url).pathname;
export const objectPath = (name: string): string => join(repoRoot, "bpf/dist", `${name}.o`);

/** Why kernel tests cannot run here, or null when they can. */
export function kernelUnavailableReason(): string | null {
  if (process.platform !== "linux") return `platform is ${process.platform}, not linux`;
  if (process.getuid?.() !== 0) return "not running as root (bpf() needs CAP_BPF and CAP_NET_ADMIN)";
  try {
    accessSync(LIBBPF_PATH);
  } catch {
    return `libbpf not found at ${LIBBPF_PATH} (apt-get install libbpf1)`;
  }
  for (const o of ["weft_policy", "weft_sock"]) {
    if (!existsSync(objectPath(o))) return `${objectPath(o)} missing (npm run build:abi)`;
  }
  return null;
}

/** Why cgroup socket tests cannot run here, or null. */
export function cgroupUnavailableReason(): string | null {
  const kernel = kernelUnavailableReason();
  if (kernel !== null) return kernel;
  try {
    if (statfsSync(CGROUP2_ROOT).type !== CGROUP2_SUPER_MAGIC) return `${CGROUP2_ROOT} is not a cgroup2 mount`;
  } catch {
    return `${CGROUP2_ROOT} does not exist`;
  }
  return null;
}

/**
 * cgroupUnavailableReason, then each tool answering its version probe
 * (`["ip", "-V"]`, `["bpftool", "version"]`...): the prerequisites of a
 * suite that runs real agents and traffic in namespaces.
 */
export function toolsUnavailableReason(tools: readonly (readonly [string, string])[]): string | null {
  const r = cgroupUnavailableReason();
  if (r !== null) return r;
  for (const [cmd, arg] of tools) {
    try {
      execFileSync(cmd, [arg], { stdio: "ignore" });
    } catch {
      return `${cmd} not installed (${cmd === "ip" ? "iproute2" : cmd})`;
    }
  }
  return null;
}

/** Runs undo steps in reverse order; every step runs even when one throws. */
export class Cleanup {
  private steps: { what: string; undo: () => void | Promise<void> }[] = [];

  add(what: string, undo: () => void | Promise<void>): void {
    this.steps.push({ what, undo });
  }

  async run(): Promise<void> {
    const errors: string[] = [];
    for (const { what, undo } of this.steps.reverse()) {
      try {
        await undo();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    }
    this.steps = [];
    if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
  }
}

function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Mounts bpffs at /sys/fs/bpf when it is not, and registers the unmount. */
export function ensureBpffs(cleanup: Cleanup): void {
  if (isBpffs(BPFFS)) return;
  execFileSync("mount", ["-t", "bpf", "bpf", BPFFS]);
  cleanup.add(`unmount ${BPFFS}`, () => void execFileSync("umount", [BPFFS]));
}

/** A private pin directory on bpffs, removed with whatever was pinned in it. */
export function makePinDir(cleanup: Cleanup, label: string): string {
  ensureBpffs(cleanup);
  const dir = join(BPFFS, `weft-test-${process.pid}-${label}`);
  mkdirSync(dir, { recursive: true });
  cleanup.add(`remove pin dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A fresh cgroup v2 directory for this test, never the hierarchy's root.
 * Removal first moves any process still inside back to the root.
 */
export function makeCgroup(cleanup: Cleanup, label: string): string {
  const dir = join(CGROUP2_ROOT, `weft-test-${process.pid}-${label}`);
  mkdirSync(dir);
  cleanup.add(`remove cgroup ${dir}`, () => removeCgroup(dir));
  return dir;
}

/** Removes a cgroup we made, first moving any process still inside back to the root (a cgroup with members cannot go). */
export function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) {
    try {
      writeFileSync(join(CGROUP2_ROOT, "cgroup.procs"), pid);
    } catch {
      // exited in the meantime
    }
  }
  rmdirSync(dir);
}

const ip = (...args: string[]): string => execFileSync("ip", args, { encoding: "utf8" });

/** A network namespace for this test, deleted on cleanup. */
export function makeNetns(cleanup: Cleanup, label: string): string {
  const name = `weft-${process.pid}-${label}`;
  ip("netns", "add", name);
  cleanup.add(`delete netns ${name}`, () => void ip("netns", "del", name));
  return name;
}

export interface VethPair {
  host: string;
  hostIfindex: number;
}

/**
 * A veth pair: `host` stays in this namespace with hostAddress, the peer
 * moves into netns with nsAddress (both CIDR), like a workload's veth.
 * Deleting the host end on cleanup removes the peer and any tc hooks too.
 */
export function makeVeth(cleanup: Cleanup, label: string, netns: string, hostAddress: string, nsAddress: string): VethPair {
  const host = `wh${process.pid % 100000}${label}`.slice(0, 15);
  const peer = `wp${process.pid % 100000}${label}`.slice(0, 15);
  ip("link", "add", host, "type", "veth", "peer", "name", peer);
  cleanup.add(`delete veth ${host}`, () => {
    if (existsSync(`/sys/class/net/${host}`)) ip("link", "del", host);
  });
  ip("link", "set", peer, "netns", netns);
  ip("addr", "add", hostAddress, "dev", host);
  ip("link", "set", host, "up");
  ip("-n", netns, "addr", "add", nsAddress, "dev", peer);
  ip("-n", netns, "link", "set", peer, "up");
  ip("-n", netns, "link", "set", "lo", "up");
  return { host, hostIfindex: Number(readFileSync(`/sys/class/net/${host}/ifindex`, "utf8").trim()) };
}
