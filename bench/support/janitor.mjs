// A bench's last line of defence: started detached (its own session, so a
// terminal's Ctrl-C does not reach it) with the bench's pid and the path of
// its manifest of kernel objects and processes, it waits for the bench to
// exit. If the bench exits without removing the manifest (SIGKILL, a
// signal relayed by a wrapper that kills the child, a crash), it removes
// everything the manifest names: processes, pinned links and maps, network
// namespaces, veths, cgroups (deepest first), mounts, temporary directories
// (never one that still holds a mount point). Plain Node, no tsx: it
// must start fast and depend on nothing the bench might have broken.
// Usage: node janitor.mjs BENCH_PID MANIFEST REPO_ROOT
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [benchPid, manifestPath, repoRoot] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Field 22 of /proc/PID/stat (start time), "" when gone: a pid counts as ours only while it matches. */
const startOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[19];
  } catch {
    return "";
  }
};
const attempt = (fn) => {
  try {
    fn();
  } catch {
    // best effort: each object on its own
  }
};

// Bounded: a bench runs minutes; after 2 hours the janitor gives up watching.
const deadline = Date.now() + 2 * 3600_000;
while (alive(benchPid) && Date.now() < deadline) await sleep(500);
if (!existsSync(manifestPath)) process.exit(0);
let m;
try {
  m = JSON.parse(readFileSync(manifestPath, "utf8"));
} catch {
  process.exit(0);
}
const ours = () => (m.pids ?? []).filter((p) => startOf(p.pid) === p.start).map((p) => p.pid);
for (const pid of ours()) attempt(() => process.kill(pid, "SIGTERM"));
for (let i = 0; i < 30 && ours().length; i++) await sleep(100);
for (const pid of ours()) attempt(() => process.kill(pid, "SIGKILL"));
for (const dir of m.pinDirs ?? []) {
  if (!existsSync(dir)) continue;
  attempt(() => execFileSync(process.execPath, ["--import", "tsx", "nodeagent/src/main.ts", "cleanup", "--pin-dir", dir], { cwd: repoRoot, stdio: "ignore", timeout: 60_000 }));
  attempt(() => rmSync(dir, { recursive: true, force: true }));
}
for (const ns of m.netns ?? []) {
  attempt(() => {
    for (const pid of execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).split("\n").filter(Boolean)) attempt(() => process.kill(Number(pid), "SIGKILL"));
  });
  attempt(() => execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" }));
}
for (const ifname of m.veths ?? []) if (existsSync(`/sys/class/net/${ifname}`)) attempt(() => execFileSync("ip", ["link", "del", ifname], { stdio: "ignore" }));
// Children before their parents: a cgroup with children cannot go.
for (const dir of [...(m.cgroups ?? [])].sort((a, b) => b.length - a.length)) {
  if (!existsSync(dir)) continue;
  attempt(() => {
    const root = join(dir, "..");
    for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) attempt(() => writeFileSync(join(root, "cgroup.procs"), pid));
  });
  attempt(() => rmdirSync(dir));
}
for (const target of [...(m.mounts ?? [])].reverse()) attempt(() => execFileSync("umount", [target], { stdio: "ignore" }));
/** Mount points as /proc/self/mountinfo lists them (field 5). */
const mountPoints = () => readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter(Boolean).map((l) => l.split(" ")[4]);
for (const dir of m.dirs ?? []) {
  // A recursive removal must never walk into a mount that failed to go (a cgroup tree, a bpffs).
  if (mountPoints().some((p) => p === dir || p.startsWith(`${dir}/`))) continue;
  attempt(() => rmSync(dir, { recursive: true, force: true }));
}
attempt(() => rmSync(manifestPath, { force: true }));
