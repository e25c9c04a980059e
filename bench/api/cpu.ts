import { readFileSync } from "node:fs";

/** utime + stime of a process so far, in seconds (Linux /proc). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of stat(5)
  return ticks / 100; // USER_HZ is 100 on Linux
}
