/**
 * Kernel objects for benchmarks, every one named wbench-<pid>-… (veths
 * wbh…/wbp…) so runs never collide with tests or each other, and every one
 * registered on a BenchCleanup as it is made: network namespaces (processes
 * still inside are killed before the namespace goes), veth pairs with
 * addresses from 198.18.0.0/15, per-interface forwarding, test cgroups under
 * the cgroup v2 mount (never its root), private pin directories on bpffs.
 * Namespaces get routes to the bench's own subnets only, never a default
 * route.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanup as uninstallPins, ensurePinDir, BPFFS_ROOT } from "../../nodeagent/src/loader/index.ts";
import { CGROUP2_ROOT, removeCgroup } from "../../test/support/kernel.ts";
import type { BenchCleanup } from "./cleanup.ts";

export { CGROUP2_ROOT };
export const PREFIX = "wbench";
const tag = process.pid % 10000;

const ip = (...args: string[]): string => execFileSync("ip", args, { encoding: "utf8" });

/** Several `ip` commands in one process (ip -batch): 100 veths in one spawn instead of 600. */
export function ipBatch(lines: string[], ns?: string): void {
  if (lines.length) execFileSync("ip", [...(ns ? ["-n", ns] : []), "-batch", "-"], { input: `${lines.join("\n")}\n`, encoding: "utf8" });
}

/** Kills whatever still runs inside `ns` (our own servers and clients), then deletes it. */
function deleteNetns(name: string): void {
  let pids: string[] = [];
  try {
    pids = ip("netns", "pids", name).split("\n").filter(Boolean);
  } catch {
    // already gone
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  if (ip("netns", "list").split("\n").some((l) => l.split(" ")[0] === name)) ip("netns", "del", name);
}

/** A network namespace <prefix>-<pid>-<label> (prefix: wbench) with lo up, deleted on cleanup. */
export function makeNetns(cleanup: BenchCleanup, label: string, prefix = PREFIX): string {
  const name = `${prefix}-${process.pid}-${label}`;
  ip("netns", "add", name);
  cleanup.track("netns", name);
  cleanup.add(`delete netns ${name}`, () => deleteNetns(name));
  ip("-n", name, "link", "set", "lo", "up");
  return name;
}

export interface Veth {
  /** host-side name (root namespace) */
  host: string;
  peer: string;
  hostIfindex: number;
}

export const vethNames = (label: string) => ({ host: `wbh${tag}${label}`.slice(0, 15), peer: `wbp${tag}${label}`.slice(0, 15) });

/**
 * A veth pair whose host end stays in the root namespace with `hostCidr` and
 * forwards (this interface only; the host's global setting is untouched), and
 * whose peer goes into `ns` with `nsCidr`. Deleting the host end on cleanup
 * removes the peer too.
 */
export function makeVeth(cleanup: BenchCleanup, label: string, ns: string, hostCidr: string, nsCidr: string): Veth {
  const { host, peer } = vethNames(label);
  ip("link", "add", host, "type", "veth", "peer", "name", peer);
  cleanup.track("veths", host);
  cleanup.add(`delete veth ${host}`, () => void (existsSync(`/sys/class/net/${host}`) && ip("link", "del", host)));
  ipBatch([`link set ${peer} netns ${ns}`, `addr add ${hostCidr} dev ${host}`, `link set ${host} up`]);
  ipBatch([`addr add ${nsCidr} dev ${peer}`, `link set ${peer} up`], ns);
  setForwarding(host);
  return { host, peer, hostIfindex: ifindex(host) };
}

export function setForwarding(ifname: string): void {
  writeFileSync(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, "1");
}

export function ifindex(ifname: string): number {
  return Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, "utf8").trim());
}

/** A route inside `ns` (to the bench's own 198.18 subnets; never a default route). */
export function addRoute(ns: string, cidr: string, via: string): void {
  if (!cidr.startsWith("198.18.") && !cidr.startsWith("198.19.")) throw new Error(`refusing a route to ${cidr}: benches route 198.18.0.0/15 only`);
  ip("-n", ns, "route", "add", cidr, "via", via);
}

