/**
 * Tests that need something outside Node (root and bpf(), a Postgres server,
 * the terraform binary) skip with a reason on a developer's laptop, but CI
 * sets WEFT_REQUIRE_ALL=1 so that a missing prerequisite fails the run
 * instead of hiding behind a skip.
 */
import { execFileSync, spawnSync } from "node:child_process";

export const requireAll = process.env.WEFT_REQUIRE_ALL === "1";

/** True when the suite must be skipped; throws when CI demands the prerequisite. */
export function skipWithout(what: string, unavailableReason: string | null): boolean {
  if (unavailableReason === null) return false;
  if (requireAll) {
    throw new Error(`${what} is required under WEFT_REQUIRE_ALL=1 but unavailable: ${unavailableReason}`);
  }
  console.warn(`skipping ${what}: ${unavailableReason}`);
  return true;
}

/** Why `command` cannot run here (`command ...args` fails: not installed), or null. */
export function commandUnavailableReason(command: string, args: readonly string[], install: string): string | null {
  try {
    execFileSync(command, args, { stdio: "ignore" });
    return null;
  } catch {
    return `${command} not installed (${install})`;
  }
}

/**
 * The haproxy binary (the node's L7 proxy) and whether a suite needing it
 * skips: with WEFT_REQUIRE_ALL=1 a missing haproxy fails instead.
 */
export function haproxy(): { binary: string; skip: boolean } {
  const binary = spawnSync("sh", ["-c", "command -v haproxy"], { encoding: "utf8" }).stdout.trim();
  return { binary, skip: skipWithout("HAProxy (the node's L7 proxy)", binary === "" ? "haproxy not installed (apt-get install haproxy)" : null) };
}
