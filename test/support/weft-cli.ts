import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const WEFT_BIN = fileURLToPath(new URL("../../bin/weft.mjs", import.meta.url));

export interface WeftRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `weft` binary as a user would, with only the environment
 * given (plus PATH): no WEFT_* from the test runner's own environment leaks in.
 */
export function runWeft(args: string[], env: Record<string, string>, opts: { input?: string; timeoutMs?: number } = {}): Promise<WeftRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WEFT_BIN, ...args], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TZ: "UTC", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}