/** A fresh cgroup v2 directory (never the root); processes still in it go back to the root before it is removed. */
export function makeCgroup(cleanup: BenchCleanup, label: string): string {
  const dir = join(CGROUP2_ROOT, `${PREFIX}-${process.pid}-${label}`);
  mkdirSync(dir);
  cleanup.track("cgroups", dir);
  cleanup.add(`remove cgroup ${dir}`, () => removeCgroup(dir));
  return dir;
}

/**
 * A private pin directory on bpffs (mounting bpffs for the run if needed).
 * Cleanup detaches every link pinned there and removes every pin, as the
 * agent's own `cleanup` command does, then the directory.
 */
export function makePinDir(cleanup: BenchCleanup, label: string): string {
  const dir = join(BPFFS_ROOT, `${PREFIX}-${process.pid}-${label}`);
  const { mounted } = ensurePinDir(dir);
  cleanup.track("pinDirs", dir);
  // Other runs may pin there meanwhile (bpffs is one instance per mount): unmount only when nothing is left.
  if (mounted) cleanup.add(`unmount ${BPFFS_ROOT}`, () => void (readdirSync(BPFFS_ROOT).length === 0 && execFileSync("umount", [BPFFS_ROOT])));
  cleanup.add(`remove pin dir ${dir}`, () => {
    if (!existsSync(dir)) return;
    uninstallPins(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** argv prefix that runs a command inside `cgroup` (when given) and network namespace `ns`: the cgroup first, since `ip netns exec` hides /sys/fs/cgroup. */
export function inNetns(ns: string, cgroup?: string): string[] {
  const enter = ["ip", "netns", "exec", ns];
  if (!cgroup) return enter;
  return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, ...enter];
}

export interface Daemon {
  child: ChildProcess;
  pid: number;
  output(): string;
  stop(): Promise<void>;
}

/**
 * A long-running process (a server, a proxy, the agent) stopped on cleanup:
 * SIGTERM, then SIGKILL after 3 s. Resolves once `ready(output)` is true
 * (polled every 50 ms, `readyMs` at most, 20 s by default) or at once without it.
 */
export async function startDaemon(
  cleanup: BenchCleanup,
  what: string,
  argv: string[],
  opts: {
    ready?: (output: string) => boolean | Promise<boolean>;
    /** How long `ready` may take (20 s). */
    readyMs?: number;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    /** Every line of stdout and stderr, as it comes, with the time it was read (performance.now()). */
    onLine?: (line: string, at: number) => void;
  } = {},
): Promise<Daemon> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: opts.env ?? process.env, cwd: opts.cwd });
  if (child.pid !== undefined) cleanup.trackPid(child.pid);
  let out = "";
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = "";
    stream.on("data", (d: Buffer) => {
      const text = String(d);
      out = (out + text).slice(-64_000);
      if (!opts.onLine) return;
      const at = performance.now();
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) opts.onLine(line, at);
    });
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const alive = () => child.exitCode === null && child.signalCode === null;
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      if (!alive()) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => alive() && child.kill("SIGKILL"), 3_000);
      await exited;
      clearTimeout(timer);
    })());
  cleanup.add(`stop ${what}`, stop);
  if (opts.ready) {
    const readyMs = opts.readyMs ?? 20_000;
    const deadline = Date.now() + readyMs;
    for (;;) {
      if (!alive()) throw new Error(`failed to start ${what}: exited with ${child.exitCode ?? child.signalCode}: ${out.slice(-2000)}`);
      if (await opts.ready(out)) break;
      if (Date.now() > deadline) throw new Error(`failed to start ${what}: not ready after ${readyMs / 1000} s: ${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { child, pid: child.pid!, output: () => out, stop };
}

/** Resident memory of a process in KiB (VmRSS), null when it is gone. */
export const rssKiB = (pid: number): number | null => statusKiB(pid, "VmRSS");

/** Peak resident memory (VmHWM) in KiB. */
export const hwmKiB = (pid: number): number | null => statusKiB(pid, "VmHWM");

/** Anonymous resident memory (RssAnon: the heaps, not the mapped code) in KiB. */
export const anonKiB = (pid: number): number | null => statusKiB(pid, "RssAnon");

function statusKiB(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon"): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Direct children of a process (from /proc/<pid>/task/<pid>/children). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return "";
  }
}
