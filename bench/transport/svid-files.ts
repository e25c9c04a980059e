/**
 * The SVIDs the agents issue (their --svid-files copies, nodeagent/src/agent/svid.ts):
 * the sidecar baseline presents exactly the certificates Weft's transport
 * holds, so both sides of the comparison do the same cryptography.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchCleanup } from "../support/cleanup.ts";

export interface SvidFiles {
  /** The leaf then its chain, and the key after them: haproxy's `crt` file (kept in a private temporary directory, 0600). */
  haproxyPem: string;
  /** The tenant's trust bundle: haproxy's `ca-file`. */
  bundlePem: string;
}

/** Waits (boundMs, 90 s) until the agent of the workload's node wrote its SVID, then makes haproxy's files from it. */
export async function svidFiles(cleanup: BenchCleanup, stateDir: string, tenant: string, workload: string, boundMs = 90_000): Promise<SvidFiles> {
  const dir = join(stateDir, "svids", tenant, workload);
  const deadline = Date.now() + boundMs;
  const parts = ["cert.pem", "key.pem", "bundle.pem"].map((f) => join(dir, f));
  while (!parts.every(existsSync)) {
    if (Date.now() > deadline) throw new Error(`no SVID for ${workload} in ${dir} after ${boundMs / 1000} s (is the agent run with --svid-files?)`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const own = mkdtempSync(join(tmpdir(), `wbench-svid-${workload}-`));
  cleanup.track("dirs", own);
  cleanup.add(`remove ${own}`, () => rmSync(own, { recursive: true, force: true }));
  const [cert, key, bundle] = parts.map((p) => readFileSync(p, "utf8")) as [string, string, string];
  const haproxyPem = join(own, "svid.pem");
  writeFileSync(haproxyPem, `${cert.trimEnd()}\n${key.trimEnd()}\n`, { mode: 0o600 });
  const bundlePem = join(own, "bundle.pem");
  writeFileSync(bundlePem, bundle);
  return { haproxyPem, bundlePem };
}
