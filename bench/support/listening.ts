/** Whether something listens on TCP `port` inside network namespace `ns` (ss), for the ready checks of benches' daemons. */
import { execFileSync } from "node:child_process";

export function listening(ns: string, port: number): boolean {
  try {
    return execFileSync("ss", ["-N", ns, "-ltnH", `sport = :${port}`], { encoding: "utf8" }).trim() !== "";
  } catch {
    return false;
  }
}
