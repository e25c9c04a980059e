/** Small figures the load benches compute per run and over reps. */
import { cpuSeconds } from "../api/cpu.ts";
import { median } from "./weft.ts";

/** The median (the mean of two) of the values that are numbers; NaN when none is. */
export function central(all: readonly number[]): number {
  const xs = all.filter(Number.isFinite);
  return xs.length === 0 ? Number.NaN : xs.length === 2 ? (xs[0]! + xs[1]!) / 2 : median(xs);
}

/** utime+stime of `pids` so far, in seconds; NaN when one is gone (a process restarted mid-run: that run's figure is void, not wrong). */
export function cpuOf(pids: readonly number[]): number {
  try {
    return pids.reduce((s, p) => s + cpuSeconds(p), 0);
  } catch {
    return Number.NaN;
  }
}
