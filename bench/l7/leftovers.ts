/**
 * The last cleanup step of the L7 benches: every HAProxy the run saw (the
 * sidecars it started, the node proxies the agents started) must be gone
 * once the rest is undone; one still running fails the run by name.
 */
import type { BenchCleanup } from "../support/cleanup.ts";
import { commandOf } from "../support/netns.ts";

const alive = (pid: number) => /^(\S*\/)?haproxy(\s|$)/.test(commandOf(pid));

/** Registers the check (call before anything else is put on `cleanup`, so it runs last); answers the function that records pids. */
export function leftoverCheck(cleanup: BenchCleanup): (...pids: number[]) => void {
  const seen = new Set<number>();
  cleanup.add("check that no HAProxy of this run is left", async () => {
    // Stopped processes may take a moment to be reaped (the node proxies die with their namespaces).
    for (let i = 0; i < 50 && [...seen].some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    const left = [...seen].filter(alive);
    if (left.length) throw new Error(`HAProxy processes still running after the cleanup: ${left.map((p) => `${p} (${commandOf(p)})`).join(", ")}`);
  });
  return (...pids) => {
    for (const p of pids) seen.add(p);
  };
}
